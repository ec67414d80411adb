"""`think2seg dataset build|check`: your own images, masks and questions in the EarthReason layout."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "dataset",
        help="build or check an EarthReason-layout dataset from your own data",
        description="Turn images + binary masks + questions into {split}/images|labels|QAs, the "
        "layout `think2seg eval` and `think2seg train` read.",
    )
    dsub = p.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    b = dsub.add_parser("build", help="convert images, masks and a questions file into the layout")
    b.add_argument("--images", required=True, help="folder of images (PNG, JPEG, TIFF/GeoTIFF ...)")
    b.add_argument(
        "--masks",
        required=True,
        help="folder of masks named like the images: 0 = background, one other value = target; all zero = no target",
    )
    b.add_argument(
        "--questions",
        required=True,
        help='questions file: JSON {"image": ["q1", "q2"]}, JSON lines {"image", "question", '
        '"category"} or CSV with columns image,question[,category]',
    )
    b.add_argument("--output", "-o", required=True, help="dataset root to write (OUT/{split}/...)")
    b.add_argument("--split", default="train", help="split to write the samples to (default train)")
    b.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="also put this fraction of the samples (seeded) in a val split (default 0)",
    )
    b.add_argument("--seed", type=int, default=0, help="seed of the --val-fraction draw (default 0)")
    b.add_argument("--overwrite", action="store_true", help="replace splits that already hold files")
    b.set_defaults(run=run_build)
    c = dsub.add_parser("check", help="list the usable samples and the problems of a split")
    c.add_argument("data", help="dataset root")
    c.add_argument("--split", default="train", help="split folder (default train)")
    c.set_defaults(run=run_check)


def run_build(args: argparse.Namespace) -> int:
    from ..evaluation.dataset_builder import build_dataset

    summary = build_dataset(
        args.images,
        args.masks,
        args.questions,
        args.output,
        split=args.split,
        val_fraction=args.val_fraction,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(summary.sentence())
    return 0


def run_check(args: argparse.Namespace) -> int:
    from ..evaluation.earthreason import SampleProblem, load_sample, scan_split

    samples, problems = scan_split(args.data, args.split)
    good = empty = 0
    for s in samples:
        try:
            _, mask = load_sample(s)
        except ValueError as e:
            problems.append(SampleProblem(s.image_id, str(e)))
            continue
        good += 1
        empty += not mask.any()
    for p in problems:
        print(f"  {p.image_id}: {p.message}", file=sys.stderr)
    print(f"{args.data}/{args.split}: {good} usable samples ({empty} without a target), {len(problems)} with problems.")
    return 0 if not problems else 1

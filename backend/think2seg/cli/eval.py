"""`think2seg eval --data DIR --split val|test -o REPORT_DIR [--benchmark B]`: gIoU, cIoU and Pr@X on EarthReason,
RRSIS-D, RefSegRS or RISBench (each read as the reference's loader reads it), masks and a report."""

from __future__ import annotations

import argparse
import os
import sys

from ..evaluation.benchmarks import BENCHMARKS


def add_parser(sub) -> None:
    from . import add_model_options

    p = sub.add_parser(
        "eval",
        help="evaluate a reasoner + SAM2 on an EarthReason split (gIoU, cIoU, masks, HTML report)",
        description="Run the pipeline over an EarthReason-layout split in batches and write REPORT_DIR/metrics.json, "
        "pred/<id>.png, samples.jsonl (answers and reasoning) and report.html. Rerunning the same "
        "command resumes where it stopped.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="the benchmark's root: EarthReason DATA/{split}/images, labels, "
        "QAs (hub dataset earth-insights/EarthReason); RRSIS-D, RefSegRS, "
        "RISBench: their published layout (docs/method.md)",
    )
    p.add_argument(
        "--benchmark",
        choices=BENCHMARKS,
        default="earthreason",
        help="earthreason (default); rrsisd, refsegrs, risbench: the reference's zero-shot referring "
        "benchmarks, each read as its loader reads it",
    )
    p.add_argument("--split", default="test", help="split folder to evaluate: val or test (default test)")
    p.add_argument("--output", "-o", required=True, help="report folder (created; an existing run is resumed)")
    p.add_argument(
        "--protocol",
        choices=("think2seg", "segearth"),
        default="think2seg",
        help="think2seg: the reference script's decode, parse and score path (its seeded question "
        "draw, 840 px, greedy without a forced answer, its parser, labels resized, empty target "
        "as it scores it; docs/method.md); segearth: first question, 1024 px, our tolerant "
        "parser, empty prediction on empty target = IoU 1 (the two are not comparable; default "
        "think2seg)",
    )
    p.add_argument("--limit", type=int, default=None, help="evaluate N images (a seeded subset) instead of all")
    p.add_argument("--batch-size", type=int, default=4, help="images per generate call (default 4)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the question draw and of --limit (default 0, as the reference's run scripts)",
    )
    p.add_argument(
        "--max-reasoning-tokens",
        type=int,
        default=2048,
        help="generation budget per answer (default 2048, as the reference evaluation)",
    )
    p.add_argument("--cases", type=int, default=4, help="best and worst cases drawn in the report (default 4 each)")
    p.add_argument("--restart", action="store_true", help="discard an earlier run in the report folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help="spread the evaluation over a Ray cluster (auto, ray://host:10001, host:6379, or local): "
        "one actor per GPU holds the models; the same figures as one process, resumable",
    )
    p.add_argument("--actors", type=int, default=None, help="with --ray: actors (default one per GPU, else 1)")
    add_model_options(p)
    # --protocol think2seg decodes with transformers' plain generate unless asked (the reference's numerics);
    # None: not given on the command line (nor in THINK2SEG_DECODING)
    p.set_defaults(run=run, decoding=os.environ.get("THINK2SEG_DECODING"))


def default_decoding(protocol: str) -> str:
    """plain under --protocol think2seg (the reference's generate, not our static-cache fast path); auto else."""
    return "plain" if protocol == "think2seg" else "auto"


def run(args: argparse.Namespace) -> int:
    from ..errors import BadInput
    from ..evaluation.benchmarks import get_benchmark
    from ..evaluation.runner import EvalSettings, evaluate

    if args.limit is not None and args.limit < 1:
        raise BadInput("--limit must be at least 1.", code="bad_options")
    if args.batch_size < 1:
        raise BadInput("--batch-size must be at least 1.", code="bad_options")
    from . import check_models, load_pipeline

    if args.decoding is None:
        args.decoding = default_decoding(args.protocol)
    check_models(args)
    # Find the data (or say where to get it) before loading models, which takes a while.
    samples, problems = get_benchmark(args.benchmark).scan(args.data, args.split)
    print(
        f"{len(samples)} usable {args.benchmark} samples in {args.data} ({args.split})"
        + (f", {len(problems)} with problems (listed in the report)" if problems else ""),
        file=sys.stderr,
    )
    pipeline = load_pipeline(args) if not args.ray else None
    settings = EvalSettings(
        data=args.data,
        split=args.split,
        out=args.output,
        protocol=args.protocol,
        seed=args.seed,
        limit=args.limit,
        batch_size=args.batch_size,
        max_reasoning_tokens=args.max_reasoning_tokens,
        restart=args.restart,
        report_cases=args.cases,
        benchmark=args.benchmark,
    )
    if args.ray:
        from ..evaluation.distributed import EvalModels, evaluate_ray

        models = EvalModels(args.model, str(args.sam), args.sam_size, args.device, args.decoding, args.compile)
        m = evaluate_ray(args.ray, settings, models, actors=args.actors, progress=not args.no_progress)
    else:
        m = evaluate(pipeline, settings, progress=not args.no_progress)

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}"

    pr = m.get("precision_at", {})
    print(
        f"{args.benchmark} {args.split} ({m['protocol']}, {m['decoding']} decoding): gIoU {pct(m['giou'])}  "
        f"cIoU {pct(m['ciou'])}  Pr@0.5 {pct(pr.get('0.5'))}  Pr@0.7 {pct(pr.get('0.7'))}  "
        f"Pr@0.9 {pct(pr.get('0.9'))}  on {m['n']} images; {m['parse_failures']} parse failures, "
        f"{m['empty_target']} without a target, {m['skipped']} skipped. "
        f"Report: {args.output}/report.html"
    )
    return 0

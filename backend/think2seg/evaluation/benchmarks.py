"""The benchmarks `think2seg eval --benchmark` reads, each as the reference's loader reads it.

Ricardo-XZ/Think2Seg-RS evaluates zero-shot on three referring-segmentation benchmarks with
`src/eval/test_think2seg-rs_ref.py` and the loaders in `src/open-r1-multimodal/src/open_r1/dataset/`; every
loader asks the same system and user prompt as EarthReason (`prompt_template`, checked word for word), with
its own question, image and label reading. What each reads (`--data DIR`, `--split S`):

- ``earthreason`` (`earthreason`): DIR/S/images, labels, QAs; the reference's seeded draw of one question.
- ``rrsisd`` (`rrsisd_datasets.py`, RRSIS_D_Dataset): DIR/rrsisd/refs(unc).p (a pickle of refs: `ref_id`,
  `ann_id`, `image_id`, `split`, `sentences`), DIR/rrsisd/instances.json (COCO: `images`, `annotations`
  with polygons or RLE), images in DIR/images/rrsisd/JPEGImages. One sample per ref of the split (`test`
  takes every ref whose split contains "test", `train`/`val` the exact name), in the pickle's order; the
  question is the ref's first sentence plus "." (`ref['sentences'][0]['sent'] + '.'`); the label is the
  ann's polygons drawn by pycocotools, summed over polygons, `> 0`.
- ``refsegrs`` (`RefSegRS_datasets.py`): DIR/output_phrase_S.txt, one `<id> <phrase ...>` per line (the line
  stripped, the phrase the words after the id joined by one space), DIR/images/<id>.tif and
  DIR/masks/<id>.tif (lines whose files are missing are left out); the label is the mask's first channel
  `> 0`. One image can carry several phrases: each line is a sample.
- ``risbench`` (`risbench_datasets.py`): DIR/output_phrase_S.txt, one `<file name> <phrase>` per line (split
  at the first space), DIR/img_rgb/<file name> and DIR/mask/<file name>; the label `> 0`.

All four: image LANCZOS and label NEAREST to 840 x 840, the `--protocol think2seg` scoring (metrics), with
`random.seed(seed)` then `random.sample(range(n), limit)` when a subset is asked (test_think2seg-rs_ref.py
:224, :283-287), else every sample in the loader's order.

Sample ids are unique in the report (samples.jsonl, pred/<id>.png): the loader's id, and where one image
carries several phrases, `<id>_<n>` for its n-th further phrase.
"""

from __future__ import annotations

import json
import pickle
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import BadInput
from .earthreason import Sample, SampleProblem, reference_draw, scan_split

BENCHMARKS = ("earthreason", "rrsisd", "refsegrs", "risbench")


@dataclass(frozen=True)
class Benchmark:
    name: str
    #: (root, split) -> (samples in the loader's order, problems)
    scan: Callable[[str | Path, str], tuple[list[Sample], list[SampleProblem]]]
    description: str

    def draw(self, root, split: str, seed: int, limit: int | None, samples: list[Sample]) -> list[tuple[str, int]]:
        """(sample id, question index) in the order the reference evaluates them."""
        if self.name == "earthreason":
            return reference_draw(root, split, seed, limit)
        ids = [s.image_id for s in samples]
        if limit and 0 < limit < len(ids):
            ids = [ids[i] for i in random.Random(seed).sample(range(len(ids)), limit)]
        return [(i, 0) for i in ids]


def _missing(name: str, what: str, how: str) -> BadInput:
    return BadInput(f"No {name} data: {what}. {how}", code="dataset_missing")


def _unique(ids: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        n = seen.get(i, 0)
        seen[i] = n + 1
        out.append(i if n == 0 else f"{i}_{n}")
    return out


def _phrase_file(root: Path, split: str, name: str) -> Path:
    path = root / f"output_phrase_{split}.txt"
    if not path.is_file():
        raise _missing(
            name, f"{path} does not exist", f"Pass --data the {name} folder that holds output_phrase_{split}.txt."
        )
    return path


def _first_channel_mask(path: Path) -> np.ndarray:
    """RefSegRS: `np.array(mask)[:, :, 0] > 0` (a one-channel mask is taken as it is)."""
    try:
        with Image.open(path) as im:
            a = np.asarray(im)
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds on broken files
        raise ValueError(f"{path.name} cannot be read as a mask ({type(e).__name__}: {e})") from e
    return (a[:, :, 0] if a.ndim == 3 else a) > 0


def scan_refsegrs(root, split: str) -> tuple[list[Sample], list[SampleProblem]]:
    root = Path(root)
    rows, problems = [], []
    for line in _phrase_file(root, split, "RefSegRS").read_text(encoding="utf-8").splitlines():
        parts = line.strip().split()
        if len(parts) < 2:
            continue
        img_id, phrase = parts[0], " ".join(parts[1:])
        img, mask = root / "images" / f"{img_id}.tif", root / "masks" / f"{img_id}.tif"
        if img.exists() and mask.exists():
            rows.append((img_id, phrase, img, mask))
        else:
            problems.append(SampleProblem(img_id, f"no {img.name} in images/ or masks/ (the reference leaves it out)"))
    samples = []
    for uid, (_, phrase, img, mask) in zip(_unique([r[0] for r in rows]), rows, strict=True):
        samples.append(
            Sample(uid, img, mask, [phrase], raw_questions=[phrase], mask_reader=lambda m=mask: _first_channel_mask(m))
        )
    return samples, problems


def scan_risbench(root, split: str) -> tuple[list[Sample], list[SampleProblem]]:
    root = Path(root)
    rows, problems = [], []
    for line in _phrase_file(root, split, "RISBench").read_text(encoding="utf-8").splitlines():
        parts = line.strip().split(" ", 1)
        if len(parts) != 2:
            continue
        filename, phrase = parts
        img, mask = root / "img_rgb" / filename, root / "mask" / filename
        if img.exists() and mask.exists():
            rows.append((filename.split(".")[0], phrase, img, mask))
        else:
            problems.append(
                SampleProblem(filename, f"no {filename} in img_rgb/ or mask/ (the reference leaves it out)")
            )
    samples = [
        Sample(uid, img, mask, [phrase], raw_questions=[phrase])
        for uid, (_, phrase, img, mask) in zip(_unique([r[0] for r in rows]), rows, strict=True)
    ]
    return samples, problems


def _coco_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """The reference's `getMask`: pycocotools' polygons (or RLE) decoded, summed over polygons, `> 0`."""
    try:
        from pycocotools import mask as coco_mask
    except ImportError:
        raise BadInput(
            "RRSIS-D's labels are COCO polygons, read with pycocotools as the reference reads them: "
            "install it (`pip install pycocotools`).",
            code="missing_dependency",
        ) from None
    seg = ann["segmentation"]
    rle = coco_mask.frPyObjects(seg, height, width) if isinstance(seg[0], list) else seg
    m = coco_mask.decode(rle)
    if m.ndim == 3:
        m = np.sum(m, axis=2)
    return m.astype(np.uint8) > 0


def rrsisd_split_refs(refs: list[dict], split: str) -> list[dict]:
    """The reference's `getRefIds(split=...)` (refer's rules)."""
    if split in ("testA", "testB", "testC"):
        return [r for r in refs if split[-1] in r["split"]]
    if split in ("testAB", "testBC", "testAC"):
        return [r for r in refs if r["split"] == split]
    if split == "test":
        return [r for r in refs if "test" in r["split"]]
    if split in ("train", "val"):
        return [r for r in refs if r["split"] == split]
    raise BadInput(f"RRSIS-D has no split '{split}': use train, val or test.", code="bad_options")


def scan_rrsisd(root, split: str) -> tuple[list[Sample], list[SampleProblem]]:
    root = Path(root)
    data_dir, image_dir = root / "rrsisd", root / "images" / "rrsisd" / "JPEGImages"
    refs_file, inst_file = data_dir / "refs(unc).p", data_dir / "instances.json"
    for f in (refs_file, inst_file):
        if not f.is_file():
            raise _missing(
                "RRSIS-D",
                f"{f} does not exist",
                "Pass --data the RRSIS-D root (rrsisd/refs(unc).p, rrsisd/instances.json, images/rrsisd/JPEGImages).",
            )
    with refs_file.open("rb") as fh:
        refs = pickle.load(fh)  # noqa: S301 - the dataset's own file, read as the reference reads it
    instances = json.loads(inst_file.read_text(encoding="utf-8"))
    anns = {a["id"]: a for a in instances["annotations"]}
    imgs = {i["id"]: i for i in instances["images"]}
    samples, problems = [], []
    for ref in rrsisd_split_refs(refs, split):
        rid = str(ref["ref_id"])
        img = imgs.get(ref["image_id"])
        ann = anns.get(ref["ann_id"])
        sents = ref.get("sentences") or []
        if img is None or ann is None or not sents:
            problems.append(SampleProblem(rid, "its image, annotation or sentence is missing from the dataset files"))
            continue
        question = sents[0]["sent"] + "."
        path = image_dir / img["file_name"]
        samples.append(
            Sample(
                rid,
                path,
                path,
                [question],
                raw_questions=[question],
                mask_reader=lambda a=ann, i=img: _coco_mask(a, i["height"], i["width"]),
            )
        )
    return samples, problems


BENCHMARK_SPECS = {
    "earthreason": Benchmark("earthreason", scan_split, "EarthReason (reasoning segmentation)"),
    "rrsisd": Benchmark("rrsisd", scan_rrsisd, "RRSIS-D (referring segmentation, zero-shot)"),
    "refsegrs": Benchmark("refsegrs", scan_refsegrs, "RefSegRS (referring segmentation, zero-shot)"),
    "risbench": Benchmark("risbench", scan_risbench, "RISBench (referring segmentation, zero-shot)"),
}


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARK_SPECS[name]
    except KeyError:
        raise BadInput(f"Unknown benchmark '{name}': use {', '.join(BENCHMARKS)}.", code="bad_options") from None

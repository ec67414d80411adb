"""Turn a user's own images, masks and questions into the EarthReason layout, for `think2seg eval` and `train`.

Input:
- an images folder (PNG, JPEG, TIFF/GeoTIFF...; multi-band or 16-bit rasters are read as RGB uint8 the way
  the segment command reads them);
- a masks folder with one mask per image under the same name (any extension): 0 = background, one other
  value = target; an all-zero mask is an image with no target;
- a questions file: JSON `{"<image name>": ["q1", "q2"]}` or `{"<image name>": {"questions": [...],
  "category": "..."}}`, JSON lines `{"image": ..., "question" or "questions": ..., "category": ...}`, or
  CSV with the columns `image`, `question` and optionally `category` (one row per question).
Output: `OUT/{split}/images/<id>.png|jpg`, `labels/<id>.png` (0/255), `QAs/<id>.json` (`questions`,
`answer`, `category`). Everything wrong is collected first and reported together, with the file names.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import BadInput
from .earthreason import IMAGE_SUFFIXES

MAX_LISTED = 25  # problems listed in the error; the count says how many more


@dataclass
class BuildSummary:
    out: Path
    splits: dict[str, int]
    empty_targets: int
    questions: int
    ids: dict[str, list[str]] = field(default_factory=dict)

    def sentence(self) -> str:
        parts = ", ".join(f"{n} in {s}" for s, n in self.splits.items())
        return (
            f"Wrote {sum(self.splits.values())} samples ({parts}; {self.empty_targets} without a target, "
            f"{self.questions} questions) to {self.out}."
        )


def _files_by_stem(folder: Path, what: str, errors: list[str]) -> dict[str, Path]:
    if not folder.is_dir():
        raise BadInput(f"The {what} folder {folder} does not exist.", code="bad_dataset")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            errors.append(f"{what} {p.name}: not an image file type (use {', '.join(IMAGE_SUFFIXES)})")
            continue
        if p.stem in found:
            errors.append(f"{what} {p.name} and {found[p.stem].name} have the same name '{p.stem}'")
            continue
        found[p.stem] = p
    return found


def _stem(name: str) -> str:
    p = Path(str(name).strip())
    return p.stem if p.suffix.lower() in IMAGE_SUFFIXES else p.name


def _add(table: dict, errors: list[str], where: str, image, questions, category=None) -> None:
    if not isinstance(image, str) or not image.strip():
        errors.append(f"{where}: no image name")
        return
    if isinstance(questions, str):
        questions = [questions]
    if not isinstance(questions, list):
        errors.append(f"{where}: the questions of '{image}' are not a list of strings")
        return
    good = [q.strip() for q in questions if isinstance(q, str) and q.strip()]
    if len(good) != len(questions):
        errors.append(f"{where}: '{image}' has an empty or non-text question")
    entry = table[_stem(image)]
    entry["questions"].extend(good)
    if category not in (None, ""):
        if entry["category"] not in (None, str(category)):
            errors.append(f"{where}: '{image}' is given two categories ({entry['category']} and {category})")
        entry["category"] = str(category)


def read_questions(path: Path) -> dict[str, dict]:
    """{image stem: {"questions": [...], "category": str | None}} from JSON, JSON lines or CSV."""
    table, errors = _read_questions(Path(path))
    _raise_if(errors, "The questions file has problems")
    return table


def _add_object(table: dict, errors: list[str], where: str, obj) -> None:
    """One JSON entry {image, question(s), category} of a JSON list or a JSON Lines file."""
    if not isinstance(obj, dict):
        errors.append(f"{where}: not an object")
        return
    _add(table, errors, where, obj.get("image"), obj.get("questions", obj.get("question")), obj.get("category"))


def _read_questions(path: Path) -> tuple[dict[str, dict], list[str]]:
    """The table and the problems of its entries; an unreadable file raises at once."""
    if not path.is_file():
        raise BadInput(f"The questions file {path} does not exist.", code="bad_dataset")
    table: dict[str, dict] = defaultdict(lambda: {"questions": [], "category": None})
    errors: list[str] = []
    text = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or "image" not in rows[0] or "question" not in rows[0]:
            raise BadInput(
                f"{path.name}: a questions CSV needs a header with the columns image and question "
                "(and optionally category).",
                code="bad_dataset",
            )
        for i, row in enumerate(rows, start=2):
            _add(table, errors, f"{path.name} line {i}", row.get("image"), row.get("question"), row.get("category"))
    elif suffix in (".jsonl", ".ndjson"):
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"{path.name} line {i}: not JSON ({e.msg})")
                continue
            _add_object(table, errors, f"{path.name} line {i}", obj)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise BadInput(f"{path.name} is not valid JSON (line {e.lineno}: {e.msg}).", code="bad_dataset") from e
        if isinstance(data, dict):
            for image, v in data.items():
                if isinstance(v, dict):
                    _add(table, errors, path.name, image, v.get("questions", v.get("question")), v.get("category"))
                else:
                    _add(table, errors, path.name, image, v)
        elif isinstance(data, list):
            for i, obj in enumerate(data):
                _add_object(table, errors, f"{path.name} item {i}", obj)
        else:
            raise BadInput(f"{path.name} must hold an object or a list.", code="bad_dataset")
    return dict(table), errors


def _raise_if(errors: list[str], head: str) -> None:
    if not errors:
        return
    listed = "\n".join(f"  - {e}" for e in errors[:MAX_LISTED])
    more = f"\n  ... and {len(errors) - MAX_LISTED} more" if len(errors) > MAX_LISTED else ""
    raise BadInput(f"{head} ({len(errors)}):\n{listed}{more}", code="bad_dataset")


def _read_image(path: Path) -> np.ndarray:
    from .earthreason import load_rgb

    try:
        return load_rgb(path)
    except ValueError:
        if path.suffix.lower() not in (".tif", ".tiff"):
            raise
    from ..georef import read_tile  # GeoTIFFs PIL cannot read (4 bands, 16-bit, compressed)

    try:
        return read_tile(path, max_size=None).rgb
    except Exception as e:
        raise ValueError(f"{path.name} cannot be read as an image ({e})") from e


def _read_mask(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            a = np.asarray(im)
    except Exception as e:
        raise ValueError(f"mask {path.name} cannot be read ({type(e).__name__})") from e
    if a.ndim == 3:
        if a.shape[2] >= 3 and not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])):
            raise ValueError(f"mask {path.name} is a colour image: save it as one band, 0 = background")
        a = a[..., 0]
    values = np.unique(a)
    if len(values) > 2 or (len(values) == 2 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:6]) + (" ..." if len(values) > 6 else "")
        raise ValueError(
            f"mask {path.name} is not binary (values {shown}): use 0 for background and one value "
            "(1 or 255) for the target, saved losslessly (PNG, not JPEG)"
        )
    return a > 0


def build_dataset(
    images: str | Path,
    masks: str | Path,
    questions: str | Path,
    out: str | Path,
    split: str = "train",
    val_fraction: float = 0.0,
    val_split: str = "val",
    seed: int = 0,
    overwrite: bool = False,
) -> BuildSummary:
    """Check everything, then write the layout; raises BadInput listing every problem found."""
    images, masks, out = Path(images), Path(masks), Path(out)
    if not 0.0 <= val_fraction < 1.0:
        raise BadInput("--val-fraction must be at least 0 and below 1.", code="bad_options")
    if not split or "/" in split or (val_fraction and (not val_split or "/" in val_split or val_split == split)):
        raise BadInput("Split names must be plain folder names, and the two splits must differ.", code="bad_options")
    errors: list[str] = []
    image_files = _files_by_stem(images, "image", errors)
    mask_files = _files_by_stem(masks, "mask", errors)
    table, q_errors = _read_questions(Path(questions))
    errors.extend(q_errors)
    for stem in sorted(set(image_files) - set(mask_files)):
        errors.append(f"image {image_files[stem].name} has no mask in {masks}")
    for stem in sorted(set(mask_files) - set(image_files)):
        errors.append(f"mask {mask_files[stem].name} has no image in {images}")
    for stem in sorted(set(image_files) - set(table)):
        errors.append(f"image {image_files[stem].name} has no question")
    for stem in sorted(set(table) - set(image_files)):
        errors.append(f"questions are given for '{stem}' but there is no such image")
    for stem, entry in table.items():
        if stem in image_files and not entry["questions"]:
            errors.append(f"image {image_files[stem].name} has no non-empty question")
    ids = sorted(set(image_files) & set(mask_files) & set(table))
    if not ids and not errors:
        errors.append(f"no image in {images}")
    loaded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for stem in ids:
        try:
            rgb = _read_image(image_files[stem])
            m = _read_mask(mask_files[stem])
        except ValueError as e:
            errors.append(str(e))
            continue
        if m.shape != rgb.shape[:2]:
            errors.append(
                f"mask {mask_files[stem].name} is {m.shape[1]} x {m.shape[0]} px but image "
                f"{image_files[stem].name} is {rgb.shape[1]} x {rgb.shape[0]} px"
            )
            continue
        loaded[stem] = (rgb, m)
    _raise_if(errors, "The dataset cannot be built")

    assignment = {stem: split for stem in ids}
    if val_fraction > 0:
        order = ids[:]
        random.Random(seed).shuffle(order)
        n_val = max(1, round(len(order) * val_fraction)) if len(order) > 1 else 0
        for stem in order[:n_val]:
            assignment[stem] = val_split
    used = sorted(set(assignment.values()))
    for s in used:
        if (out / s).exists() and any((out / s).iterdir()):
            if not overwrite:
                raise BadInput(f"{out / s} already holds files; pass --overwrite to replace it.", code="output_exists")
            shutil.rmtree(out / s)
    by_split: dict[str, list[str]] = defaultdict(list)
    for stem in ids:
        s = assignment[stem]
        base = out / s
        for d in ("images", "labels", "QAs"):
            (base / d).mkdir(parents=True, exist_ok=True)
        rgb, m = loaded[stem]
        src = image_files[stem]
        if src.suffix.lower() in (".png", ".jpg", ".jpeg") and _is_plain_rgb(src):
            shutil.copyfile(src, base / "images" / f"{stem}{src.suffix.lower()}")
        else:
            Image.fromarray(rgb).save(base / "images" / f"{stem}.png")
        Image.fromarray(m.astype(np.uint8) * 255).save(base / "labels" / f"{stem}.png")
        entry = table[stem]
        qa = {"questions": entry["questions"], "answer": []}
        if entry["category"] is not None:
            qa["category"] = entry["category"]
        (base / "QAs" / f"{stem}.json").write_text(json.dumps(qa, indent=1, ensure_ascii=False), encoding="utf-8")
        by_split[s].append(stem)
    return BuildSummary(
        out=out,
        splits={s: len(v) for s, v in sorted(by_split.items())},
        empty_targets=sum(not loaded[s][1].any() for s in ids),
        questions=sum(len(table[s]["questions"]) for s in ids),
        ids=dict(by_split),
    )


def _is_plain_rgb(path: Path) -> bool:
    """A PNG/JPEG any reader shows as the model will see it (8-bit RGB or grey), safe to copy as is."""
    try:
        with Image.open(path) as im:
            return im.mode in ("RGB", "L")
    except Exception:
        return False

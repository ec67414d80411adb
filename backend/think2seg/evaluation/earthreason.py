"""Read the EarthReason layout: `{split}/images/*`, `{split}/labels/<id>.png`, `{split}/QAs/<id>.json`.

A QA file holds `questions` (a list of strings) and `answer`; an optional `category` (or `class`) gives the
per-category figures. Anything wrong with one sample (a missing label, broken JSON, no questions, an
unreadable image, a label whose size differs from its image where the protocol does not resize it) is a
`SampleProblem` with a sentence, and the sample is skipped; only a missing split stops the work.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import BadInput

HUB_ID = "earth-insights/EarthReason"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
CATEGORY_KEYS = ("category", "class", "class_name", "class_label", "class_label_id")

#: EarthReason tiles reach about 7,000 px a side; PIL's decompression-bomb guard (89 Mpx) stays on above this.
MAX_PIXELS = 400_000_000


@contextmanager
def _large_images():
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def where_to_get_it(root: str | Path, split: str) -> str:
    return (
        f"No EarthReason split '{split}' under {root} (expected {root}/{split}/images, labels and QAs). "
        f"EarthReason is on the Hugging Face hub as the dataset {HUB_ID}: on a machine with internet run "
        f"`huggingface-cli download {HUB_ID} --repo-type dataset --local-dir DIR`, unpack its archives so that "
        f"DIR/{split}/images exists, and pass --data DIR. Your own images and masks can be turned into the same "
        f"layout with `think2seg dataset build`."
    )


@dataclass
class Sample:
    image_id: str
    image_path: Path
    label_path: Path
    questions: list[str]
    answer: object = None
    category: str | None = None
    #: the QA file's `questions` as written (the reference's draw indexes this list, blanks included)
    raw_questions: object = None
    #: the ground truth where it is not a label file (RRSIS-D's COCO polygons: `benchmarks`); bool (H, W)
    mask_reader: Callable[[], np.ndarray] | None = None

    def read_mask(self) -> np.ndarray:
        return self.mask_reader() if self.mask_reader is not None else load_mask(self.label_path)

    def question(self, mode: str, seed: int) -> tuple[int, str]:
        """(index, text) of the question a protocol asks: "first", or "random" seeded per image.

        The random pick depends on the seed and the image id only, so it does not change with --limit, the
        order of files on disk or a resumed run.
        """
        if mode == "first" or len(self.questions) == 1:
            return 0, self.questions[0]
        k = random.Random(f"{seed}:{self.image_id}").randrange(len(self.questions))
        return k, self.questions[k]

    def question_text(self, index: int, as_written: bool = False) -> str | None:
        """The question at `index` of the file's list (`raw_questions`), stripped (`as_written`: with its
        surrounding blanks, as the reference puts it in its prompt); None when unusable (blank, not a string)."""
        raw = self.raw_questions if self.raw_questions is not None else self.questions
        if not isinstance(raw, list) or not 0 <= index < len(raw):
            return None
        q = raw[index]
        if not isinstance(q, str) or not q.strip():
            return None
        return q if as_written else q.strip()


@dataclass
class SampleProblem:
    image_id: str
    message: str

    def to_dict(self) -> dict:
        return {"image_id": self.image_id, "problem": self.message}


def _category(qa: dict) -> str | None:
    for key in CATEGORY_KEYS:
        v = qa.get(key)
        if v is not None and not isinstance(v, (list, dict)) and str(v).strip():
            return str(v).strip()
    return None


def read_qa(path: Path) -> tuple[list[str], object, str | None, object]:
    """questions, answer, category, the `questions` value as written; raises ValueError with a sentence when
    the file is unusable."""
    try:
        qa = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path.name} is not readable JSON ({e})") from e
    if not isinstance(qa, dict):
        raise ValueError(f"{path.name} holds a {type(qa).__name__}, not an object with 'questions'")
    qs = qa.get("questions")
    if isinstance(qs, str):
        qs = [qs]
    if not isinstance(qs, list):
        raise ValueError(f"{path.name} has no 'questions' list")
    questions = [q.strip() for q in qs if isinstance(q, str) and q.strip()]
    if not questions:
        raise ValueError(f"{path.name} has no non-empty question")
    return questions, qa.get("answer"), _category(qa), qa.get("questions")


def split_dirs(root: str | Path, split: str) -> tuple[Path, Path, Path]:
    base = Path(root) / split
    return base / "images", base / "labels", base / "QAs"


def scan_split(root: str | Path, split: str) -> tuple[list[Sample], list[SampleProblem]]:
    """Every usable sample of a split (sorted by id) and a problem per unusable one."""
    images_dir, labels_dir, qa_dir = split_dirs(root, split)
    if not images_dir.is_dir():
        raise BadInput(where_to_get_it(root, split), code="dataset_missing")
    samples: list[Sample] = []
    problems: list[SampleProblem] = []
    seen: dict[str, Path] = {}
    for path in sorted(images_dir.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        image_id = path.stem
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(SampleProblem(image_id, f"{path.name}: not an image file type this reader knows"))
            continue
        if image_id in seen:
            problems.append(SampleProblem(image_id, f"{path.name} and {seen[image_id].name} share the id '{image_id}'"))
            continue
        seen[image_id] = path
        label = labels_dir / f"{image_id}.png"
        qa_path = qa_dir / f"{image_id}.json"
        missing = [what for what, p in (("label", label), ("QA file", qa_path)) if not p.is_file()]
        if missing:
            problems.append(SampleProblem(image_id, f"no {' and no '.join(missing)} for {path.name}"))
            continue
        try:
            questions, answer, category, raw_questions = read_qa(qa_path)
        except ValueError as e:
            problems.append(SampleProblem(image_id, str(e)))
            continue
        samples.append(Sample(image_id, path, label, questions, answer, category, raw_questions))
    return samples, problems


def load_rgb(path: Path) -> np.ndarray:
    """uint8 (H, W, 3); raises ValueError with a sentence when the file cannot be used."""
    try:
        with _large_images(), Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I", "F"):
                a = np.asarray(im, dtype=np.float64)
                hi = a.max() or 1.0
                im = Image.fromarray((a / hi * 255).astype(np.uint8))
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as e:  # PIL raises many kinds on broken files
        raise ValueError(f"{Path(path).name} cannot be read as an image ({type(e).__name__}: {e})") from e


def load_mask(path: Path) -> np.ndarray:
    """bool (H, W): any non-zero pixel is target (labels are 0/255 or 0/1; RGB labels count any channel)."""
    try:
        with _large_images(), Image.open(path) as im:
            im.load()
            a = np.asarray(im)
    except Exception as e:
        raise ValueError(f"{Path(path).name} cannot be read as a mask ({type(e).__name__}: {e})") from e
    if a.ndim == 3:
        a = a[..., :3].any(axis=2) if a.shape[2] >= 3 else a[..., 0]
    return np.asarray(a) > 0


def label_channel_pixels(path: Path, size: tuple[int, int]) -> tuple[int, int]:
    """(channels, target pixels summed over the channels) of a label file resized NEAREST to `size`, as the
    reference reads it (`np.array(label.resize(size, NEAREST)) > 0`, its channels kept)."""
    with _large_images(), Image.open(path) as im:
        a = np.asarray(im.resize(tuple(size), Image.NEAREST)) > 0
    return (a.shape[2] if a.ndim == 3 else 1), int(a.sum())


def reference_draw(root: str | Path, split: str, seed: int, limit: int | None = None) -> list[tuple[str, int]]:
    """(image id, question index) as the reference's evaluation draws them, in its order.

    Rules (test_think2seg-rs_qwen.py:224 and :262-266, EarthReason_datasets.py:407-463 and :557): one
    `random.Random(seed)` stream; the split's `os.listdir(images)` order (this disk's order); an entry counts
    when `labels/<id>.png` and `QAs/<id>.json` exist and its `questions` is non-empty, the id being the file
    name up to its first dot; with a `limit` below the count, `sample(range(count), limit)` picks the entries
    first; then one `choice` over each picked entry's questions, in that order. An entry this reader later
    rejects still takes its draw, so the others keep theirs.
    """
    images_dir, labels_dir, qa_dir = split_dirs(root, split)
    if not images_dir.is_dir():
        raise BadInput(where_to_get_it(root, split), code="dataset_missing")
    listing: list[tuple[str, int]] = []  # (id, number of questions)
    for name in os.listdir(images_dir):
        image_id = name.split(".")[0]
        qa_path = qa_dir / f"{image_id}.json"
        if not ((labels_dir / f"{image_id}.png").exists() and qa_path.exists()):
            continue
        try:
            questions = json.loads(qa_path.read_text(encoding="utf-8")).get("questions")
        except Exception:  # the reference skips a QA file it cannot load (with a warning)
            continue
        if questions:
            listing.append((image_id, len(questions)))
    rng = random.Random(seed)
    picked = rng.sample(range(len(listing)), limit) if limit and 0 < limit < len(listing) else range(len(listing))
    return [(listing[i][0], rng.choice(range(listing[i][1]))) for i in picked]


def load_sample(sample: Sample, resize_label: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(rgb, mask) of one sample; ValueError when the pair is unusable.

    A label whose size differs from its image is an error, unless `resize_label` (the Think2Seg-RS protocol,
    which resizes image and label to its frame independently): then it is returned as it is.
    """
    rgb = load_rgb(sample.image_path)
    mask = sample.read_mask()
    if mask.shape != rgb.shape[:2] and not resize_label:
        h, w = rgb.shape[:2]
        mh, mw = mask.shape
        raise ValueError(f"label {sample.label_path.name} is {mw} x {mh} px but its image is {w} x {h} px")
    return rgb, mask


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """LANCZOS to (width, height), as the reference resizes images."""
    if (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """NEAREST to (width, height), as the reference resizes labels."""
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0

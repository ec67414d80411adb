"""A mini EarthReason on disk for the evaluation, training and dataset tests.

`make_mini_earthreason(root, sam_checkpoint)` writes `{split}/images|labels|QAs` with:
- `perfect_*`: 840 x 840 images whose label IS the mask SAM2 draws for the tiny reasoner's known answer, so
  that answer scores IoU exactly 1 (the image is already in the model frame: nothing is resized);
- `empty_*`: no target (all-zero label);
- `rect_*`: images of other sizes with a rectangle as the label (IoU strictly between 0 and 1);
- two broken samples: `broken_qa` (its QA file is not JSON) and `broken_image` (its image file is not an image).
Each good sample has three questions and a category.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

GOOD_PERFECT = ("perfect_a", "perfect_b")
GOOD_EMPTY = ("empty_a",)
RECT_SIZES = {  # id: (width, height)
    "rect_a": (320, 240),
    "rect_b": (500, 400),
    "rect_c": (900, 700),
    "rect_d": (256, 256),
    "rect_e": (640, 480),
    "rect_f": (400, 600),
    "rect_g": (700, 300),
    "rect_h": (333, 333),
    "rect_i": (1000, 800),
}
BROKEN = ("broken_qa", "broken_image")
CATEGORIES = ("water", "sports field", "industrial")


def known_sam_mask(segmenter, rgb: np.ndarray) -> np.ndarray:
    """What SAM2 draws on an 840 x 840 image for the tiny reasoner's known box and points."""
    from think2seg.prompts import PromptInstance
    from think2seg.testing.tiny_models import KNOWN_BOX, KNOWN_POINTS

    assert rgb.shape[:2] == (840, 840)
    return segmenter.segment(rgb, [PromptInstance(KNOWN_BOX, KNOWN_POINTS)]).merged


def _image(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    img = np.broadcast_to(rng.integers(40, 200, size=3, dtype=np.uint8), (h, w, 3)).copy()
    img = (img.astype(int) + rng.integers(-30, 30, size=img.shape)).clip(0, 255).astype(np.uint8)
    img[h // 4 : h // 2, w // 3 : 2 * w // 3] = rng.integers(0, 255, size=3)
    return img


def _write(base: Path, image_id: str, rgb: np.ndarray, mask: np.ndarray, questions: list[str], category: str):
    Image.fromarray(rgb).save(base / "images" / f"{image_id}.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(base / "labels" / f"{image_id}.png")
    (base / "QAs" / f"{image_id}.json").write_text(
        json.dumps({"questions": questions, "answer": [f"The {category} in the image."], "category": category})
    )


def make_mini_earthreason(
    root: Path, sam_checkpoint: Path, split: str = "val", n_rect: int | None = None, seed: int = 0
) -> dict:
    """Write the mini dataset under root/split; returns what was written (ids by kind, the known masks)."""
    from think2seg.segmenter import Segmenter

    rng = np.random.default_rng(seed)
    base = Path(root) / split
    for d in ("images", "labels", "QAs"):
        (base / d).mkdir(parents=True, exist_ok=True)
    seg = Segmenter.from_pretrained(str(sam_checkpoint), device="cpu")
    masks = {}
    for k, image_id in enumerate(GOOD_PERFECT):
        rgb = _image(rng, 840, 840)
        masks[image_id] = known_sam_mask(seg, rgb)
        assert masks[image_id].any() and not masks[image_id].all()
        _write(
            base,
            image_id,
            rgb,
            masks[image_id],
            [f"the {c} seen from above, number {k}" for c in CATEGORIES],
            CATEGORIES[0],
        )
    for image_id in GOOD_EMPTY:
        rgb = _image(rng, 600, 450)
        masks[image_id] = np.zeros((450, 600), dtype=bool)
        _write(
            base,
            image_id,
            rgb,
            masks[image_id],
            ["the stadium for hurdle racing", "a running track", "where would athletes train?"],
            CATEGORIES[1],
        )
    rects = list(RECT_SIZES.items())[:n_rect] if n_rect is not None else list(RECT_SIZES.items())
    for k, (image_id, (w, h)) in enumerate(rects):
        rgb = _image(rng, w, h)
        m = np.zeros((h, w), dtype=bool)
        m[h // 5 : 3 * h // 5, w // 6 : w // 2 + k * w // 40] = True
        masks[image_id] = m
        _write(
            base,
            image_id,
            rgb,
            m,
            [f"question {j} about {image_id}" for j in range(3)],
            CATEGORIES[k % len(CATEGORIES)],
        )
    # broken: a QA file that is not JSON, an image file that is not an image
    rgb = _image(rng, 300, 300)
    _write(base, "broken_qa", rgb, np.ones((300, 300), dtype=bool), ["q"], "water")
    (base / "QAs" / "broken_qa.json").write_text("{'questions': [unterminated")
    _write(base, "broken_image", rgb, np.ones((300, 300), dtype=bool), ["q"], "water")
    (base / "images" / "broken_image.png").write_bytes(b"this is not a png")
    return {
        "root": Path(root),
        "split": split,
        "perfect": list(GOOD_PERFECT),
        "empty": list(GOOD_EMPTY),
        "rect": [r[0] for r in rects],
        "broken": list(BROKEN),
        "masks": masks,
    }

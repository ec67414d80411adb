"""Per-image IoU, gIoU and cIoU under the two EarthReason protocols.

gIoU is the mean of the per-image IoUs; cIoU is the total intersection over the total union of the split.
The two protocols differ on the question asked, the frame the masks are compared in and, above all, on
images with no target, so their figures are not comparable (method.md):

- ``think2seg`` (Think2Seg-RS's evaluation script, test_think2seg-rs_qwen.py): the reference's question draw
  (`random.seed(seed)` over the `os.listdir` order, one `random.choice` per image: `earthreason.reference_draw`),
  image and label resized to 840 x 840 (LANCZOS / NEAREST; a label of another size than its image is resized
  too, not skipped), greedy decoding without a forced answer, the reference's parser (`prompts`, mode
  ``reference``). A failed parse is an empty mask whose ground-truth area still adds to the union. On an image
  with no target the IoU is 1 when the model answered ``[]`` and 0 otherwise, and the image adds nothing to the
  cIoU sums whatever the answer: the reference never runs SAM2 there, so a false alarm on an empty image
  costs gIoU but not cIoU.
- ``segearth`` (SegEarth-R1's evaluation, LISA-style): the first question, the long side resized to 1024,
  every image adds its intersection and union, and an image whose prediction and target are both empty has
  IoU 1 (union 0). A failed parse is an empty mask. The answer is read as the app reads it (``tolerant``,
  forced answer on): this protocol measures our product on SegEarth-R1's terms.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from ..prompt_template import MODEL_FRAME

PR_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)

#: What `precision_at` means under each protocol (metrics.json says which one a run used).
PRECISION_DEFINITIONS = {
    # test_think2seg-rs_ref.py:446-452, :487-492: a prediction counts where the reference has a mask (SAM2 made
    # one, or the parser accepted the answer on an image without a target), and it hits at IoU >= t
    "reference": "IoU >= t over the images that got a mask (SAM2 made one from the answer's prompts, or the "
    "parser accepted an answer on an image without a target), as test_think2seg-rs_ref.py counts "
    "Pr@X",
    "all_images": "IoU > t over all images",
}


@dataclass(frozen=True)
class Protocol:
    name: str
    question: str  # "reference" (the reference's seeded draw), "random" (seeded per image id) or "first"
    frame: int  # masks are compared at this size
    square: bool  # True: resized to frame x frame; False: the long side resized to frame, aspect kept
    description: str
    parse_mode: str = "tolerant"  # prompts.PARSE_MODES
    precision: str = "all_images"  # PRECISION_DEFINITIONS
    #: True: a label file of several channels scores as the reference scores it (`multichannel_label_score`)
    reference_label_channels: bool = False
    forced_answer: bool = True  # a budget overrun gets its answer block forced open (ours; not the reference)
    resize_mismatched_labels: bool = False  # True: a label of another size is resized; False: skipped
    #: True: the question goes into the prompt as the dataset writes it, blanks around it kept (the reference's
    #: `USER_PROMPT.format(Question=q)`); False: stripped, as every app entry point does (`options.check_query`)
    question_as_written: bool = False

    def frame_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the comparison frame for an image of this size."""
        if self.square:
            return self.frame, self.frame
        scale = self.frame / max(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))


PROTOCOLS = {
    "think2seg": Protocol(
        "think2seg",
        "reference",
        MODEL_FRAME,
        True,
        "Think2Seg-RS: the reference's seeded question draw, 840 x 840, greedy without a forced answer, the "
        "reference's parser, failed parse = empty mask, empty target: IoU 1 for [] else 0 and nothing added "
        "to cIoU, the question as written",
        parse_mode="reference",
        question_as_written=True,
        forced_answer=False,
        resize_mismatched_labels=True,
        precision="reference",
        reference_label_channels=True,
    ),
    "segearth": Protocol(
        "segearth",
        "first",
        1024,
        False,
        "SegEarth-R1: first question, long side 1024, failed parse = empty mask, "
        "empty prediction on an empty target = IoU 1",
    ),
}


def get_protocol(name: str) -> Protocol:
    from ..errors import BadInput

    try:
        return PROTOCOLS[name]
    except KeyError:
        raise BadInput(f"Unknown protocol '{name}': use {' or '.join(PROTOCOLS)}.", code="bad_protocol") from None


@dataclass
class SampleScore:
    """One image's score: iou is its gIoU term, intersection/union what it adds to the cIoU sums."""

    iou: float
    intersection: int
    union: int
    empty_target: bool
    #: ok | empty | unparsed (the parser rejected the answer) | sam2_failed (the reference's parser accepted it,
    #: its SAM2 call cannot take it: scored as unparsed, counted apart, as the reference counts them)
    status: str

    def to_dict(self) -> dict:
        return asdict(self)


def score_sample(pred: np.ndarray | None, gt: np.ndarray, status: str, protocol: Protocol | str) -> SampleScore:
    """Score one prediction against its ground truth (both bool, same shape) under a protocol.

    `pred` is the OR-merged mask; None (or a status other than "ok") counts as an empty mask.
    """
    proto = get_protocol(protocol) if isinstance(protocol, str) else protocol
    gt = np.asarray(gt, dtype=bool)
    if pred is None or status != "ok":
        pred = np.zeros_like(gt)
    pred = np.asarray(pred, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    empty_target = not gt.any()
    if proto.name == "think2seg" and empty_target:
        return SampleScore(1.0 if status == "empty" else 0.0, 0, 0, True, status)
    inter = int(np.logical_and(pred, gt).sum())
    union = int(np.logical_or(pred, gt).sum())
    iou = inter / union if union > 0 else 1.0  # union 0 only happens on an empty target (segearth)
    return SampleScore(iou, inter, union, empty_target, status)


def multichannel_label_score(score: SampleScore, channel_pixels: int) -> SampleScore:
    """The reference's score of an image whose label it keeps with C > 1 channels (`np.array(label) > 0` of an
    RGB file, (H, W, C)): SAM2's (H, W) mask does not broadcast against it, its IoU step raises inside the
    `try` (IoU 0, no predicted mask), and the union gets `np.sum(gt_mask > 0)`, every channel counted. An image
    without a target is unaffected (`np.all(mask == 0)`). An answer that reached SAM2 is then `sam2_failed`."""
    if score.empty_target:
        return score
    status = "sam2_failed" if score.status == "ok" else score.status
    return SampleScore(0.0, 0, int(channel_pixels), False, status)


def got_mask(s: SampleScore) -> bool:
    """Whether the reference has a predicted mask for this image (its Pr@X denominator): SAM2 ran on the
    answer's prompts, or, on an image without a target, its parser accepted the answer (an all-zero mask)."""
    return s.status == "ok" or (s.empty_target and s.status != "unparsed")


def precision_at(
    scores: list[SampleScore], definition: str = "all_images", thresholds=PR_THRESHOLDS
) -> dict[str, float | None]:
    if definition == "reference":
        pool = [s for s in scores if got_mask(s)]
        return {f"{t:.1f}": (sum(s.iou >= t for s in pool) / len(pool) if pool else 0.0) for t in thresholds}
    return {f"{t:.1f}": (sum(s.iou > t for s in scores) / len(scores) if scores else None) for t in thresholds}


def _aggregate(scores: list[SampleScore]) -> dict:
    n = len(scores)
    inter = sum(s.intersection for s in scores)
    union = sum(s.union for s in scores)
    return {
        "n": n,
        "giou": float(np.mean([s.iou for s in scores])) if n else None,
        "ciou": inter / union if union > 0 else None,
        "intersection": inter,
        "union": union,
    }


def summarize(
    scores: list[SampleScore], categories: list[str | None] | None = None, protocol: Protocol | str | None = None
) -> dict:
    """The split's figures: gIoU, cIoU, counts, precision at IoU thresholds, and per category when known."""
    out = _aggregate(scores)
    definition = "all_images"
    if protocol is not None:
        proto = get_protocol(protocol) if isinstance(protocol, str) else protocol
        out["protocol"] = proto.name
        out["protocol_description"] = proto.description
        definition = proto.precision
        out["question_as_written"] = proto.question_as_written
    out["parse_failures"] = sum(s.status == "unparsed" for s in scores)
    out["sam2_failures"] = sum(s.status == "sam2_failed" for s in scores)
    out["empty_answers"] = sum(s.status == "empty" for s in scores)
    out["empty_target"] = sum(s.empty_target for s in scores)
    out["empty_target_correct"] = sum(s.empty_target and s.status == "empty" for s in scores)
    out["precision_at"] = precision_at(scores, definition)
    out["precision_definition"] = PRECISION_DEFINITIONS[definition]
    out["precision_images"] = sum(got_mask(s) for s in scores) if definition == "reference" else len(scores)
    if categories is not None and any(c is not None for c in categories):
        groups: dict[str, list[SampleScore]] = defaultdict(list)
        for s, c in zip(scores, categories, strict=True):
            groups[str(c) if c is not None else "(none)"].append(s)
        out["per_category"] = {c: _aggregate(g) for c, g in sorted(groups.items())}
    return out

"""Parse the reasoner's answer into typed SAM prompts, in one of three named modes.

The answer format (docs/method.md): `<think>...</think><answer>```json[{"bbox_2d": [x1,y1,x2,y2],
"positive_points": [[x,y],[x,y]]}, ...]```</answer>`, coordinates in the model's square frame. A model
mistake is a result with a reason, never an exception: the caller shows the reason to the user.

Modes (docs/method.md, "ours vs reference", has one row per rule and the test that pins it):

- ``reference``: the reference evaluation's parser, rule for rule (Ricardo-XZ/Think2Seg-RS,
  geo_reward_func_ultra.py `parse_sam_json_test`, :777-823): the text between `<answer>` and `</answer>` only
  when both tags are there, else the whole text; from the first `[` to the last `]`; `json.loads`, else
  `json_repair.loads`; a list of objects, each with `bbox_2d` (a list of 4) and/or `positive_points`
  (exactly 2 points of 2 numbers); any `negative_points` key, or one invalid instance, rejects the whole
  answer; boxes overlapping above IoU 0.5 keep the largest (`remove_repeated_boxes_nms`, :836-881);
  coordinates unchanged. `think2seg eval --protocol think2seg` uses it. Anything that makes the reference's
  parser raise (its `except Exception` returns None) is a parse failure here; an answer it accepts that its
  SAM2 call then cannot take (`np.array` of the prompt is not a numeric array of the right size: numbers as
  strings, `null` in a box, an integer outside int64/uint64, `"negative_points": null`) is ``unparsed`` with
  ``format_ok`` True (`sam2_failed`): the same score, but not a parse failure in the reference's count.
- ``reference_train``: the training parser behind the reference's mask and format rewards (`parse_sam_json`,
  :720-775): ``reference`` plus a required ```` ```json ```` block and required `positive_points`.
- ``tolerant`` (ours, for the app: segment, serve, batch, the plugin): the answer block even without
  `</answer>`, the json fence optional, broken JSON repaired, each instance keeps whatever of its box and
  points is usable (an unusable instance is dropped, not the whole answer), coordinates clipped to the frame
  and box corners sorted, boxes under a pixel dropped, duplicates keep the largest box. Each dropped
  instance's reason is in `rejected` (a number too large for a float is one of them).

`parse_answer` never raises on any string: whatever a run-away answer holds (a 400-digit number that the
token budget cut and json_repair closed, 10^5 nested brackets, lone surrogates) comes back as a result.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Literal

import json_repair
import numpy as np

ParseMode = Literal["tolerant", "reference", "reference_train"]
PARSE_MODES: tuple[str, ...] = ("tolerant", "reference", "reference_train")
DEFAULT_PARSE_MODE: ParseMode = "tolerant"

_ANSWER_OPEN_ENDED = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)
_ANSWER_CLOSED = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
_JSON_FENCE_OPTIONAL = re.compile(r"```(?:json)?\s*(.*?)\s*(?:```|$)", re.DOTALL)
_JSON_FENCE_REQUIRED = re.compile(r"```json\s*(.*?)\s*```", re.DOTALL)
# The reference's shape reward (geo_reward_func_ultra.py:959-961): a full match, nothing before or after.
_SHAPE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)

#: Boxes overlapping more than this are the same target written twice (the reference's NMS threshold).
DUPLICATE_IOU = 0.5
#: Positive points per instance the prompt asks for (and the reference's parsers require).
POINTS_PER_INSTANCE = 2

Box = tuple[float, float, float, float]
Point = tuple[float, float]


@dataclass(frozen=True)
class PromptInstance:
    """One target: a box (x1, y1, x2, y2) or None, and positive points (possibly none), in the frame the
    model wrote them in. SAM2 is prompted with whatever is there (at least one of the two)."""

    box: Box | None
    points: tuple[Point, ...] = ()

    def scaled(self, sx: float, sy: float) -> PromptInstance:
        box = None
        if self.box is not None:
            x1, y1, x2, y2 = self.box
            box = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
        return PromptInstance(box=box, points=tuple((x * sx, y * sy) for x, y in self.points))

    @property
    def anchor(self) -> Point:
        """Where the instance is: its box centre, or without a box the mean of its points."""
        if self.box is not None:
            x1, y1, x2, y2 = self.box
            return ((x1 + x2) / 2, (y1 + y2) / 2)
        xs, ys = zip(*self.points)
        return (sum(xs) / len(xs), sum(ys) / len(ys))


@dataclass
class ParsedAnswer:
    """status: "ok" (instances found), "empty" (the model answered []), "unparsed" (no usable answer).

    `format_ok` is the parser's verdict on the JSON alone (the reference's format reward); it differs from
    `status != "unparsed"` only in the reference modes, where the reference's parser accepts numbers written
    as strings that its SAM2 call then cannot take (the reference scores such an answer as a failure).
    """

    status: str
    instances: list[PromptInstance] = field(default_factory=list)
    reasoning: str = ""
    reason: str = ""
    dropped: int = 0
    mode: str = DEFAULT_PARSE_MODE
    format_ok: bool = False
    #: tolerant mode: why each dropped instance was dropped ("instance 2: ...")
    rejected: list[str] = field(default_factory=list)

    @property
    def parsed(self) -> bool:
        return self.status != "unparsed"

    @property
    def sam2_failed(self) -> bool:
        """The parser accepted the answer but SAM2 cannot take its prompts (reference modes): scored as a
        failure, yet not a parse failure in the reference's count."""
        return self.status == "unparsed" and self.format_ok

    @property
    def label(self) -> str:
        """ok | empty | unparsed | sam2_failed: the status as the reference counts it."""
        return "sam2_failed" if self.sam2_failed else self.status


def extract_reasoning(text: str) -> str:
    m = _THINK.search(text)
    if m:
        return m.group(1).strip()
    # No think tags: everything before the answer is the model's reasoning.
    return text.split("<answer>", 1)[0].strip()


def has_think_answer_shape(text: str) -> bool:
    """The shape reward's test: `<think>..</think>`, blanks, `<answer>..</answer>`, and nothing else."""
    return bool(_SHAPE.fullmatch(text or ""))


def box_iou(a, b) -> float:
    """IoU of two (x1, y1, x2, y2) boxes, computed as the reference does (corners taken as written)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _box_area(b) -> float:
    return (b[2] - b[0]) * (b[3] - b[1])


def duplicate_indices(boxes: list, iou: float = DUPLICATE_IOU) -> set[int]:
    """Indices (into `boxes`; None entries take no part) removed as duplicates: largest box first, every
    later box overlapping a kept one above `iou` goes (the reference's `remove_repeated_boxes_nms`)."""
    order = sorted((i for i, b in enumerate(boxes) if b is not None), key=lambda i: _box_area(boxes[i]), reverse=True)
    removed: set[int] = set()
    for k, i in enumerate(order):
        if i in removed:
            continue
        for j in order[k + 1 :]:
            if j not in removed and box_iou(boxes[i], boxes[j]) > iou:
                removed.add(j)
    return removed


def remove_duplicates(instances: list[PromptInstance], iou: float = DUPLICATE_IOU) -> list[PromptInstance]:
    """Instances without the duplicates of larger boxes, in the model's order; box-less ones are kept."""
    gone = duplicate_indices([inst.box for inst in instances], iou)
    return [inst for i, inst in enumerate(instances) if i not in gone]


def _load_json(raw: str):
    """json.loads, else json_repair.loads (as the reference); None when neither gives anything."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        try:
            return json_repair.loads(raw)
        except Exception:  # json_repair raises a variety of errors on hostile input
            return None
    except (RecursionError, ValueError):  # very deep nesting; lone surrogates
        return None


def _unparsed(reason: str, reasoning: str, mode: str, **kw) -> ParsedAnswer:
    return ParsedAnswer("unparsed", reasoning=reasoning, reason=f"no parseable answer: {reason}", mode=mode, **kw)


# -- tolerant ---------------------------------------------------------------------------------------------
def _tolerant_json_text(text: str) -> str | None:
    m = _ANSWER_OPEN_ENDED.search(text)
    body = m.group(1) if m else text
    fence = _JSON_FENCE_OPTIONAL.search(body)
    if fence:
        body = fence.group(1)
    start, end = body.find("["), body.rfind("]")
    if start < 0 or end < start:
        return None
    return body[start : end + 1]


def _number(v) -> float | None:
    """A finite float from a JSON number or a numeric string; None otherwise (booleans included)."""
    if isinstance(v, bool):
        return None
    if not isinstance(v, (int, float, str)):
        return None
    try:
        v = float(v)
    except (ValueError, OverflowError):  # not a number; an integer too large for a float
        return None
    return v if math.isfinite(v) else None


def _too_large(values) -> bool:
    return any(isinstance(v, int) and not isinstance(v, bool) and _number(v) is None for v in values)


def _clip(v: float, hi: float) -> float:
    return float(min(max(v, 0.0), hi))


def _tolerant_box(raw, frame_w: float, frame_h: float) -> Box | None:
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        return None
    nums = [_number(v) for v in raw]
    if any(v is None for v in nums):
        return None
    x1, y1, x2, y2 = nums
    x1, x2 = sorted((_clip(x1, frame_w), _clip(x2, frame_w)))
    y1, y2 = sorted((_clip(y1, frame_h), _clip(y2, frame_h)))
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return (x1, y1, x2, y2)


def _tolerant_points(raw, frame_w: float, frame_h: float) -> tuple[Point, ...]:
    if not isinstance(raw, (list, tuple)):
        return ()
    points = []
    for p in raw:
        if isinstance(p, (list, tuple)) and len(p) == 2:
            x, y = _number(p[0]), _number(p[1])
            if x is not None and y is not None:
                points.append((_clip(x, frame_w), _clip(y, frame_h)))
    return tuple(points)


def _parse_tolerant(text: str, frame_w: float, frame_h: float, reasoning: str) -> ParsedAnswer:
    mode = "tolerant"
    raw = _tolerant_json_text(text)
    if raw is None:
        return _unparsed("no JSON list in the answer", reasoning, mode)
    data = _load_json(raw)
    if not isinstance(data, list):
        return _unparsed("the JSON is not a list", reasoning, mode)
    if not data:
        return ParsedAnswer(
            "empty", reasoning=reasoning, reason="empty list: nothing matches", mode=mode, format_ok=True
        )
    instances, rejected = [], []
    for n, obj in enumerate(data, 1):
        if not isinstance(obj, dict):
            rejected.append(f"instance {n} is not a JSON object")
            continue
        raw_box, raw_points = obj.get("bbox_2d"), obj.get("positive_points")
        box = _tolerant_box(raw_box, frame_w, frame_h)
        points = _tolerant_points(raw_points, frame_w, frame_h)
        if box is not None or points:
            instances.append(PromptInstance(box, points))
            continue
        flat = list(raw_box) if isinstance(raw_box, (list, tuple)) else []
        flat += (
            [v for p in raw_points if isinstance(p, (list, tuple)) for v in p]
            if isinstance(raw_points, (list, tuple))
            else []
        )
        if _too_large(flat):
            rejected.append(f"instance {n} has a coordinate too large to be a number")
        else:
            rejected.append(f"instance {n} has no valid box or point")
    dropped = len(data) - len(instances)
    if not instances:
        first = f" ({rejected[0]})" if rejected else ""
        return _unparsed(
            f"none of the {len(data)} instances has a valid box or point{first}",
            reasoning,
            mode,
            dropped=dropped,
            rejected=rejected,
        )
    unique = remove_duplicates(instances)
    dropped += len(instances) - len(unique)
    return ParsedAnswer(
        "ok", instances=unique, reasoning=reasoning, dropped=dropped, mode=mode, format_ok=True, rejected=rejected
    )


# -- reference --------------------------------------------------------------------------------------------
def _is_number(v) -> bool:
    """What numpy turns into a number array and SAM2 accepts (JSON true/false included, as np.array does)."""
    return isinstance(v, (int, float))


def _floatable(v) -> bool:
    """The reference's point check: `float(v)` succeeds (so "12" passes it, None and lists do not)."""
    if isinstance(v, (int, float)):
        return True
    if isinstance(v, str):
        try:
            float(v)
        except ValueError:
            return False
        return True
    return False


def _floatable_int_ok(v) -> bool:
    """`float(v)` also raises OverflowError on an int too large (the reference's bare except rejects it)."""
    try:
        float(v)
    except (OverflowError, TypeError, ValueError):
        return False
    return True


def _reference_points_ok(points) -> bool:
    return (
        isinstance(points, list)
        and len(points) == POINTS_PER_INSTANCE
        and all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(_floatable(v) and _floatable_int_ok(v) for v in p)
            for p in points
        )
    )


def _reference_json_text(text: str, fence_required: bool) -> tuple[str | None, str]:
    if "<answer>" in text and "</answer>" in text:
        m = _ANSWER_CLOSED.search(text)
        if m:
            text = m.group(1).strip()
    if fence_required:
        if "```json" not in text:
            return None, "the answer has no ```json block"
        m = _JSON_FENCE_REQUIRED.search(text)
        if not m:
            return None, "the ```json block is not closed"
        text = m.group(1).strip()
    if "[" in text and "]" in text:
        text = text[text.find("[") : text.rfind("]") + 1]
    return text, ""


def _reference_instance_problem(i: int, obj, training: bool) -> str:
    """Why instance i fails the reference's checks, or "" (geo_reward_func_ultra.py:751-766, :799-814)."""
    n = i + 1
    if not isinstance(obj, dict):
        return f"instance {n} is not a JSON object"
    has_box, has_points = "bbox_2d" in obj, "positive_points" in obj
    if not (has_box or has_points):
        return f"instance {n} has neither bbox_2d nor positive_points"
    if has_box and not (isinstance(obj["bbox_2d"], list) and len(obj["bbox_2d"]) == 4):
        return f"instance {n} has a bbox_2d that is not a list of 4 numbers"
    if (has_points or training) and not _reference_points_ok(obj.get("positive_points")):
        return f"instance {n} does not have exactly {POINTS_PER_INSTANCE} positive_points of 2 numbers"
    # The reference allows 0 negative points: a present key fails, unless it is null (see _parse_reference).
    if obj.get("negative_points") is not None:
        return f"instance {n} has negative_points, which the published prompt does not use"
    return ""


def _parse_reference(text: str, reasoning: str, training: bool) -> ParsedAnswer:
    mode = "reference_train" if training else "reference"
    raw, why = _reference_json_text(text, fence_required=training)
    if raw is None:
        return _unparsed(why, reasoning, mode)
    data = _load_json(raw)
    if not isinstance(data, list):
        return _unparsed("the JSON is not a list", reasoning, mode)
    for i, obj in enumerate(data):
        problem = _reference_instance_problem(i, obj, training)
        if problem:
            return _unparsed(f"{problem} (one invalid instance rejects the whole answer)", reasoning, mode)
    if not data:
        return ParsedAnswer(
            "empty", reasoning=reasoning, reason="empty list: nothing matches", mode=mode, format_ok=True
        )
    boxes = [obj.get("bbox_2d") for obj in data]
    if len(data) > 1:
        # The reference computes every box's area here (even a lone box's); a non-number raises and its
        # parser rejects the answer. So does an IoU whose arithmetic overflows (a float beside a huge int).
        if any(not _is_number(v) for b in boxes if b is not None for v in b):
            return _unparsed("a bbox_2d holds something other than numbers", reasoning, mode)
        try:
            gone = duplicate_indices(boxes)
        except (OverflowError, ZeroDivisionError, ValueError, TypeError):
            return _unparsed("a bbox_2d holds a number too large to compare boxes", reasoning, mode)
    else:
        gone = set()
    kept = [obj for i, obj in enumerate(data) if i not in gone]
    instances = []
    for obj in kept:
        # What the reference's parser accepts but its SAM2 call then raises on, so the image scores as a
        # failure while the format reward still gives 1.
        problem = _sam2_problem(obj)
        if problem:
            return ParsedAnswer(
                "unparsed",
                reasoning=reasoning,
                mode=mode,
                format_ok=True,
                dropped=len(gone),
                reason=f"no usable answer: {problem}, which SAM2 cannot take",
            )
        instances.append(_sam2_instance(obj))
    return ParsedAnswer("ok", instances=instances, reasoning=reasoning, dropped=len(gone), mode=mode, format_ok=True)


def _sam2_array(value) -> tuple[np.ndarray | None, str]:
    """`np.array(value)` as the reference's SAM2 call makes it, or (None, why) where torch cannot take it."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        return None, "coordinates in lists of different lengths"
    if arr.dtype.kind in "biuf":
        return arr, ""
    if arr.dtype.kind in "US":
        return None, "coordinates written as strings"
    return None, "a null or an integer outside int64/uint64 among the coordinates"


def _sam2_problem(obj: dict) -> str:
    if "negative_points" in obj:  # only null gets here: len(None) raises
        return "negative_points is null"
    if "bbox_2d" in obj:
        arr, why = _sam2_array(obj["bbox_2d"])
        if arr is None:
            return f"the bbox_2d holds {why}"
        if arr.size != 4:  # four one-element lists pass (SAM2 reshapes the box to (-1, 2, 2))
            return "the bbox_2d is not 4 numbers"
    if obj.get("positive_points"):
        arr, why = _sam2_array(obj["positive_points"])
        if arr is None:
            return f"the positive_points hold {why}"
        if arr.shape != (POINTS_PER_INSTANCE, 2):
            return "the positive_points are not 2 points of 2 numbers"
    return ""


def _sam2_instance(obj: dict) -> PromptInstance:
    box = None
    if "bbox_2d" in obj:
        box = tuple(float(v) for v in np.asarray(obj["bbox_2d"]).ravel())
    points = ()
    if obj.get("positive_points"):
        points = tuple((float(x), float(y)) for x, y in np.asarray(obj["positive_points"]).tolist())
    return PromptInstance(box=box, points=points)


def check_parse_mode(mode: str) -> str:
    if mode not in PARSE_MODES:
        from .errors import BadInput

        raise BadInput(f"Unknown parse mode '{mode}': use {', '.join(PARSE_MODES)}.", code="bad_options")
    return mode


def parse_answer(
    text: str, frame_w: float = 840, frame_h: float | None = None, mode: ParseMode | str = DEFAULT_PARSE_MODE
) -> ParsedAnswer:
    """Parse a completion into prompt instances under one of PARSE_MODES (see the module's docstring).

    `frame_w`/`frame_h` (the model's frame) only matter in tolerant mode, which clips to them.
    """
    check_parse_mode(mode)
    frame_h = frame_w if frame_h is None else frame_h
    text = text if isinstance(text, str) else ""
    reasoning = extract_reasoning(text)
    if not text.strip():
        return ParsedAnswer(
            "unparsed", reasoning=reasoning, mode=mode, reason="no parseable answer: the model wrote nothing"
        )
    try:
        if mode == "tolerant":
            return _parse_tolerant(text, frame_w, frame_h, reasoning)
        return _parse_reference(text, reasoning, training=mode == "reference_train")
    except (Exception, RecursionError) as e:  # noqa: BLE001 - the reference's parser: `except Exception` -> None
        return _unparsed(f"the answer could not be read ({type(e).__name__})", reasoning, mode)


def is_valid_json_answer(text: str) -> bool:
    """The reference's format reward test (`sam_format_reward`, :922-955): its training parser accepts the
    answer (a ```json block, json_repair allowed, two positive points, box optional, no negative_points)."""
    return parse_answer(text, mode="reference_train").format_ok

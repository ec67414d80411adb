"""Parse the reasoner's answer into typed SAM prompts.

The answer format (method.md): `<think>...</think><answer>```json[{"bbox_2d": [x1,y1,x2,y2],
"positive_points": [[x,y],[x,y]]}, ...]```</answer>`, coordinates in the model's square frame. A model
mistake is a result with a reason, never an exception: the caller shows the reason to the user.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import json_repair

_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
_JSON_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*(?:```|$)", re.DOTALL)
_SHAPE = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.DOTALL)

#: Boxes overlapping more than this are the same target written twice (the reference's NMS threshold).
DUPLICATE_IOU = 0.5


@dataclass(frozen=True)
class PromptInstance:
    """One target: a box (x1, y1, x2, y2) and positive points, in the frame the model wrote them in."""

    box: tuple[float, float, float, float]
    points: tuple[tuple[float, float], ...]

    def scaled(self, sx: float, sy: float) -> PromptInstance:
        x1, y1, x2, y2 = self.box
        return PromptInstance(
            box=(x1 * sx, y1 * sy, x2 * sx, y2 * sy),
            points=tuple((x * sx, y * sy) for x, y in self.points),
        )


@dataclass
class ParsedAnswer:
    """status: "ok" (instances found), "empty" (the model answered []), "unparsed" (no usable answer)."""

    status: str
    instances: list[PromptInstance] = field(default_factory=list)
    reasoning: str = ""
    reason: str = ""
    dropped: int = 0

    @property
    def parsed(self) -> bool:
        return self.status != "unparsed"


def extract_reasoning(text: str) -> str:
    m = _THINK.search(text)
    if m:
        return m.group(1).strip()
    # No think tags: everything before the answer is the model's reasoning.
    return text.split("<answer>", 1)[0].strip()


def has_think_answer_shape(text: str) -> bool:
    """The shape reward's test: `<think>..</think>` then `<answer>..</answer>` and nothing else."""
    return bool(_SHAPE.match(text))


def _json_text(text: str) -> str | None:
    m = _ANSWER.search(text)
    body = m.group(1) if m else text
    fence = _JSON_FENCE.search(body)
    if fence:
        body = fence.group(1)
    start, end = body.find("["), body.rfind("]")
    if start < 0 or end < start:
        return None
    return body[start : end + 1]


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                return None
        else:
            return None
    v = float(v)
    return v if math.isfinite(v) else None


def _clip(v: float, hi: float) -> float:
    return min(max(v, 0.0), hi)


def _instance(obj, frame_w: float, frame_h: float) -> PromptInstance | None:
    if not isinstance(obj, dict):
        return None
    box = obj.get("bbox_2d")
    pts = obj.get("positive_points")
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return None
    nums = [_number(v) for v in box]
    if any(v is None for v in nums):
        return None
    x1, y1, x2, y2 = nums
    x1, x2 = sorted((_clip(x1, frame_w), _clip(x2, frame_w)))
    y1, y2 = sorted((_clip(y1, frame_h), _clip(y2, frame_h)))
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    if not isinstance(pts, (list, tuple)) or len(pts) != 2:
        return None
    points = []
    for p in pts:
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            return None
        px, py = _number(p[0]), _number(p[1])
        if px is None or py is None:
            return None
        points.append((_clip(px, frame_w), _clip(py, frame_h)))
    return PromptInstance(box=(x1, y1, x2, y2), points=tuple(points))


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def remove_duplicates(instances: list[PromptInstance], iou: float = DUPLICATE_IOU) -> list[PromptInstance]:
    """Greedy NMS in the model's order (it has no scores): keep the first of boxes overlapping > iou."""
    kept: list[PromptInstance] = []
    for inst in instances:
        if all(box_iou(inst.box, k.box) <= iou for k in kept):
            kept.append(inst)
    return kept


def parse_answer(text: str, frame_w: float = 840, frame_h: float | None = None) -> ParsedAnswer:
    """Parse a completion into instances clipped to the frame, duplicates removed."""
    frame_h = frame_w if frame_h is None else frame_h
    reasoning = extract_reasoning(text or "")
    if not text or not text.strip():
        return ParsedAnswer("unparsed", reasoning=reasoning, reason="no parseable answer: the model wrote nothing")
    raw = _json_text(text)
    if raw is None:
        return ParsedAnswer("unparsed", reasoning=reasoning, reason="no parseable answer: no JSON list in the answer")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        try:
            data = json_repair.loads(raw)
        except Exception:  # json_repair raises a variety of errors on hostile input
            data = None
    if not isinstance(data, list):
        return ParsedAnswer("unparsed", reasoning=reasoning, reason="no parseable answer: the JSON is not a list")
    if len(data) == 0:
        return ParsedAnswer("empty", reasoning=reasoning, reason="empty list: nothing matches")
    instances = [i for i in (_instance(o, frame_w, frame_h) for o in data) if i is not None]
    dropped = len(data) - len(instances)
    if not instances:
        return ParsedAnswer(
            "unparsed",
            reasoning=reasoning,
            reason=f"no parseable answer: none of the {len(data)} instances has a valid box and two points",
            dropped=dropped,
        )
    unique = remove_duplicates(instances)
    dropped += len(instances) - len(unique)
    return ParsedAnswer("ok", instances=unique, reasoning=reasoning, dropped=dropped)


def is_valid_json_answer(text: str) -> bool:
    """The JSON-validity reward's test: a list whose items are all well formed (an empty list counts)."""
    raw = _json_text(text or "")
    if raw is None:
        return False
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return False
    if not isinstance(data, list):
        return False
    return all(_instance(o, float("inf"), float("inf")) is not None for o in data)

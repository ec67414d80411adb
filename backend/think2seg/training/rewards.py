r"""The three rewards of mask-only GRPO, as TRL reward functions, following the reference's rules.

A TRL reward function takes the completions and every dataset column as keyword lists (one entry per
completion) and returns one float per completion; TRL sums them (weight 1 each) into the reward whose
group-relative advantage drives the update. Each follows Ricardo-XZ/Think2Seg-RS geo_reward_func_ultra.py
(docs/method.md, "ours vs reference", rows 8a-8c):

- `mask_reward` (`MaskReward`): 2 x IoU(OR-merged SAM2 mask of the answer's prompts, ground truth), in
  [0, 2] (`sam_reward_func_ultra`, :462-572, weight 2 at :654). The answer is read with the reference's
  *training* parser (`parse_answer(mode="reference_train")`, `parse_sam_json` :720-775): a ```` ```json ````
  block, two positive points on every instance, every instance valid, else 0. On an image with no target:
  2 (= 2 x IoU 1) when the model answered `[]`, else 0. An empty list on an image that has a target scores 0.
  The frozen SAM2 embeds each distinct image of the batch once (`set_image` once per group of completions).
- `json_validity_reward`: 1 when that same training parser accepts the answer (`sam_format_reward`,
  :922-955: json_repair-fixed JSON accepted, two positive points required, box optional, `negative_points`
  rejected; `[]` included).
- `think_answer_shape_reward`: 1 when the whole completion matches `<think>.*?</think>\s*<answer>.*?</answer>`
  (`thk_ans_format_reward`, :957-961, a full match: nothing before or after).

No answer string stops a step: an answer the parser cannot read scores 0 (`parse_answer` never raises), and
so does a completion whose SAM2 call raises. The reference computes its rewards inside one `try` per reward
call, so one raise there leaves every completion of the call at 0; ours zeroes only that completion by default
(docs/method.md row 8f), `MaskReward(reference_group_zero=True)` does as the reference: one completion that
the parser accepts and SAM2 cannot take (`ParsedAnswer.sam2_failed`, e.g. numbers written as strings) or one
raise in SAM2 zeroes the whole call, images without a target included.

Everything is computed in the frame of the image the model saw (840 x 840 in training), the label resized
NEAREST to it, as the reference does.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
from PIL import Image

from ..prompt_template import MODEL_FRAME
from ..prompts import has_think_answer_shape, is_valid_json_answer, parse_answer

MASK_WEIGHT = 2.0
#: The reference's training parser (`parse_sam_json`), stricter than its evaluation parser.
REWARD_PARSE_MODE = "reference_train"


def completion_text(completion) -> str:
    """The text of a completion: TRL passes a string, or (conversational) a list of messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, list):
        for msg in reversed(completion):
            if isinstance(msg, dict) and msg.get("role", "assistant") == "assistant":
                content = msg.get("content", "")
                if isinstance(content, list):
                    return "".join(p.get("text", "") for p in content if isinstance(p, dict))
                return str(content)
    return ""


def think_answer_shape_reward(completions, **kwargs) -> list[float]:
    return [1.0 if has_think_answer_shape(completion_text(c)) else 0.0 for c in completions]


def json_validity_reward(completions, **kwargs) -> list[float]:
    return [1.0 if is_valid_json_answer(completion_text(c)) else 0.0 for c in completions]


def _rgb(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a[..., :3], dtype=np.uint8)


def _as_mask(m, size: tuple[int, int]) -> np.ndarray:
    """bool (H, W) at size (width, height), NEAREST, from an array, a PIL image or a file path."""
    if isinstance(m, (str, bytes)) or hasattr(m, "__fspath__"):
        with Image.open(m) as im:
            im.load()
            m = im.copy()
    if isinstance(m, Image.Image):
        a = np.asarray(m)
    else:
        a = np.asarray(m)
    if a.ndim == 3:
        a = a.any(axis=2)
    a = a > 0
    if (a.shape[1], a.shape[0]) != tuple(size):
        a = np.asarray(Image.fromarray(a.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0
    return a


def _image_key(image, image_id) -> str:
    if image_id is not None:
        return str(image_id)
    a = _rgb(image)
    return hashlib.blake2b(a.tobytes(), digest_size=16).hexdigest() + str(a.shape)


class MaskReward:
    """2 x IoU of the answer's SAM2 mask with the ground truth; a TRL reward function (`mask_reward`).

    Needs the columns `image` (what the model saw) and `mask` (array, PIL image or path) or `mask_path`;
    `image_id`, when present, groups the completions of one image without hashing its pixels.
    """

    __name__ = "mask_reward"

    def __init__(
        self,
        segmenter,
        frame: int = MODEL_FRAME,
        weight: float = MASK_WEIGHT,
        mask_cache: int = 64,
        reference_group_zero: bool = False,
    ):
        self.segmenter = segmenter
        #: True: one SAM2 failure in a call zeroes every completion of the call (the reference's `try`)
        self.reference_group_zero = reference_group_zero
        #: per completion of the last call: why SAM2 could not score it ("" where it could)
        self.last_errors: list[str] = []
        self.frame = frame
        self.weight = weight
        self._masks: OrderedDict = OrderedDict()  # ground truths of recent images, by (source, size)
        self._mask_cache = mask_cache
        self.last_ious: list[float] = []

    def _gt(self, source, size: tuple[int, int]) -> np.ndarray:
        if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
            key = (str(source), size)
            if key in self._masks:
                self._masks.move_to_end(key)
                return self._masks[key]
            m = _as_mask(source, size)
            self._masks[key] = m
            if len(self._masks) > self._mask_cache:
                self._masks.popitem(last=False)
            return m
        return _as_mask(source, size)

    def ious(self, completions, image, mask=None, mask_path=None, image_id=None) -> list[float]:
        """The IoU term per completion (1 / 0 on an image with no target), before the weight."""
        n = len(completions)
        masks = mask if mask is not None else mask_path
        if masks is None:
            raise ValueError("mask_reward needs a 'mask' or 'mask_path' column with the ground truth")
        ids = image_id if image_id is not None else [None] * n
        ious = [0.0] * n
        self.last_errors = [""] * n
        groups: dict[str, list[int]] = {}
        for i in range(n):
            groups.setdefault(_image_key(image[i], ids[i]), []).append(i)
        for members in groups.values():
            first = members[0]
            rgb = _rgb(image[first])
            h, w = rgb.shape[:2]
            gt = self._gt(masks[first], (w, h))
            todo = []
            for i in members:
                parsed = parse_answer(completion_text(completions[i]), self.frame, self.frame, mode=REWARD_PARSE_MODE)
                if parsed.sam2_failed:  # the reference's SAM2 call raises on it
                    self.last_errors[i] = parsed.reason
                if not gt.any():
                    ious[i] = 1.0 if parsed.status == "empty" else 0.0
                elif parsed.status == "ok":
                    todo.append((i, [inst.scaled(w / self.frame, h / self.frame) for inst in parsed.instances]))
            if not todo:
                continue
            try:
                self.segmenter.set_image(rgb)  # once for every completion of this image
            except Exception as e:  # noqa: BLE001 - a reward is a number, never a stopped step
                for i, _ in todo:
                    self.last_errors[i] = f"SAM2 failed: {type(e).__name__}: {e}"
                continue
            for i, instances in todo:
                try:
                    pred = self.segmenter.predict(instances, (h, w)).merged
                except Exception as e:  # noqa: BLE001
                    self.last_errors[i] = f"SAM2 failed: {type(e).__name__}: {e}"
                    continue
                union = np.logical_or(pred, gt).sum()
                ious[i] = float(np.logical_and(pred, gt).sum() / union) if union else 0.0
        if self.reference_group_zero and any(self.last_errors):
            return [0.0] * n
        return ious

    def __call__(self, completions, image=None, mask=None, mask_path=None, image_id=None, **kwargs) -> list[float]:
        if image is None:
            raise ValueError("mask_reward needs the 'image' column (the image the model saw)")
        self.last_ious = self.ious(completions, image, mask, mask_path, image_id)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and self.last_ious:
            log_metric("mask_iou", float(np.mean(self.last_ious)))
            log_metric("mask_sam2_failures", float(sum(bool(e) for e in self.last_errors)))
        return [self.weight * v for v in self.last_ious]

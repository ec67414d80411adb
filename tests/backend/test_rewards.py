"""The GRPO rewards with the real (tiny, random) SAM2.1: perfect, partial, malformed and empty answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from earthreason_fixture import known_sam_mask
from PIL import Image
from think2seg.testing.tiny_models import KNOWN_COMPLETION
from think2seg.training.rewards import (
    MaskReward,
    completion_text,
    json_validity_reward,
    think_answer_shape_reward,
)

EMPTY = "<think>no track in this image</think>\n<answer>```json[]```</answer>"
MALFORMED = '<think>a pond</think><answer>```json[{"bbox_2d": [1, 2, 3], "positive_points": [[1, 1]]}]```</answer>'
NO_TAGS = json.dumps([{"bbox_2d": [210, 168, 630, 504], "positive_points": [[420, 336], [315, 420]]}])


class CountingSegmenter:
    """The real segmenter, counting its image embeddings."""

    def __init__(self, seg):
        self.seg = seg
        self.set_image_calls = 0

    def set_image(self, rgb):
        self.set_image_calls += 1
        self.seg.set_image(rgb)

    def predict(self, instances, shape):
        return self.seg.predict(instances, shape)


@pytest.fixture(scope="module")
def segmenter(tiny_models_dir):
    from think2seg.segmenter import Segmenter

    return Segmenter.from_pretrained(str(tiny_models_dir / "sam2.1_hiera_t.pt"), device="cpu")


@pytest.fixture(scope="module")
def scene(segmenter):
    """An 840 x 840 image and SAM2's own mask for the tiny reasoner's known answer (a perfect ground truth)."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (840, 840, 3), dtype=np.uint8)
    rgb[200:500, 250:600] = (40, 90, 160)
    return Image.fromarray(rgb), known_sam_mask(segmenter, rgb)


def test_perfect_answer_scores_the_maximum(segmenter, scene):
    image, gt = scene
    r = MaskReward(segmenter)
    c = [KNOWN_COMPLETION]
    assert r(c, image=[image], mask=[gt]) == [2.0]
    assert json_validity_reward(c) == [1.0]
    assert think_answer_shape_reward(c) == [1.0]


def test_partial_mask_scores_twice_its_iou(segmenter, scene, tmp_path):
    image, gt = scene
    half = gt.copy()
    half[:, 420:] = False  # the ground truth is the left half of what SAM2 draws
    path = tmp_path / "half.png"
    Image.fromarray(half.astype(np.uint8) * 255).save(path)
    r = MaskReward(segmenter)
    [v] = r([KNOWN_COMPLETION], image=[image], mask_path=[str(path)])
    assert v == pytest.approx(2 * half.sum() / gt.sum())
    assert 0 < v < 2


def test_malformed_answers_score_zero(segmenter, scene):
    image, gt = scene
    r = MaskReward(segmenter)
    assert r([MALFORMED, "I cannot tell."], image=[image, image], mask=[gt, gt]) == [0.0, 0.0]
    assert json_validity_reward([MALFORMED, "I cannot tell.", EMPTY]) == [0.0, 0.0, 1.0]
    assert think_answer_shape_reward([MALFORMED, NO_TAGS, EMPTY, KNOWN_COMPLETION + " trailing"]) == [
        1.0,
        0.0,
        1.0,
        0.0,
    ]
    # the reference's training parser needs a ```json block: bare JSON scores 0 even with perfect prompts
    assert r([NO_TAGS], image=[image], mask=[gt]) == [0.0]


def test_empty_target_rule_as_the_reference(segmenter, scene):
    image, _ = scene
    nothing = np.zeros((840, 840), dtype=bool)
    counting = CountingSegmenter(segmenter)
    r = MaskReward(counting)
    # [] on an image without a target: IoU 1, so 2 x 1 = 2 (the reference's mask_iou_reward 1 x weight 2)
    assert r([EMPTY, KNOWN_COMPLETION, MALFORMED], image=[image] * 3, mask=[nothing] * 3) == [2.0, 0.0, 0.0]
    assert counting.set_image_calls == 0  # no SAM2 needed to know that
    # [] on an image with a target: nothing found, 0
    _, gt = scene
    assert r([EMPTY], image=[image], mask=[gt]) == [0.0]


def test_sam2_embeds_each_distinct_image_once(segmenter, scene):
    image, gt = scene
    other = Image.fromarray(np.full((840, 840, 3), 120, dtype=np.uint8))
    counting = CountingSegmenter(segmenter)
    r = MaskReward(counting)
    group = [KNOWN_COMPLETION, KNOWN_COMPLETION, NO_TAGS, MALFORMED]
    images = [image] * 4 + [other] * 4
    masks = [gt] * 4 + [gt] * 4
    out = r(group + group, image=images, mask=masks, image_id=["a"] * 4 + ["b"] * 4)
    assert counting.set_image_calls == 2
    assert out[:4] == [2.0, 2.0, 0.0, 0.0]
    # without ids, identical pixels are recognised (TRL gives each completion its own copy of the image)
    counting.set_image_calls = 0
    copies = [Image.fromarray(np.asarray(image)) for _ in range(4)]
    r(group, image=copies, mask=[gt] * 4)
    assert counting.set_image_calls == 1


def test_conversational_completions():
    conv = [{"role": "assistant", "content": KNOWN_COMPLETION}]
    assert completion_text(conv) == KNOWN_COMPLETION
    assert (
        completion_text(
            [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
        )
        == "ab"
    )
    assert json_validity_reward([conv]) == [1.0] and think_answer_shape_reward([conv]) == [1.0]


def test_label_at_another_size_is_resized_nearest(segmenter, scene):
    image, gt = scene
    big = np.asarray(Image.fromarray(gt.astype(np.uint8) * 255).resize((1680, 1680), Image.NEAREST))
    assert MaskReward(segmenter)([KNOWN_COMPLETION], image=[image], mask=[big]) == [2.0]


def test_one_gpu_matches_the_references_64_completions_per_step():
    from think2seg.training.grpo import TrainSettings

    s = TrainSettings(data="d", model="m", output="o", completions_per_step=64)
    s.check()
    assert (s.per_device_batch_size or s.num_generations) * s.gradient_accumulation_steps == 64
    assert s.gradient_accumulation_steps == 4 and s.top_k == 50


RUNAWAY = (
    '<think>a pond</think><answer>```json[{"bbox_2d": [310, 360, 567, '
    + "9" * 400
    + '], "positive_points": [[420, 336], [315, 420]]}]```</answer>'
)
AS_STRINGS = (
    '<think>a pond</think><answer>```json[{"bbox_2d": ["210", "168", "630", "504"], '
    '"positive_points": [["420", "336"], ["315", "420"]]}]```</answer>'
)


def test_a_runaway_number_scores_zero_and_never_raises(segmenter, scene):
    image, gt = scene
    r = MaskReward(segmenter)
    assert r([RUNAWAY, KNOWN_COMPLETION], image=[image] * 2, mask=[gt] * 2) == [0.0, 2.0]
    # the reference's training parser takes a list of 4 as a box: format 1 (as sam_format_reward gives)
    assert json_validity_reward([RUNAWAY]) == [1.0] and think_answer_shape_reward([RUNAWAY]) == [1.0]
    assert "int64/uint64" in r.last_errors[0] and r.last_errors[1] == ""


class FailingSegmenter(CountingSegmenter):
    """The real segmenter whose predict raises on the call numbered `fail_at` (a CUDA error, say)."""

    def __init__(self, seg, fail_at: int):
        super().__init__(seg)
        self.calls, self.fail_at = 0, fail_at

    def predict(self, instances, shape):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.seg.predict(instances, shape)


def test_a_sam2_raise_zeroes_that_completion_only_by_default(segmenter, scene):
    image, gt = scene
    r = MaskReward(FailingSegmenter(segmenter, fail_at=1))
    assert r([KNOWN_COMPLETION, KNOWN_COMPLETION], image=[image] * 2, mask=[gt] * 2) == [0.0, 2.0]
    assert "RuntimeError" in r.last_errors[0]


def test_reference_group_zero_zeroes_the_whole_call_as_the_reference(segmenter, scene):
    image, gt = scene
    nothing = np.zeros((840, 840), dtype=bool)
    # one SAM2 raise: every completion of the call 0, the no-target [] too (the reference's final_reward is
    # computed inside its try)
    r = MaskReward(FailingSegmenter(segmenter, fail_at=1), reference_group_zero=True)
    got = r(
        [KNOWN_COMPLETION, KNOWN_COMPLETION, EMPTY], image=[image] * 3, mask=[gt, gt, nothing], image_id=["a", "a", "b"]
    )
    assert got == [0.0, 0.0, 0.0]
    # an answer the parser accepts and SAM2 cannot take (numbers as strings) does the same
    r = MaskReward(segmenter, reference_group_zero=True)
    assert json_validity_reward([AS_STRINGS]) == [1.0]
    assert r([AS_STRINGS, KNOWN_COMPLETION], image=[image] * 2, mask=[gt] * 2) == [0.0, 0.0]
    # without a failure in the call the scores stand
    assert r([KNOWN_COMPLETION, MALFORMED], image=[image] * 2, mask=[gt] * 2) == [2.0, 0.0]
    # ours (the default): each completion on its own
    assert MaskReward(segmenter)([AS_STRINGS, KNOWN_COMPLETION], image=[image] * 2, mask=[gt] * 2) == [0.0, 2.0]

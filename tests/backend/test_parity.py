"""The parity table: one answer string per row, with what the reference does with it and what we do.

Columns (docs/method.md, "ours vs reference"):
- `reference`: the outcome of `parse_answer(mode="reference")`, which must be the reference evaluation's
  (`parse_sam_json_test` + its SAM2 call, Ricardo-XZ/Think2Seg-RS geo_reward_func_ultra.py:777-823): status
  and number of instances;
- `tolerant`: ours for the app (segment, serve, batch, the plugin);
- `mask`: the training mask reward on an 840 x 840 image whose label is SAM2's own mask for the tiny
  reasoner's known prompts: 2.0 exactly, 0.0, or "sam" (the answer passed the training parser and SAM2 drew
  it; the value lies in [0, 2]);
- `mask_empty`: the mask reward on an image with no target (2 for an accepted `[]`, else 0);
- `fmt`, `shape`: the format (JSON validity) and think/answer shape rewards.

The expectations were written from the reference's rules and checked against its own functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from earthreason_fixture import known_sam_mask
from PIL import Image
from think2seg.prompts import PARSE_MODES, parse_answer
from think2seg.testing.tiny_models import KNOWN_BOX, KNOWN_POINTS
from think2seg.training.rewards import MaskReward, json_validity_reward, think_answer_shape_reward

BOX = list(KNOWN_BOX)  # (210, 168, 630, 504)
PTS = [list(p) for p in KNOWN_POINTS]  # (420, 336), (315, 420)
K = {"bbox_2d": BOX, "positive_points": PTS}
SMALL = {"bbox_2d": [220, 178, 620, 494], "positive_points": [[400, 300], [300, 400]]}  # IoU 0.90 with K's box
FAR = {"bbox_2d": [10, 10, 110, 90], "positive_points": [[50, 50], [60, 40]]}


def j(obj) -> str:
    return json.dumps(obj)


def wrap(body: str, think: str = "The ponds are dark.") -> str:
    return f"<think>{think}</think>\n<answer>```json{body}```</answer>"


@dataclass(frozen=True)
class Row:
    name: str
    text: str
    reference: tuple[str, int]  # status, instances
    tolerant: tuple[str, int]
    mask: float | str  # 2.0, 0.0 or "sam"
    mask_empty: float
    fmt: float
    shape: float


R = Row
TABLE = [
    R("well formed", wrap(j([K])), ("ok", 1), ("ok", 1), 2.0, 0.0, 1.0, 1.0),
    R(
        "well formed, no json fence",
        f"<think>t</think><answer>{j([K])}</answer>",
        ("ok", 1),
        ("ok", 1),
        0.0,
        0.0,
        0.0,
        1.0,
    ),
    R("box only", wrap(j([{"bbox_2d": BOX}])), ("ok", 1), ("ok", 1), 0.0, 0.0, 0.0, 1.0),
    R("points only", wrap(j([{"positive_points": PTS}])), ("ok", 1), ("ok", 1), "sam", 0.0, 1.0, 1.0),
    R(
        "three points",
        wrap(j([{"bbox_2d": BOX, "positive_points": PTS + [[400, 400]]}])),
        ("unparsed", 0),
        ("ok", 1),
        0.0,
        0.0,
        0.0,
        1.0,
    ),
    R(
        "one point",
        wrap(j([{"bbox_2d": BOX, "positive_points": PTS[:1]}])),
        ("unparsed", 0),
        ("ok", 1),
        0.0,
        0.0,
        0.0,
        1.0,
    ),
    R(
        "empty positive_points",
        wrap(j([{"bbox_2d": BOX, "positive_points": []}])),
        ("unparsed", 0),
        ("ok", 1),
        0.0,
        0.0,
        0.0,
        1.0,
    ),
    R(
        "one invalid instance of two",
        wrap(j([K, {"bbox_2d": [10, 10, 50, 50], "positive_points": [[1, 1]] * 3}])),
        ("unparsed", 0),
        ("ok", 2),
        0.0,
        0.0,
        0.0,
        1.0,
    ),
    R(
        "box of three numbers",
        wrap(j([{"bbox_2d": BOX[:3], "positive_points": PTS}])),
        ("unparsed", 0),
        ("ok", 1),
        0.0,
        0.0,
        0.0,
        1.0,
    ),
    R(
        "swapped corners",
        wrap(j([{"bbox_2d": [630, 504, 210, 168], "positive_points": PTS}])),
        ("ok", 1),
        ("ok", 1),
        "sam",
        0.0,
        1.0,
        1.0,
    ),
    R(
        "out of frame",
        wrap(j([{"bbox_2d": [-20, 168, 900, 504], "positive_points": [[420, 336], [900, 420]]}])),
        ("ok", 1),
        ("ok", 1),
        "sam",
        0.0,
        1.0,
        1.0,
    ),
    R(
        "sub-pixel box",
        wrap(j([{"bbox_2d": [300, 200, 300.5, 400], "positive_points": PTS}])),
        ("ok", 1),
        ("ok", 1),
        "sam",
        0.0,
        1.0,
        1.0,
    ),
    R("missing </answer>", f"<think>t</think>\n<answer>```json{j([K])}```", ("ok", 1), ("ok", 1), 2.0, 0.0, 1.0, 0.0),
    R("missing <answer>", f"<think>t</think>\n```json{j([K])}```</answer>", ("ok", 1), ("ok", 1), 2.0, 0.0, 1.0, 0.0),
    R(
        "[ in the reasoning, both tags",
        wrap(j([K]), think="the pond [north] is dry"),
        ("ok", 1),
        ("ok", 1),
        2.0,
        0.0,
        1.0,
        1.0,
    ),
    R(
        "[ in the reasoning, missing <answer>",
        f"<think>the pond [north] is dry</think>\n```json{j([K])}```</answer>",
        ("unparsed", 0),
        ("ok", 1),
        2.0,
        0.0,
        1.0,
        0.0,
    ),
    R(
        "[ in the reasoning, missing </answer>",
        f"<think>see [1]</think><answer>```json{j([K])}```",
        ("unparsed", 0),
        ("ok", 1),
        2.0,
        0.0,
        1.0,
        0.0,
    ),
    R("duplicate boxes, larger second", wrap(j([SMALL, K])), ("ok", 1), ("ok", 1), 2.0, 0.0, 1.0, 1.0),
    R("duplicate boxes, larger first", wrap(j([K, SMALL])), ("ok", 1), ("ok", 1), 2.0, 0.0, 1.0, 1.0),
    R("two distinct boxes", wrap(j([K, FAR])), ("ok", 2), ("ok", 2), "sam", 0.0, 1.0, 1.0),
    R("json_repair: trailing comma", wrap(j([K])[:-1] + ",]"), ("ok", 1), ("ok", 1), 2.0, 0.0, 1.0, 1.0),
    R("json_repair: missing closing brackets", wrap(j([K])[:-2]), ("ok", 1), ("ok", 1), 2.0, 0.0, 1.0, 1.0),
    R("json_repair: single quotes", wrap(j([K]).replace('"', "'")), ("ok", 1), ("ok", 1), 2.0, 0.0, 1.0, 1.0),
    R(
        "negative_points",
        wrap(j([{**K, "negative_points": [[5, 5], [6, 6]]}])),
        ("unparsed", 0),
        ("ok", 1),
        0.0,
        0.0,
        0.0,
        1.0,
    ),
    R("negative_points empty", wrap(j([{**K, "negative_points": []}])), ("unparsed", 0), ("ok", 1), 0.0, 0.0, 0.0, 1.0),
    # the reference's parsers accept a null, then its SAM2 call fails on it: format 1, mask 0
    R(
        "negative_points null",
        wrap(j([{**K, "negative_points": None}])),
        ("unparsed", 0),
        ("ok", 1),
        0.0,
        0.0,
        1.0,
        1.0,
    ),
    R("empty list", wrap("[]"), ("empty", 0), ("empty", 0), 0.0, 2.0, 1.0, 1.0),
    R("empty list, no fence", "<think>none</think><answer>[]</answer>", ("empty", 0), ("empty", 0), 0.0, 0.0, 0.0, 1.0),
    R(
        "prose around the JSON",
        f"<think>t</think><answer>Here: ```json{j([K])}``` (two ponds)</answer>",
        ("ok", 1),
        ("ok", 1),
        2.0,
        0.0,
        1.0,
        1.0,
    ),
    R(
        "prose only",
        "<think>t</think><answer>There is no pond here.</answer>",
        ("unparsed", 0),
        ("unparsed", 0),
        0.0,
        0.0,
        0.0,
        1.0,
    ),
    R("bare JSON, no tags", j([K]), ("ok", 1), ("ok", 1), 0.0, 0.0, 0.0, 0.0),
    R("nothing written", "", ("unparsed", 0), ("unparsed", 0), 0.0, 0.0, 0.0, 0.0),
    R(
        "reasoning cut by the budget",
        "<think>The ponds lie along the [north",
        ("unparsed", 0),
        ("unparsed", 0),
        0.0,
        0.0,
        0.0,
        0.0,
    ),
    R("an object, not a list", wrap(j(K)), ("unparsed", 0), ("unparsed", 0), 0.0, 0.0, 0.0, 1.0),
    R("instance without prompts", wrap(j([{"label": "pond"}])), ("unparsed", 0), ("unparsed", 0), 0.0, 0.0, 0.0, 1.0),
    R("instance not an object", wrap(j(["pond"])), ("unparsed", 0), ("unparsed", 0), 0.0, 0.0, 0.0, 1.0),
    # numbers as strings: the reference's parsers accept them, its SAM2 call then fails (format 1, mask 0)
    R(
        "numbers as strings",
        wrap(j([{"bbox_2d": [str(v) for v in BOX], "positive_points": PTS}])),
        ("unparsed", 0),
        ("ok", 1),
        0.0,
        0.0,
        1.0,
        1.0,
    ),
    # ... and with two instances the reference's duplicate check computes the string box's area and fails
    R(
        "numbers as strings, two instances",
        wrap(j([{"bbox_2d": [str(v) for v in BOX], "positive_points": PTS}, FAR])),
        ("unparsed", 0),
        ("ok", 2),
        0.0,
        0.0,
        0.0,
        1.0,
    ),
    R(
        "two answer blocks",
        "<think>t</think><answer>```json[]```</answer><answer>```json" + j([K]) + "```</answer>",
        ("empty", 0),
        ("empty", 0),
        0.0,
        2.0,
        1.0,
        1.0,
    ),
    R("blank before <think>", " " + wrap(j([K])), ("ok", 1), ("ok", 1), 2.0, 0.0, 1.0, 0.0),
    R("words after </answer>", wrap(j([K])) + " Done.", ("ok", 1), ("ok", 1), 2.0, 0.0, 1.0, 0.0),
]


def test_the_table_is_large_and_unique():
    assert len(TABLE) >= 30
    assert len({r.name for r in TABLE}) == len(TABLE)
    assert len({r.text for r in TABLE}) == len(TABLE)


@pytest.mark.parametrize("row", TABLE, ids=[r.name for r in TABLE])
def test_parse_modes(row: Row):
    for mode, (status, n) in (("reference", row.reference), ("tolerant", row.tolerant)):
        r = parse_answer(row.text, mode=mode)
        assert (r.status, len(r.instances)) == (status, n), f"{mode}: {r.reason}"
        assert r.mode == mode
        if status == "unparsed":
            assert r.reason, "a rejected answer says why"


@pytest.mark.parametrize("row", TABLE, ids=[r.name for r in TABLE])
def test_format_and_shape_rewards(row: Row):
    assert json_validity_reward([row.text]) == [row.fmt]
    assert think_answer_shape_reward([row.text]) == [row.shape]


def by_name(name: str) -> Row:
    return next(r for r in TABLE if r.name == name)


def test_reference_keeps_coordinates_tolerant_repairs_them():
    swapped = by_name("swapped corners").text
    assert parse_answer(swapped, mode="reference").instances[0].box == (630, 504, 210, 168)
    assert parse_answer(swapped, mode="tolerant").instances[0].box == (210, 168, 630, 504)
    out = by_name("out of frame").text
    ref, tol = parse_answer(out, mode="reference").instances[0], parse_answer(out, mode="tolerant").instances[0]
    assert ref.box == (-20, 168, 900, 504) and ref.points == ((420, 336), (900, 420))
    assert tol.box == (0, 168, 840, 504) and tol.points == ((420, 336), (840, 420))
    tiny = by_name("sub-pixel box").text
    assert parse_answer(tiny, mode="reference").instances[0].box == (300, 200, 300.5, 400)
    assert parse_answer(tiny, mode="tolerant").instances[0].box is None  # tolerant keeps the points only


def test_box_only_and_points_only_instances():
    for mode in ("reference", "tolerant"):
        box_only = parse_answer(by_name("box only").text, mode=mode).instances[0]
        assert box_only.box == KNOWN_BOX and box_only.points == ()
        pts_only = parse_answer(by_name("points only").text, mode=mode).instances[0]
        assert pts_only.box is None and pts_only.points == KNOWN_POINTS
    assert parse_answer(by_name("three points").text, mode="tolerant").instances[0].points[2] == (400, 400)


@pytest.mark.parametrize("mode", ["reference", "tolerant"])
def test_duplicates_keep_the_largest_box_in_the_models_order(mode):
    for name in ("duplicate boxes, larger second", "duplicate boxes, larger first"):
        r = parse_answer(by_name(name).text, mode=mode)
        assert [i.box for i in r.instances] == [KNOWN_BOX] and r.dropped == 1
    r = parse_answer(wrap(j([FAR, SMALL, K])), mode=mode)
    assert [i.box for i in r.instances] == [tuple(FAR["bbox_2d"]), KNOWN_BOX]


def test_reference_rejections_keep_format_apart_from_usability():
    r = parse_answer(by_name("numbers as strings").text, mode="reference")
    assert r.status == "unparsed" and r.format_ok and "strings" in r.reason
    r = parse_answer(by_name("negative_points").text, mode="reference")
    assert not r.format_ok and "negative_points" in r.reason and "whole answer" in r.reason


def test_unknown_mode_is_a_clear_error():
    from think2seg.errors import BadInput

    with pytest.raises(BadInput, match="tolerant, reference"):
        parse_answer("[]", mode="lenient")
    assert PARSE_MODES[:2] == ("tolerant", "reference")


@pytest.fixture(scope="module")
def segmenter(tiny_models_dir):
    from think2seg.segmenter import Segmenter

    return Segmenter.from_pretrained(str(tiny_models_dir / "sam2.1_hiera_t.pt"), device="cpu")


class CountingSegmenter:
    """The real segmenter, recording which instances it was asked to draw."""

    def __init__(self, seg):
        self.seg = seg
        self.predicted: list = []

    def set_image(self, rgb):
        self.seg.set_image(rgb)

    def predict(self, instances, shape):
        self.predicted.append(instances)
        return self.seg.predict(instances, shape)


@pytest.mark.slow
def test_mask_reward_column(segmenter):
    """All rows in one reward call on one image: SAM2 embeds it once; each row scores as the table says."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (840, 840, 3), dtype=np.uint8)
    rgb[200:500, 250:600] = (40, 90, 160)
    gt = known_sam_mask(segmenter, rgb)
    counting = CountingSegmenter(segmenter)
    reward = MaskReward(counting)
    texts = [r.text for r in TABLE]
    n = len(texts)
    image = Image.fromarray(rgb)
    got = reward(texts, image=[image] * n, mask=[gt] * n, image_id=["scene"] * n)
    assert len(counting.predicted) == sum(r.mask != 0.0 for r in TABLE)
    for row, value in zip(TABLE, got, strict=True):
        if row.mask == "sam":
            assert 0.0 <= value <= 2.0, row.name
        else:
            assert value == row.mask, row.name
    nothing = np.zeros((840, 840), dtype=bool)
    got_empty = reward(texts, image=[image] * n, mask=[nothing] * n, image_id=["scene"] * n)
    assert got_empty == [r.mask_empty for r in TABLE]


# -- the audit's corpus (scripts/parity_audit.py runs the reference's own functions beside ours on it) ----------
def _audit():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "parity_audit.py"
    spec = importlib.util.spec_from_file_location("parity_audit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: the labels of the corpus as the reference's own functions gave them (scripts/parity_audit.py against
#: Ricardo-XZ/Think2Seg-RS 1d35fa9, SAM2.1 tiny on the CPU, 2026-12-02): 142 of 142 agreed on every column
AUDITED_LABELS = {"ok": 76, "unparsed": 47, "sam2_failed": 13, "empty": 6}


def test_the_audit_corpus_holds_the_table_and_adversarial_strings():
    rows = _audit().load_corpus()
    assert 80 <= len(rows) <= 150
    assert len({r["name"] for r in rows}) == len({r["text"] for r in rows}) == len(rows)
    texts = {r["text"] for r in rows}
    assert all(r.text in texts for r in TABLE)
    assert sum(r["source"] == "adversarial" for r in rows) >= 80


def test_our_side_of_the_audit_reads_every_string_as_audited():
    from collections import Counter

    rows = _audit().load_corpus()
    labels = Counter(parse_answer(r["text"], 840, 840, mode="reference").label for r in rows)
    assert dict(labels) == AUDITED_LABELS  # a change here: re-run scripts/parity_audit.py against the reference
    for r in rows:  # never raises, whatever the string
        json_validity_reward([r["text"]])
        think_answer_shape_reward([r["text"]])
        parse_answer(r["text"], mode="tolerant")


@pytest.mark.slow
def test_our_side_of_the_audit_runs_with_sam2(segmenter):
    audit = _audit()
    rows = {r["name"]: r["text"] for r in audit.load_corpus()}
    rgb, gt = audit.scene(segmenter)
    well = audit.our_side(rows["well formed"], rgb, gt, segmenter)
    assert well["status"] == "ok" and well["eval_iou"] == 1.0 and well["mask"] == 2.0 and well["fmt"] == 1.0
    assert well["ciou_share"] == [int(gt.sum())] * 2
    runaway = audit.our_side(rows["run-away integer, box only, cut and closed"], rgb, gt, segmenter)
    assert runaway["status"] == "sam2_failed" and runaway["ciou_share"] == [0, int(gt.sum())]
    assert runaway["mask"] == 0.0 and runaway["eval_iou_empty"] == 0.0

"""The answer parser over a corpus of good, empty, broken and hostile answers."""

from __future__ import annotations

import pytest
from think2seg.prompts import PromptInstance as P
from think2seg.prompts import (
    has_think_answer_shape,
    is_valid_json_answer,
    parse_answer,
    remove_duplicates,
)

GOOD = (
    '<think>two ponds</think>\n<answer>```json[{"bbox_2d": [10,20,110,220], "positive_points": [[50, 60], [70, 80]]}, '
    '{"bbox_2d": [300,300,400,420], "positive_points": [[350, 350], [360, 400]]}]```</answer>'
)


def test_good_answer_two_instances():
    r = parse_answer(GOOD)
    assert r.status == "ok" and r.parsed
    assert [i.box for i in r.instances] == [(10, 20, 110, 220), (300, 300, 400, 420)]
    assert r.instances[0].points == ((50, 60), (70, 80))
    assert r.reasoning == "two ponds"


def test_empty_list_means_nothing_matches():
    r = parse_answer("<think>no stadium here</think><answer>```json[]```</answer>")
    assert r.status == "empty" and r.parsed and r.instances == []
    assert "nothing matches" in r.reason


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "wrote nothing"),
        ("<think>hmm</think>", "no JSON list"),
        # an object, not a list: the outermost [...] is the box, whose items are no instances
        ('<answer>```json{"bbox_2d": [1,2,3,4]}```</answer>', "none of the 4 instances"),
        ('<answer>```json[{"bbox_2d": [1,2,3], "positive_points": [[1,1e999]]}]```</answer>', "valid box or point"),
        ('<answer>```json["a", 3, null]```</answer>', "valid box or point"),
        ('<answer>[{"bbox_2d": ["a","b","c","d"], "positive_points": [[1,"x"]]}]</answer>', "valid box or point"),
    ],
)
def test_unusable_answers_are_reasons_not_exceptions(text, reason):
    r = parse_answer(text)
    assert r.status == "unparsed" and not r.parsed
    assert reason in r.reason


def test_slightly_broken_json_is_repaired():
    # a missing closing bracket and a trailing comma, as sampled models write them
    text = (
        '<think>x</think><answer>```json[{"bbox_2d": [10,20,110,220], '
        '"positive_points": [[50, 60], [70, 80]],}```</answer>'
    )
    r = parse_answer(text)
    assert r.status == "ok"
    assert r.instances[0].box == (10, 20, 110, 220)


def test_no_fence_and_no_answer_tags_still_parse():
    r = parse_answer('[{"bbox_2d": [0, 0, 100, 100], "positive_points": [[5, 5], [6, 6]]}]')
    assert r.status == "ok" and len(r.instances) == 1


def test_coordinates_clipped_to_frame_and_box_corners_sorted():
    r = parse_answer('<answer>[{"bbox_2d": [900, -5, 100, 50], "positive_points": [[-3, 10], [1000, 2000]]}]</answer>')
    inst = r.instances[0]
    assert inst.box == (100, 0, 840, 50)
    assert inst.points == ((0, 10), (840, 840))


def test_degenerate_boxes_and_non_finite_numbers_dropped_usable_parts_kept():
    text = (
        '<answer>[{"bbox_2d": [5, 5, 5, 50], "positive_points": [[5, 5], [5, 6]]}, '
        '{"bbox_2d": [1e999, 0, 10, 10], "positive_points": [[1, 1], [2, 2]]}, '
        '{"bbox_2d": [0, 0, 10, 10], "positive_points": [[1, 1], [2, 2]]}, '
        '{"bbox_2d": [0, 0, 1e999, 10], "positive_points": [[1e999, 1]]}]</answer>'
    )
    r = parse_answer(text)
    assert r.status == "ok" and r.dropped == 1
    assert [(i.box, len(i.points)) for i in r.instances] == [(None, 2), (None, 2), ((0, 0, 10, 10), 2)]


def test_tolerant_keeps_what_an_instance_has():
    r = parse_answer(
        '<answer>[{"bbox_2d": [1,2,3], "positive_points": [[1,1],[2,2]]}, '
        '{"bbox_2d": [100,100,300,400], "positive_points": [[1,1]]}]</answer>'
    )
    assert [(i.box, i.points) for i in r.instances] == [(None, ((1, 1), (2, 2))), ((100, 100, 300, 400), ((1, 1),))]


def test_duplicate_boxes_removed_at_iou_half_keeping_the_largest():
    a = P((0, 0, 100, 100), ((1, 1), (2, 2)))
    b = P((5, 5, 100, 100), ((3, 3), (4, 4)))  # IoU 0.9025 with a
    c = P((50, 0, 150, 100), ((60, 5), (70, 5)))  # IoU 1/3 with a
    pts = P(None, ((1, 1),))  # no box: never a duplicate
    assert remove_duplicates([a, b, c]) == [a, c]
    assert remove_duplicates([b, pts, a, c]) == [pts, a, c]


def test_hostile_answers_do_not_raise():
    hostile = [
        "<answer>" + "[" * 5000 + "</answer>",
        "<answer>```json" + '{"a":' * 2000 + "```</answer>",
        "<answer>[" + ", ".join(['{"bbox_2d": [0,0,10,10], "positive_points": [[1,1],[2,2]]}'] * 2000) + "]</answer>",
        "\x00\x01<answer>[\ud800]</answer>",
        '<answer>```json[{"bbox_2d": [0, 0, 10, 10], "positive_points": [[1, 1], [2, 2]], '
        '"__proto__": {}}]```</answer>',
    ]
    for text in hostile:
        r = parse_answer(text)
        assert r.status in ("ok", "empty", "unparsed")
    # 2,000 identical boxes collapse to one
    assert len(parse_answer(hostile[2]).instances) == 1


def test_reward_predicates():
    assert has_think_answer_shape(GOOD)
    assert not has_think_answer_shape("<answer>[]</answer>")
    assert not has_think_answer_shape(GOOD + " trailing words")
    assert is_valid_json_answer(GOOD)
    assert is_valid_json_answer("<answer>```json[]```</answer>")
    assert not is_valid_json_answer('<answer>[{"bbox_2d": [1,2,3,4], "positive_points": [[1,1],[2,2]],}]</answer>')
    assert not is_valid_json_answer("<answer>nothing</answer>")


def test_scaling_to_tile_pixels():
    p = P((84, 42, 420, 840), ((84, 84), (0, 840)))
    s = p.scaled(1000 / 840, 500 / 840)
    assert s.box == pytest.approx((100, 25, 500, 500))
    assert [tuple(map(float, q)) for q in s.points] == [pytest.approx((100, 50)), pytest.approx((0, 500))]
    assert P(None, ((84, 84),)).scaled(2, 3) == P(None, ((168, 252),))
    assert P((0, 0, 84, 84)).scaled(2, 1).points == ()

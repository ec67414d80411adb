"""`parse_answer` never raises on any string (issue 22): random and adversarial strings in every mode, and the
run-away answers a token budget cut and json_repair closed (huge integers, deep nesting, NaN, unicode)."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from think2seg.prompts import PARSE_MODES, ParsedAnswer, parse_answer

HUGE = "9" * 400  # a run-away number: float() of it raises OverflowError


def wrap(body: str) -> str:
    return f"<think>x</think><answer>```json{body}```</answer>"


def box_answer(box: str, points: str = "[[400, 400], [420, 430]]") -> str:
    return wrap(f'[{{"bbox_2d": {box}, "positive_points": {points}}}]')


ADVERSARIAL = [
    box_answer(f"[310, 360, 567, {HUGE}]"),
    box_answer(f"[310, 360, 567, -{HUGE}]"),
    box_answer("[310, 360, 567, 586]", f"[[400, {HUGE}], [420, 430]]"),
    wrap(f'[{{"bbox_2d": [310, 360, 567, {HUGE}]}}, {{"bbox_2d": [300, 350, 560.5, 580]}}]'),
    wrap(f'[{{"bbox_2d": [310, 360, 567, {HUGE}'),  # cut by the budget, closed by json_repair
    wrap("[" + "1" * 5000 + "]"),  # over Python's int digit limit: json.loads raises ValueError
    "[" * 100_000 + "]" * 100_000,
    wrap("[" * 100_000),
    wrap('[{"a": ' * 20_000),
    box_answer("[NaN, Infinity, -Infinity, 1]"),
    box_answer("[1e999, 1, 2, 3]"),
    box_answer('["310", "360", "567", "586"]'),
    box_answer("[310, null, 567, 586]"),
    box_answer("[[310], [360], [567], [586]]"),
    box_answer("[[310, 1], [360], [567], [586]]"),
    box_answer(str(2**64).join(["[1, 2, 3, ", "]"])),
    wrap('[{"bbox_2d": [1, 2, 3, 4], "negative_points": null}]'),
    wrap('[{"bbox_2d": {"x": 1}, "positive_points": "[[1,2]]"}]'),
    wrap('[{"bbox_2d": [true, false, 3, 4]}]'),
    '<answer>\ud800\udfff\x00\u202e[{"bbox_2d": [1,2,3,4]}]</answer>',
    '\ufeff<think>水体</think><answer>```json[{"bbox_2d": [１, ２, ３, ４]}]```</answer>',
    "<answer></answer><answer>[</answer>]",
    "```json```" * 1000,
    "]" + "[" * 50,
    "\x00" * 1000,
]


def check(text: str) -> None:
    for mode in PARSE_MODES:
        r = parse_answer(text, 840, 840, mode=mode)
        assert isinstance(r, ParsedAnswer) and r.status in ("ok", "empty", "unparsed")
        assert r.label in ("ok", "empty", "unparsed", "sam2_failed")
        if r.status == "unparsed":
            assert r.reason  # a sentence the user sees
        for inst in r.instances:  # what reaches SAM2 is floats
            assert inst.box is None or all(isinstance(v, float) for v in inst.box)
            assert all(isinstance(v, float) for p in inst.points for v in p)


@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_adversarial_strings_are_results(text):
    check(text)


_json_atoms = st.one_of(
    st.integers(min_value=-(10**500), max_value=10**500),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.none(),
    st.booleans(),
)
_json_values = st.recursive(
    _json_atoms,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(["bbox_2d", "positive_points", "negative_points", "x"]), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json_values)
def test_any_json_value_in_the_answer_is_a_result(value):
    body = json.dumps(value, allow_nan=True)
    check(wrap(body))
    check(body)


_tokens = st.sampled_from(
    list('[]{}",:0123456789.-eE nul')
    + ["<answer>", "</answer>", "```json", "```", "NaN", "Infinity", "null", '"bbox_2d":', HUGE]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_tokens, max_size=60).map("".join))
def test_answer_shaped_noise_is_a_result(text):
    check(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_unicode_string_is_a_result(text):
    check(text)


def test_seeded_random_mutations_of_a_good_answer_are_results():
    good = box_answer("[310, 360, 567, 586]")
    rng = random.Random(22)
    pieces = ["[", "]", "{", "}", ",", '"', HUGE, "NaN", "null", "\ud800", "-", "e999", "[[", "]]"]
    for _ in range(400):
        chars = list(good)
        for _ in range(rng.randint(1, 6)):
            k = rng.randrange(len(chars) + 1)
            chars[k : k + rng.randint(0, 3)] = [rng.choice(pieces)]
        check("".join(chars))


# -- the outcome of a run-away number, mode by mode ---------------------------------------------------------------
def test_a_runaway_box_number_in_reference_mode_is_the_references_outcome():
    # the reference's parser takes a list of 4 as a box; its SAM2 call then fails on np.array's object array:
    # scored as a failure, counted as accepted (not a parse failure)
    r = parse_answer(box_answer(f"[310, 360, 567, {HUGE}]"), mode="reference")
    assert r.status == "unparsed" and r.format_ok and r.label == "sam2_failed"
    assert "integer outside int64/uint64" in r.reason


def test_a_runaway_point_number_in_reference_mode_is_a_parse_failure():
    # the reference's point check is float(v): OverflowError, caught by its bare except: rejected
    r = parse_answer(box_answer("[310, 360, 567, 586]", f"[[400, {HUGE}], [420, 430]]"), mode="reference")
    assert r.status == "unparsed" and not r.format_ok and r.label == "unparsed"
    assert "positive_points" in r.reason


def test_a_runaway_number_in_tolerant_mode_rejects_that_instance_with_its_reason():
    one = parse_answer(box_answer(f"[310, 360, 567, {HUGE}]", "[]"), mode="tolerant")
    assert one.status == "unparsed" and "instance 1 has a coordinate too large to be a number" in one.reason
    two = parse_answer(wrap(f'[{{"bbox_2d": [310, 360, 567, {HUGE}]}}, {{"bbox_2d": [10, 10, 90, 90]}}]'))
    assert two.status == "ok" and [i.box for i in two.instances] == [(10.0, 10.0, 90.0, 90.0)]
    assert two.dropped == 1 and two.rejected == ["instance 1 has a coordinate too large to be a number"]


@pytest.mark.parametrize("v, ok", [(2**63 - 1, True), (2**64 - 1, True), (2**64, False), (-(2**63) - 1, False)])
def test_reference_mode_takes_the_integers_numpy_can_hold(v, ok):
    r = parse_answer(box_answer(f"[310, 360, 567, {v}]"), mode="reference")
    assert (r.status == "ok") is ok and r.format_ok


def test_four_one_element_lists_are_a_box_in_reference_mode():
    r = parse_answer(box_answer("[[310], [360], [567], [586]]"), mode="reference")
    assert r.status == "ok" and r.instances[0].box == (310.0, 360.0, 567.0, 586.0)


def test_null_inside_a_box_is_accepted_then_fails_in_sam2():
    r = parse_answer(box_answer("[310, null, 567, 586]"), mode="reference")
    assert r.label == "sam2_failed" and "null" in r.reason


def test_deep_nesting_is_a_parse_failure_in_every_mode():
    for mode in PARSE_MODES:
        r = parse_answer(wrap("[" * 100_000 + "]" * 100_000), mode=mode)
        assert r.status == "unparsed" and not r.format_ok

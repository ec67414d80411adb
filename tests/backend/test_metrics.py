"""gIoU / cIoU under both protocols, against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
from think2seg.errors import BadInput
from think2seg.evaluation.earthreason import Sample
from think2seg.evaluation.metrics import PROTOCOLS, SampleScore, get_protocol, score_sample, summarize
from think2seg.evaluation.runner import select_samples


def masks():
    gt = np.zeros((10, 10), dtype=bool)
    gt[2:6, 2:6] = True  # 16 px
    pred = np.zeros_like(gt)
    pred[2:6, 4:8] = True  # 16 px, 8 of them on the target: I 8, U 24
    return gt, pred


@pytest.mark.parametrize("protocol", ["think2seg", "segearth"])
def test_perfect_answer(protocol):
    gt, _ = masks()
    s = score_sample(gt.copy(), gt, "ok", protocol)
    assert (s.iou, s.intersection, s.union, s.empty_target) == (1.0, 16, 16, False)


@pytest.mark.parametrize("protocol", ["think2seg", "segearth"])
def test_partial_overlap(protocol):
    gt, pred = masks()
    s = score_sample(pred, gt, "ok", protocol)
    assert (s.intersection, s.union) == (8, 24) and s.iou == pytest.approx(1 / 3)


@pytest.mark.parametrize("protocol", ["think2seg", "segearth"])
@pytest.mark.parametrize("status", ["unparsed", "empty"])
def test_failed_parse_or_empty_answer_on_a_target_is_an_empty_mask(protocol, status):
    gt, pred = masks()
    s = score_sample(pred, gt, status, protocol)  # whatever mask came with it is ignored
    assert (s.iou, s.intersection, s.union) == (0.0, 0, 16)  # the target's area still adds to the union


def test_empty_target_think2seg_as_the_reference():
    empty = np.zeros((10, 10), dtype=bool)
    _, pred = masks()
    # [] on an image with no target: IoU 1, nothing added to cIoU
    assert score_sample(None, empty, "empty", "think2seg") == SampleScore(1.0, 0, 0, True, "empty")
    # a box on an image with no target: IoU 0, and (as the reference, which never runs SAM2 there) no union either
    assert score_sample(pred, empty, "ok", "think2seg") == SampleScore(0.0, 0, 0, True, "ok")
    assert score_sample(None, empty, "unparsed", "think2seg") == SampleScore(0.0, 0, 0, True, "unparsed")


def test_empty_target_segearth_lisa_style():
    empty = np.zeros((10, 10), dtype=bool)
    _, pred = masks()
    assert score_sample(None, empty, "empty", "segearth") == SampleScore(1.0, 0, 0, True, "empty")
    # a failed parse is an empty mask: empty prediction on an empty target = IoU 1
    assert score_sample(None, empty, "unparsed", "segearth").iou == 1.0
    # a false alarm adds its area to the union
    assert score_sample(pred, empty, "ok", "segearth") == SampleScore(0.0, 0, 16, True, "ok")


def test_summaries_by_hand():
    gt, pred = masks()
    empty = np.zeros_like(gt)
    cases = [(gt, gt, "ok", "a"), (pred, gt, "ok", "a"), (None, gt, "unparsed", "b"), (pred, empty, "ok", "b")]
    t = [score_sample(p, g, st, "think2seg") for p, g, st, _ in cases]
    m = summarize(t, [c for *_, c in cases], "think2seg")
    # IoUs 1, 1/3, 0, 0; I = 16 + 8 + 0 + 0; U = 16 + 24 + 16 + 0
    assert m["giou"] == pytest.approx((1 + 1 / 3) / 4)
    assert m["ciou"] == pytest.approx(24 / 56)
    assert (m["n"], m["parse_failures"], m["empty_target"], m["protocol"]) == (4, 1, 1, "think2seg")
    # the reference's Pr@X: IoU >= t over the images that got a mask (the unparsed one did not)
    assert m["precision_at"]["0.5"] == pytest.approx(1 / 3) and m["precision_images"] == 3
    assert m["precision_at"]["0.9"] == pytest.approx(1 / 3) and "IoU >= t" in m["precision_definition"]
    assert m["per_category"]["a"]["ciou"] == pytest.approx(24 / 40)
    assert m["per_category"]["b"]["giou"] == 0.0
    s = [score_sample(p, g, st, "segearth") for p, g, st, _ in cases]
    m2 = summarize(s, None, "segearth")
    # the false alarm on the empty image now adds 16 to the union
    assert m2["ciou"] == pytest.approx(24 / 72) and m2["giou"] == pytest.approx((1 + 1 / 3) / 4)
    assert "per_category" not in m2
    # segearth keeps ours: IoU > t over all images
    assert m2["precision_at"]["0.5"] == pytest.approx(0.25) and m2["precision_definition"] == "IoU > t over all images"


def test_reference_precision_counts_images_that_got_a_mask():
    gt, pred = masks()
    empty = np.zeros_like(gt)
    t = [
        score_sample(gt, gt, "ok", "think2seg"),  # IoU 1: counted, a hit
        score_sample(None, gt, "empty", "think2seg"),  # [] on a target: SAM2 made no mask: not counted
        score_sample(None, gt, "sam2_failed", "think2seg"),  # accepted, SAM2 raised: not counted
        score_sample(None, empty, "empty", "think2seg"),  # [] on no target: a zero mask, IoU 1: a hit
        score_sample(None, empty, "sam2_failed", "think2seg"),  # accepted on no target: a zero mask, IoU 0
        score_sample(None, empty, "unparsed", "think2seg"),
    ]  # rejected: no mask
    m = summarize(t, None, "think2seg")
    assert m["precision_images"] == 3 and m["precision_at"]["0.5"] == pytest.approx(2 / 3)
    assert (m["parse_failures"], m["sam2_failures"]) == (1, 2)
    # a score of exactly t counts (>=): 1/3 at 1/3
    third = score_sample(pred, gt, "ok", "think2seg")
    from think2seg.evaluation.metrics import precision_at

    assert precision_at([third], "reference", (third.iou,)) == {f"{third.iou:.1f}": 1.0}
    assert summarize([], None, "think2seg")["precision_at"]["0.5"] == 0.0


def test_no_union_gives_no_ciou():
    empty = np.zeros((4, 4), dtype=bool)
    m = summarize([score_sample(None, empty, "empty", "think2seg")])
    assert m["ciou"] is None and m["giou"] == 1.0


def test_protocol_frames():
    assert PROTOCOLS["think2seg"].frame_size(2000, 1000) == (840, 840)
    assert PROTOCOLS["segearth"].frame_size(2000, 1000) == (1024, 512)
    assert PROTOCOLS["segearth"].frame_size(300, 600) == (512, 1024)
    with pytest.raises(BadInput):
        get_protocol("lisa")


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        score_sample(np.zeros((3, 3), bool), np.zeros((4, 4), bool), "ok", "think2seg")


def test_question_choice_is_seeded_per_image():
    s = Sample("img_7", None, None, [f"q{i}" for i in range(6)])
    picks = {s.question("random", 42) for _ in range(5)}
    assert len(picks) == 1  # stable
    assert s.question("first", 42) == (0, "q0")
    others = {Sample(f"img_{k}", None, None, [f"q{i}" for i in range(6)]).question("random", 42)[0] for k in range(40)}
    assert len(others) > 3  # but it varies between images


def test_larger_limit_keeps_the_smaller_selection():
    samples = [Sample(f"s{k}", None, None, ["q"]) for k in range(30)]
    small = {s.image_id for s in select_samples(samples, 5, 1)}
    big = {s.image_id for s in select_samples(samples, 12, 1)}
    assert len(small) == 5 and len(big) == 12 and small <= big
    assert select_samples(samples, None, 1) == samples


def test_reference_question_draw(tmp_path):
    """random.seed(seed) over os.listdir, one choice per entry with a label and questions (the reference's
    EarthReason_datasets.py:422-448, :557 and test_think2seg-rs_qwen.py:224, :262-266), restated here."""
    import json
    import os
    import random

    from think2seg.evaluation.earthreason import reference_draw

    base = tmp_path / "val"
    for d in ("images", "labels", "QAs"):
        (base / d).mkdir(parents=True)
    for k in range(12):
        (base / "images" / f"im{k}.jpg").write_bytes(b"x")
        if k != 3:  # no label: not in the listing, takes no draw
            (base / "labels" / f"im{k}.png").write_bytes(b"x")
        questions = [] if k == 5 else [f"q{i}" for i in range(1 + k % 4)] + ([""] if k == 7 else [])
        (base / "QAs" / f"im{k}.json").write_text(json.dumps({"questions": questions}))

    def restated(seed, limit=None):
        random.seed(seed)
        entries = []
        for name in os.listdir(base / "images"):
            i = name.split(".")[0]
            qa = base / "QAs" / f"{i}.json"
            if (base / "labels" / f"{i}.png").exists() and qa.exists() and json.loads(qa.read_text())["questions"]:
                entries.append((i, json.loads(qa.read_text())["questions"]))
        picked = random.sample(range(len(entries)), limit) if limit and limit < len(entries) else range(len(entries))
        return [(entries[j][0], entries[j][1].index(random.choice(entries[j][1]))) for j in picked]

    for seed, limit in ((0, None), (0, 4), (7, None), (7, 20)):
        assert reference_draw(tmp_path, "val", seed, limit) == restated(seed, limit)
    ids = [i for i, _ in reference_draw(tmp_path, "val", 0)]
    assert len(ids) == 10 and "im3" not in ids and "im5" not in ids


def test_a_label_of_another_size_is_kept_for_resizing(tmp_path):
    from PIL import Image
    from think2seg.evaluation.earthreason import load_sample

    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    Image.new("L", (32, 24), 255).save(tmp_path / "l.png")
    s = Sample("a", tmp_path / "a.png", tmp_path / "l.png", ["q"])
    with pytest.raises(ValueError, match="32 x 24"):
        load_sample(s)
    rgb, mask = load_sample(s, resize_label=True)
    assert rgb.shape == (48, 64, 3) and mask.shape == (24, 32) and mask.all()


def test_a_multichannel_label_scores_zero_with_every_channel_in_the_union():
    from think2seg.evaluation.metrics import SampleScore, multichannel_label_score

    assert multichannel_label_score(SampleScore(0.8, 8, 10, False, "ok"), 30) == SampleScore(
        0.0, 0, 30, False, "sam2_failed"
    )
    assert multichannel_label_score(SampleScore(0.0, 0, 10, False, "unparsed"), 30).status == "unparsed"
    empty = SampleScore(1.0, 0, 0, True, "empty")
    assert multichannel_label_score(empty, 0) == empty

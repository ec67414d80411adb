"""`think2seg eval` end to end on a mini EarthReason with the tiny models: metrics, masks, report, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from earthreason_fixture import make_mini_earthreason
from PIL import Image
from think2seg.cli import main
from think2seg.errors import BadInput
from think2seg.evaluation.runner import EvalSettings, evaluate
from think2seg.testing.tiny_models import KNOWN_COMPLETION, KNOWN_REASONING

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mini(tiny_models_dir, tmp_path_factory):
    return make_mini_earthreason(tmp_path_factory.mktemp("earthreason"), tiny_models_dir / "sam2.1_hiera_t.pt")


def model_args(tiny_models_dir):
    return ["--model", str(tiny_models_dir / "reasoner"), "--sam", str(tiny_models_dir / "sam2.1_hiera_t.pt"),
            "--device", "cpu", "--no-progress"]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_eval_writes_metrics_masks_and_report_and_resumes(mini, tiny_models_dir, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["eval", "--data", str(mini["root"]), "--split", "val", "-o", str(out), "--batch-size", "3",
            *model_args(tiny_models_dir)]
    # a first run stopped after 4 images, and a crash that left half a line
    assert main(args + ["--limit", "4"]) == 0
    first = read_jsonl(out / "samples.jsonl")
    assert len(first) == 4 and json.loads((out / "metrics.json").read_text())["n"] == 4
    with (out / "samples.jsonl").open("a") as fh:
        fh.write('{"image_id": "rect_')
    capsys.readouterr()
    assert main(args) == 0  # resumes: only the 8 missing images run
    assert "resuming: 4 of 13 images" in capsys.readouterr().err  # broken_image fails only when read

    good = mini["perfect"] + mini["empty"] + mini["rect"]
    recs = {r["image_id"]: r for r in read_jsonl(out / "samples.jsonl")}
    assert sorted(recs) == sorted(good)
    assert all(recs[i] == r for i, r in ((r["image_id"], r) for r in first))  # the first 4 were not redone
    m = json.loads((out / "metrics.json").read_text())
    assert m["protocol"] == "think2seg" and m["split"] == "val"
    assert (m["n"], m["parse_failures"], m["empty_target"], m["skipped"]) == (12, 0, 1, 2)
    # the tiny reasoner always answers its known box: SAM2's mask for it IS the label of the perfect images
    for i in mini["perfect"]:
        assert recs[i]["iou"] == 1.0 and recs[i]["status"] == "ok"
        assert recs[i]["answer"] == KNOWN_COMPLETION and recs[i]["reasoning"] == KNOWN_REASONING
    # a box on the image without a target: IoU 0, nothing added to cIoU (the reference's rule)
    e = recs[mini["empty"][0]]
    assert e["empty_target"] and (e["iou"], e["intersection"], e["union"]) == (0.0, 0, 0)
    for i in mini["rect"]:
        assert 0 < recs[i]["iou"] < 1
    # the figures are the records' figures
    assert m["giou"] == pytest.approx(np.mean([r["iou"] for r in recs.values()]))
    assert m["ciou"] == pytest.approx(sum(r["intersection"] for r in recs.values())
                                      / sum(r["union"] for r in recs.values()))
    assert set(m["per_category"]) == {"water", "sports field", "industrial"}
    # one mask per image, 0/255, at the label's size; the perfect ones equal their labels
    for i in good:
        pred = np.asarray(Image.open(out / "pred" / f"{i}.png"))
        label = np.asarray(Image.open(mini["root"] / "val" / "labels" / f"{i}.png"))
        assert pred.shape == label.shape and set(np.unique(pred)) <= {0, 255}
        if i in mini["perfect"]:
            assert np.array_equal(pred > 0, label > 0)
    # bad data reported per sample, not a crash
    problems = {p["image_id"]: p["problem"] for p in read_jsonl(out / "problems.jsonl")}
    assert set(problems) == {"broken_qa", "broken_image"}
    assert "not readable JSON" in problems["broken_qa"] and "cannot be read as an image" in problems["broken_image"]
    # the visual report
    page = (out / "report.html").read_text()
    assert (out / "figures" / "iou_histogram.png").exists() and "iou_histogram.png" in page
    for src in [s.split('"')[0] for s in page.split('src="')[1:]]:
        assert (out / src).exists()
    assert "case_perfect_a.png" in page and "broken_image" in page and "think2seg" in page


def test_segearth_protocol_and_a_changed_run_refused(mini, tiny_pipeline, tmp_path):
    out = tmp_path / "seg"
    s = EvalSettings(data=str(mini["root"]), split="val", out=str(out), protocol="segearth", limit=3, batch_size=2)
    m = evaluate(tiny_pipeline, s, progress=False)
    assert m["protocol"] == "segearth" and m["n"] == 3
    for r in read_jsonl(out / "samples.jsonl"):
        assert max(r["frame"]) == 1024 and r["question_index"] == 0  # long side 1024, first question
    s.protocol = "think2seg"  # resuming with other settings would mix two protocols in one report
    with pytest.raises(BadInput, match="--restart") as e:
        evaluate(tiny_pipeline, s, progress=False)
    assert e.value.code == "report_dir_mismatch"


def test_without_data_it_says_where_to_get_it(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path / "nothing"), "--split", "test", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "earth-insights/EarthReason" in err and "huggingface-cli download" in err

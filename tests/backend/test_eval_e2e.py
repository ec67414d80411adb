"""`think2seg eval` end to end on a mini EarthReason with the tiny models: metrics, masks, report, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_model_args
from earthreason_fixture import make_mini_earthreason
from PIL import Image
from think2seg.cli import main
from think2seg.errors import BadInput
from think2seg.evaluation.earthreason import reference_draw, scan_split
from think2seg.evaluation.runner import EvalSettings, evaluate, select_samples
from think2seg.testing.tiny_models import KNOWN_COMPLETION, KNOWN_REASONING

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mini(tiny_models_dir, tmp_path_factory):
    # Three rectangles (one of each category) of the nine: each image costs a SAM2 encoding on the CPU.
    return make_mini_earthreason(
        tmp_path_factory.mktemp("earthreason"), tiny_models_dir / "sam2.1_hiera_t.pt", n_rect=3
    )


def model_args(tiny_models_dir):
    return [*tiny_model_args(tiny_models_dir), "--no-progress"]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_eval_writes_metrics_masks_and_report_and_resumes(mini, tiny_models_dir, tmp_path, capsys):
    out = tmp_path / "report"
    args = [
        "eval",
        "--data",
        str(mini["root"]),
        "--split",
        "val",
        "-o",
        str(out),
        "--batch-size",
        "3",
        *model_args(tiny_models_dir),
    ]
    # a first run stopped after 4 images (the reference's draw of 4), and a crash that left half a line
    assert main(args + ["--limit", "4"]) == 0
    picked = [i for i, _ in reference_draw(mini["root"], "val", 0, 4)]
    first = read_jsonl(out / "samples.jsonl")
    assert [r["image_id"] for r in first] == [i for i in picked if i != "broken_image"]
    assert json.loads((out / "metrics.json").read_text())["n"] == len(first)
    with (out / "samples.jsonl").open("a") as fh:
        fh.write('{"image_id": "rect_')
    capsys.readouterr()
    assert main(args) == 0  # resumes: only the missing images run, and those the full draw asks another question
    draw = dict(reference_draw(mini["root"], "val", 0))
    kept = [r for r in first if r["question_index"] == draw[r["image_id"]]]
    assert f"resuming: {len(kept)} of 7 images" in capsys.readouterr().err  # broken_image fails only when read

    good = mini["perfect"] + mini["empty"] + mini["rect"]
    recs = {r["image_id"]: r for r in read_jsonl(out / "samples.jsonl")}
    assert sorted(recs) == sorted(good)
    assert all(recs[r["image_id"]] == r for r in kept)  # these were not redone
    m = json.loads((out / "metrics.json").read_text())
    assert m["protocol"] == "think2seg" and m["split"] == "val"
    # what decoded and read the answers: the reference's parser, greedy without penalties or forced answer
    import transformers

    assert m["parse_mode"] == "reference" and m["prompt_template"] == "think2seg-rs/v1"
    assert m["transformers"] == transformers.__version__ and m["models"]["parse_mode"] == "reference"
    g = m["generation"]
    assert (g["strategy"], g["repetition_penalty"], g["no_repeat_ngram_size"]) == ("greedy", 1.0, 0)
    assert g["forced_answer_tokens"] == 0 and g["max_new_tokens"] == 2048
    assert g["prefix_reuse"] is False  # every prompt prefilled whole, as the reference did
    # the question of each image is the reference's draw
    assert all(recs[i]["question_index"] == draw[i] for i in recs)
    assert (m["n"], m["parse_failures"], m["empty_target"], m["skipped"]) == (6, 0, 1, 2)
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
    assert m["ciou"] == pytest.approx(
        sum(r["intersection"] for r in recs.values()) / sum(r["union"] for r in recs.values())
    )
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
    # a seed whose 3-image subset holds no broken sample, drawn as the runner draws for this protocol
    samples, _ = scan_split(mini["root"], "val")
    seed = next(s for s in range(100) if "broken_image" not in {x.image_id for x in select_samples(samples, 3, s)})
    s = EvalSettings(
        data=str(mini["root"]), split="val", out=str(out), protocol="segearth", limit=3, batch_size=2, seed=seed
    )
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


def test_think2seg_protocol_forces_no_answer_and_resizes_labels(mini, tiny_pipeline, tmp_path):
    """A reasoning cut by the budget stays unanswered (the reference has no forced answer) and scores as a
    failed parse; a label of another size than its image is resized to 840, not skipped."""
    import shutil

    # Two of the mini set's images are enough: the perfect one whose label is resized, and one other.
    root = tmp_path / "er"
    for kind, suffix in (("images", "png"), ("labels", "png"), ("QAs", "json")):
        (root / "val" / kind).mkdir(parents=True)
        for image_id in ("perfect_a", "rect_a"):
            shutil.copy(mini["root"] / "val" / kind / f"{image_id}.{suffix}", root / "val" / kind)
    label = root / "val" / "labels" / "perfect_a.png"
    Image.open(label).resize((420, 420), Image.NEAREST).save(label)
    out = tmp_path / "cut"
    s = EvalSettings(data=str(root), split="val", out=str(out), batch_size=2, max_reasoning_tokens=16)
    m = evaluate(tiny_pipeline, s, progress=False)
    recs = read_jsonl(out / "samples.jsonl")
    assert len(recs) == 2 and all(r["status"] == "unparsed" and "<answer>" not in r["answer"] for r in recs)
    assert m["parse_failures"] == len(recs)
    s = EvalSettings(data=str(root), split="val", out=str(tmp_path / "full"), batch_size=2)
    evaluate(tiny_pipeline, s, progress=False)
    recs = {r["image_id"]: r for r in read_jsonl(tmp_path / "full" / "samples.jsonl")}
    # scored, not skipped: the 420 px label resized NEAREST to 840 loses only its edge detail
    assert 0.5 < recs["perfect_a"]["iou"] < 1.0 and (recs["perfect_a"]["width"], recs["perfect_a"]["height"]) == (
        420,
        420,
    )

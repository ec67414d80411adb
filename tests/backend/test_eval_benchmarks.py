"""`think2seg eval --benchmark`: RRSIS-D, RefSegRS and RISBench read as the reference's loaders read them (tiny
fixtures written here, in each published layout), Pr@X, the decoding recorded, and a run-away answer that is a
result in every entry point (eval, the service), never an error."""

from __future__ import annotations

import json
import pickle
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import tiny_model_args
from PIL import Image
from think2seg.errors import BadInput
from think2seg.evaluation.benchmarks import get_benchmark, rrsisd_split_refs
from think2seg.evaluation.runner import EvalSettings, evaluate
from think2seg.prompt_template import SYSTEM_PROMPT, USER_PROMPT

HUGE = "9" * 400
#: a run-away number the token budget cut and json_repair closed (issue 22): no points, so the app's parser
#: cannot use the instance either
RUNAWAY = '<think>x</think>\n<answer>```json[{"bbox_2d": [210, 168, 630, ' + HUGE + "]}]```</answer>"


def _rgb(seed: int, size=(96, 80)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)


def _rect(size=(96, 80), box=(20, 10, 60, 50)) -> np.ndarray:
    m = np.zeros((size[1], size[0]), dtype=bool)
    x1, y1, x2, y2 = box
    m[y1:y2, x1:x2] = True
    return m


def make_refsegrs(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k, img_id in enumerate(("100", "101")):
        Image.fromarray(_rgb(k)).save(root / "images" / f"{img_id}.tif")
        m = _rect()
        # RefSegRS masks are 3-channel: the reference reads channel 0; channel 1 here is noise it ignores
        rgb = np.stack([m * 255, np.full_like(m, 255) * (k == 0), np.zeros_like(m)], axis=2).astype(np.uint8)
        Image.fromarray(rgb).save(root / "masks" / f"{img_id}.tif")
    (root / "output_phrase_test.txt").write_text(
        "100 the   vehicle on the road\n\n101 a building\n100 the road\n999 a missing image\nlonely\n"
    )
    return root


def make_risbench(root: Path) -> Path:
    (root / "img_rgb").mkdir(parents=True)
    (root / "mask").mkdir()
    for k, name in enumerate(("a_1.png", "b_2.png")):
        Image.fromarray(_rgb(10 + k)).save(root / "img_rgb" / name)
        Image.fromarray(_rect().astype(np.uint8) * 255).save(root / "mask" / name)
    (root / "output_phrase_test.txt").write_text("a_1.png the storage tank  at the left\nb_2.png the pier\n")
    return root


def _polygon(box) -> list[float]:
    x1, y1, x2, y2 = box
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def make_rrsisd(root: Path) -> Path:
    images = root / "images" / "rrsisd" / "JPEGImages"
    images.mkdir(parents=True)
    (root / "rrsisd").mkdir()
    imgs, anns, refs = [], [], []
    for k in range(3):
        name = f"{k:05d}.jpg"
        Image.fromarray(_rgb(20 + k)).save(images / name)
        imgs.append({"id": k, "file_name": name, "width": 96, "height": 80})
        # two polygons for the first: the reference sums them
        seg = [_polygon((20, 10, 60, 50))] + ([_polygon((70, 60, 90, 75))] if k == 0 else [])
        anns.append({"id": 100 + k, "image_id": k, "category_id": 1, "segmentation": seg, "bbox": [20, 10, 40, 40]})
        refs.append(
            {
                "ref_id": 7 + k,
                "ann_id": 100 + k,
                "image_id": k,
                "category_id": 1,
                "split": ("test", "val", "testB")[k],
                "sentences": [
                    {"sent": f"the airplane number {k}", "sent_id": k, "tokens": []},
                    {"sent": "another sentence", "sent_id": 50 + k, "tokens": []},
                ],
            }
        )
    with (root / "rrsisd" / "refs(unc).p").open("wb") as fh:
        pickle.dump(refs, fh)
    (root / "rrsisd" / "instances.json").write_text(
        json.dumps({"images": imgs, "annotations": anns, "categories": [{"id": 1, "name": "airplane"}]})
    )
    return root


# -- reading, as the reference's loaders read --------------------------------------------------------------------
def test_refsegrs_reads_as_its_loader(tmp_path):
    samples, problems = get_benchmark("refsegrs").scan(make_refsegrs(tmp_path / "r"), "test")
    # every line a sample, words joined by one space, a repeated image gets its own id; missing files left out
    assert [(s.image_id, s.questions[0]) for s in samples] == [
        ("100", "the vehicle on the road"),
        ("101", "a building"),
        ("100_1", "the road"),
    ]
    assert [p.image_id for p in problems] == ["999"]
    assert np.array_equal(samples[0].read_mask(), _rect())  # channel 0 only


def test_risbench_reads_as_its_loader(tmp_path):
    samples, _ = get_benchmark("risbench").scan(make_risbench(tmp_path / "r"), "test")
    # split at the first space only: the double space inside the phrase stays
    assert [(s.image_id, s.questions[0]) for s in samples] == [
        ("a_1", "the storage tank  at the left"),
        ("b_2", "the pier"),
    ]
    assert np.array_equal(samples[1].read_mask(), _rect())


def test_rrsisd_reads_refs_polygons_and_the_first_sentence_with_a_period(tmp_path):
    samples, problems = get_benchmark("rrsisd").scan(make_rrsisd(tmp_path / "r"), "test")
    # "test" takes every ref whose split contains it (testB included), in the pickle's order
    assert [(s.image_id, s.questions[0]) for s in samples] == [
        ("7", "the airplane number 0."),
        ("9", "the airplane number 2."),
    ]
    m = samples[0].read_mask()
    assert m.shape == (80, 96) and m[30, 40] and m[65, 80] and not m[5, 5]
    # pycocotools' polygon covers the rectangle's pixels (its edge rule) and nothing far from it
    assert abs(int(m.sum()) - (40 * 40 + 20 * 15)) < 2 * (40 + 40 + 20 + 15)
    assert [
        r["ref_id"] for r in rrsisd_split_refs(pickle.load((tmp_path / "r/rrsisd/refs(unc).p").open("rb")), "val")
    ] == [8]
    with pytest.raises(BadInput, match="no split"):
        get_benchmark("rrsisd").scan(tmp_path / "r", "dev")


def test_the_three_benchmarks_ask_earthreasons_prompt_word_for_word():
    # the loaders' USER_PROMPT equals EarthReason's (checked against the reference's files when this was
    # written); RRSIS-D differs by its question: the first sentence and a period
    import think2seg.evaluation.benchmarks as b

    assert 'Please find "{Question}"' in USER_PROMPT
    assert "sentences'][0]['sent'] + '.'" in b.__doc__


def test_missing_data_says_what_to_pass(tmp_path):
    for name in ("rrsisd", "refsegrs", "risbench"):
        with pytest.raises(BadInput) as e:
            get_benchmark(name).scan(tmp_path, "test")
        assert e.value.code == "dataset_missing" and "--data" in e.value.message


def test_the_reference_subset_is_random_sample_of_the_loader_order(tmp_path):
    import random

    root = make_refsegrs(tmp_path / "r")
    b = get_benchmark("refsegrs")
    samples, _ = b.scan(root, "test")
    want = [samples[i].image_id for i in random.Random(0).sample(range(3), 2)]
    assert [i for i, _ in b.draw(root, "test", 0, 2, samples)] == want
    assert [i for i, _ in b.draw(root, "test", 0, None, samples)] == ["100", "101", "100_1"]


# -- the models run --------------------------------------------------------------------------------------------
def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, make, n", [("refsegrs", make_refsegrs, 3), ("risbench", make_risbench, 2), ("rrsisd", make_rrsisd, 2)]
)
def test_each_benchmark_evaluates_with_pr_at_x(name, make, n, tiny_pipeline, tmp_path):
    root = make(tmp_path / name)
    out = tmp_path / "report"
    m = evaluate(
        tiny_pipeline,
        EvalSettings(data=str(root), split="test", out=str(out), benchmark=name, batch_size=3),
        progress=False,
    )
    recs = read_jsonl(out / "samples.jsonl")
    assert m["benchmark"] == name and m["n"] == n == len(recs) and m["protocol"] == "think2seg"
    assert m["giou"] == pytest.approx(np.mean([r["iou"] for r in recs]))
    assert m["ciou"] == pytest.approx(sum(r["intersection"] for r in recs) / sum(r["union"] for r in recs))
    # the tiny reasoner always answers its box: SAM2 makes a mask for every image, so every image counts
    assert m["precision_images"] == n and set(m["precision_at"]) >= {"0.5", "0.7", "0.9"}
    assert m["precision_at"]["0.5"] == sum(r["iou"] >= 0.5 for r in recs) / n
    assert "IoU >= t" in m["precision_definition"]
    assert all(r["frame"] == [840, 840] and r["status"] == "ok" for r in recs)
    page = (out / "report.html").read_text()
    assert "Pr@0.5" in page and name in page
    for r in recs:
        pred = np.asarray(Image.open(out / "pred" / f"{r['image_id']}.png"))
        assert pred.shape == (80, 96)


@pytest.mark.slow
def test_cli_eval_decodes_plain_under_the_reference_protocol_and_records_it(tiny_models_dir, tmp_path, capsys):
    from think2seg.cli import main

    root = make_risbench(tmp_path / "ris")
    out = tmp_path / "o"
    assert (
        main(
            [
                "eval",
                "--benchmark",
                "risbench",
                "--data",
                str(root),
                "-o",
                str(out),
                "--no-progress",
                *tiny_model_args(tiny_models_dir),
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["decoding"] == "plain" and json.loads((out / "run.json").read_text())["decoding"] == "plain"
    assert "plain decoding" in capsys.readouterr().out and "Pr@0.5" in (out / "report.html").read_text()


@contextmanager
def scripted(pipeline, text: str):
    """The tiny reasoner writes `text` (then <|im_end|>) whatever it is asked (the reasoner's logits-processor
    hook, `Reasoner.logits_processor_factory`, with the benchmarks' `ScriptedTokens`)."""
    from think2seg.testing.scripted import ScriptedTokens

    tok = pipeline.reasoner.processor.tokenizer
    ids = tok.encode(text, add_special_tokens=False) + [tok.convert_tokens_to_ids("<|im_end|>")]
    old = pipeline.reasoner.logits_processor_factory
    pipeline.reasoner.logits_processor_factory = lambda: ScriptedTokens(ids)
    try:
        yield
    finally:
        pipeline.reasoner.logits_processor_factory = old


@pytest.mark.slow
def test_a_runaway_answer_is_a_scored_failure_and_the_eval_completes(tiny_pipeline, tmp_path):
    root = make_risbench(tmp_path / "ris")
    out = tmp_path / "o"
    with scripted(tiny_pipeline, RUNAWAY):
        m = evaluate(
            tiny_pipeline,
            EvalSettings(data=str(root), split="test", out=str(out), benchmark="risbench", batch_size=2),
            progress=False,
        )
    recs = read_jsonl(out / "samples.jsonl")
    assert len(recs) == 2 and all(r["answer"] == RUNAWAY for r in recs)
    # the reference's parser takes the box; its SAM2 call cannot: IoU 0, the target's area in the union,
    # counted as a SAM2 failure, not a parse failure
    assert all(
        r["status"] == "sam2_failed"
        and r["iou"] == 0.0
        and r["union"] > 0
        and r["intersection"] == 0
        and r["pred_area"] == 0
        for r in recs
    )
    assert (m["parse_failures"], m["sam2_failures"], m["giou"], m["ciou"]) == (0, 2, 0.0, 0.0)
    assert m["precision_images"] == 0 and m["precision_at"]["0.5"] == 0.0


@pytest.mark.slow
def test_the_service_answers_a_runaway_answer_as_unreadable(tiny_pipeline, naip, tmp_path):
    import uvicorn
    from think2seg.service.app import PipelineHolder, ServiceConfig, create_app
    from think2seg.testing.live_service import free_port

    holder = PipelineHolder(lambda: tiny_pipeline, {"reasoner": "tiny", "segmenter": "tiny"})
    holder.load()
    app = create_app(holder, ServiceConfig(token="t" * 40, work_dir=str(tmp_path / "work")))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    with scripted(tiny_pipeline, RUNAWAY):
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.05)
            r = httpx.post(
                f"http://127.0.0.1:{port}/v1/segment",
                headers={"Authorization": "Bearer " + "t" * 40},
                files={"image": (naip.name, naip.read_bytes(), "image/tiff")},
                data={"query": "the wetlands"},
                timeout=300,
            )
        finally:
            server.should_exit = True
            thread.join(30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "unparsed" and body["instances"] == [] and body["answer"] == RUNAWAY
    assert "could not be used" in body["message"] and "too large to be a number" in body["message"]


@pytest.mark.slow
def test_a_three_channel_label_scores_as_the_reference_scores_it(tiny_pipeline, tmp_path):
    """The reference keeps an RGB label's 3 channels: SAM2's (H, W) mask fails to broadcast against it (IoU 0,
    no mask) and the union counts every channel; ours under --protocol think2seg does the same."""
    root = make_risbench(tmp_path / "ris")
    m = _rect()
    Image.fromarray(np.stack([m * 255] * 3, axis=2).astype(np.uint8)).save(root / "mask" / "a_1.png")
    out = tmp_path / "o"
    evaluate(
        tiny_pipeline,
        EvalSettings(data=str(root), split="test", out=str(out), benchmark="risbench", batch_size=2),
        progress=False,
    )
    recs = {r["image_id"]: r for r in read_jsonl(out / "samples.jsonl")}
    one_channel = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((840, 840), Image.NEAREST)) > 0
    rgb = recs["a_1"]
    assert (rgb["status"], rgb["iou"], rgb["intersection"]) == ("sam2_failed", 0.0, 0)
    assert rgb["union"] == 3 * int(one_channel.sum())
    plain = recs["b_2"]  # the one-channel label beside it is scored as usual
    assert plain["status"] == "ok" and plain["iou"] > 0
    # the segearth protocol (ours) reads any channel as target: scored
    seg = evaluate(
        tiny_pipeline,
        EvalSettings(data=str(root), split="test", out=str(tmp_path / "s"), benchmark="risbench", protocol="segearth"),
        progress=False,
    )
    assert seg["n"] == 2 and seg["sam2_failures"] == 0


@pytest.mark.slow
def test_a_runaway_answer_in_a_batch_is_a_tile_without_features(tiny_pipeline, tmp_path):
    from think2seg.batch import BatchJob, run_batch
    from think2seg.testing.scenes import make_geotiff
    from think2seg.tiling import Tiling

    r = make_geotiff(tmp_path / "r.tif", 256, 256, discs=[(128, 128, 60)])
    job = BatchJob(
        rasters=[str(r)],
        queries=["the water bodies"],
        output=str(tmp_path / "o.gpkg"),
        options={"max_reasoning_tokens": 512},
        tiling=Tiling(256, 32, batch_size=1),
        progress=False,
    )
    with scripted(tiny_pipeline, RUNAWAY):
        summary = run_batch(lambda: tiny_pipeline, job)
    # the tile ran and its answer gave no prompt (the instance was rejected), the raster is done, not failed
    assert (summary.done, summary.failed, summary.tiles_run, summary.features, summary.prompts) == (1, 0, 1, 0, 0), (
        summary.format()
    )


def make_earthreason_with_blanks(root: Path, questions) -> Path:
    for sub in ("images", "labels", "QAs"):
        (root / "val" / sub).mkdir(parents=True)
    Image.fromarray(_rgb(30)).save(root / "val" / "images" / "a.png")
    Image.fromarray(_rect().astype(np.uint8) * 255).save(root / "val" / "labels" / "a.png")
    (root / "val" / "QAs" / "a.json").write_text(json.dumps({"questions": questions, "answer": "x"}))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("question", ["  the pond \n", "the pond\t", "\nthe pond"])
def test_the_reference_protocol_asks_the_question_as_written(tiny_pipeline, tmp_path, question):
    """The reference puts a dataset's question into its prompt as written (`USER_PROMPT.format(Question=q)`,
    blanks kept); under --protocol think2seg ours does, while segearth (and the app) strip it."""
    root = make_earthreason_with_blanks(tmp_path / "er", [question])
    asked: list[str] = []
    reasoner = tiny_pipeline.reasoner
    real = type(reasoner).prompt_text

    def spy(self, query):
        asked.append(query)
        return real(self, query)

    reasoner.prompt_text = spy.__get__(reasoner)
    try:
        m = evaluate(tiny_pipeline, EvalSettings(data=str(root), split="val", out=str(tmp_path / "o")), progress=False)
        seg = evaluate(
            tiny_pipeline,
            EvalSettings(data=str(root), split="val", out=str(tmp_path / "s"), protocol="segearth"),
            progress=False,
        )
    finally:
        del reasoner.prompt_text
    assert asked == [question, question.strip()]
    assert m["question_as_written"] is True and seg["question_as_written"] is False
    # the prompt text is the reference's, character for character
    user = [{"type": "image"}, {"type": "text", "text": USER_PROMPT.format(Question=question)}]
    expected = reasoner.processor.apply_chat_template(
        [{"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}, {"role": "user", "content": user}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert reasoner.prompt_text(asked[0]) == expected and f'find "{question}"' in expected
    assert read_jsonl(tmp_path / "o" / "samples.jsonl")[0]["question"] == question

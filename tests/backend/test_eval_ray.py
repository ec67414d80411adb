"""`think2seg eval --ray`: two actors on a local Ray pinned to 127.0.0.1 give the figures of a one-process run,
and a rerun resumes."""

from __future__ import annotations

import json

import pytest
from test_eval_benchmarks import make_refsegrs, read_jsonl
from think2seg.evaluation.runner import EvalSettings, evaluate

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    # a busy 2-core machine can delay the raylet's heartbeats: more of them may be missed before it is dead
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        _system_config={"health_check_failure_threshold": 60},
        runtime_env={
            "env_vars": {"TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
        },
    )
    yield
    ray.shutdown()


def test_two_actors_give_the_one_process_figures_and_resume(local_ray, tiny_models_dir, tiny_pipeline, tmp_path):
    from think2seg.evaluation.distributed import EvalModels, evaluate_ray

    root = make_refsegrs(tmp_path / "r")
    # batch size 1: three chunks over two actors, the same chunks as one process
    one = evaluate(
        tiny_pipeline,
        EvalSettings(data=str(root), split="test", out=str(tmp_path / "one"), benchmark="refsegrs", batch_size=1),
        progress=False,
    )
    models = EvalModels(str(tiny_models_dir / "reasoner"), str(tiny_models_dir / "sam2.1_hiera_t.pt"), device="cpu")
    out = tmp_path / "ray"
    settings = EvalSettings(data=str(root), split="test", out=str(out), benchmark="refsegrs", batch_size=1)
    m = evaluate_ray("local", settings, models, actors=2, progress=False, cpus_per_actor=1)
    for k in (
        "n",
        "giou",
        "ciou",
        "intersection",
        "union",
        "precision_at",
        "parse_failures",
        "sam2_failures",
        "precision_images",
        "decoding",
        "parse_mode",
        "benchmark",
    ):
        assert m[k] == one[k], k
    recs = {r["image_id"]: r for r in read_jsonl(out / "samples.jsonl")}
    want = {r["image_id"]: r for r in read_jsonl(tmp_path / "one" / "samples.jsonl")}
    assert sorted(recs) == sorted(want) == ["100", "100_1", "101"]
    for i in recs:
        assert (recs[i]["iou"], recs[i]["answer"], recs[i]["prompts"]) == (
            want[i]["iou"],
            want[i]["answer"],
            want[i]["prompts"],
        )
        assert (out / "pred" / f"{i}.png").read_bytes() == (tmp_path / "one" / "pred" / f"{i}.png").read_bytes()
    # resumable: a rerun finds every sample done and writes the same metrics
    logs = []
    again = evaluate_ray("local", settings, models, actors=1, progress=False, log=logs.append)
    assert any("3 of 3 images already evaluated" in line for line in logs)
    assert again["giou"] == m["giou"] and len(read_jsonl(out / "samples.jsonl")) == 3
    assert json.loads((out / "run.json").read_text())["decoding"] == "plain"

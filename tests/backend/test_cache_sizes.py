"""On CUDA the SAM2 embedding cache and the reasoner's view cache are sized from the GPU's free memory (what is
left after the weights and working memory), within bounds, unless the user set them; the CPU keeps its defaults.
The GPU's figures are given (no GPU here), as in test_gpu_fit."""

from __future__ import annotations

import httpx
import pytest
from conftest import tiny_model_args, tiny_service
from think2seg.cli import check_gpu_fit, pipeline_loader, sized_caches
from think2seg.cli.serve import add_parser
from think2seg.gpu_fit import (
    CACHE_SHARE,
    EMBEDDING_CACHE_BOUNDS,
    EMBEDDING_SHARE,
    VIEW_CACHE_BOUNDS,
    cache_sizes,
    need_bytes,
    reasoner_bytes,
    sam_bytes,
)
from think2seg.segmenter import CACHE_ENV

GIB, MIB = 2**30, 2**20
R3B, SAM_SMALL = int(3.75e9 * 2), int(46.0e6 * 4)  # the 3B reasoner in bf16, SAM2.1 small in float32


def test_caches_take_a_share_of_what_the_weights_leave():
    free = 80 * GIB  # an A100 80 GB, nothing else on it
    sizes = cache_sizes(free, R3B, SAM_SMALL)
    left = free - need_bytes(R3B, SAM_SMALL)
    assert sizes.left == left
    assert sizes.embedding == min(int(left * CACHE_SHARE * EMBEDDING_SHARE), EMBEDDING_CACHE_BOUNDS[1])
    assert sizes.embedding == EMBEDDING_CACHE_BOUNDS[1] and sizes.view == VIEW_CACHE_BOUNDS[1]  # 8 and 4 GiB caps
    mid = cache_sizes(16 * GIB, R3B, SAM_SMALL)  # a 16 GB card: ~6.7 GiB left
    budget = (16 * GIB - need_bytes(R3B, SAM_SMALL)) * CACHE_SHARE
    assert mid.embedding == int(budget * EMBEDDING_SHARE) and mid.view == int(budget * (1 - EMBEDDING_SHARE))
    assert 2 * GIB < mid.embedding < 3 * GIB and 1 * GIB < mid.view < 2 * GIB


def test_a_full_gpu_still_keeps_the_lower_bounds_and_more_memory_never_means_smaller_caches():
    tight = cache_sizes(need_bytes(R3B, SAM_SMALL) - GIB, R3B, SAM_SMALL)  # nothing left at all
    assert (tight.embedding, tight.view) == (EMBEDDING_CACHE_BOUNDS[0], VIEW_CACHE_BOUNDS[0]) and tight.left < 0
    sizes = [cache_sizes(f * GIB, R3B, SAM_SMALL) for f in range(8, 140, 4)]
    assert all(a.embedding <= b.embedding and a.view <= b.view for a, b in zip(sizes, sizes[1:], strict=False))


def serve_args(models, *extra):
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["serve", *tiny_model_args(models), *extra])


@pytest.fixture()
def caches_restored(tiny_pipeline):
    before = tiny_pipeline.segmenter.cache_bytes, tiny_pipeline.reasoner.views.max_bytes
    yield tiny_pipeline
    tiny_pipeline.segmenter.cache_bytes, tiny_pipeline.reasoner.views.max_bytes = before


def test_the_service_caches_follow_the_gpu_figures(tiny_models_dir, caches_restored, tmp_path, monkeypatch):
    from think2seg.service.app import PipelineHolder, Service, ServiceConfig

    monkeypatch.delenv(CACHE_ENV, raising=False)
    pipeline = caches_restored
    args = serve_args(tiny_models_dir)
    figures = (24 * GIB, 24 * GIB, "NVIDIA L4")
    sizes = check_gpu_fit(args, figures=figures)  # what the loader asks before loading, with these figures
    expected = cache_sizes(
        24 * GIB, reasoner_bytes(args.model), sam_bytes("tiny", str(tiny_models_dir / "sam2.1_hiera_t.pt"))
    )
    assert sizes == expected
    report = sized_caches(pipeline, sizes, args)
    assert pipeline.segmenter.cache_bytes == expected.embedding and pipeline.reasoner.views.max_bytes == expected.view
    assert report == {
        "embedding_mb": expected.embedding >> 20, "view_mb": expected.view >> 20, "embedding_from": "gpu",
        "view_from": "gpu", "gpu_left_mb": expected.left >> 20,
    }  # fmt: skip
    holder = PipelineHolder(lambda: pipeline, {"reasoner": "tiny", "segmenter": "tiny"})
    holder.load()
    holder.caches = report
    service = Service(holder, ServiceConfig(token="t" * 40, work_dir=str(tmp_path / "work")))
    try:
        assert service.health()["caches"] == report
    finally:
        service.shutdown()


def test_what_the_user_set_wins_over_the_gpu_figures(tiny_models_dir, caches_restored, monkeypatch):
    pipeline = caches_restored
    monkeypatch.delenv(CACHE_ENV, raising=False)
    args = serve_args(tiny_models_dir, "--embedding-cache-mb", "64", "--view-cache-mb", "32")
    sizes = check_gpu_fit(args, figures=(24 * GIB, 24 * GIB, "NVIDIA L4"))
    report = sized_caches(pipeline, sizes, args)
    assert (pipeline.segmenter.cache_bytes, pipeline.reasoner.views.max_bytes) == (64 * MIB, 32 * MIB)
    assert report["embedding_from"] == report["view_from"] == "set"
    monkeypatch.setenv(CACHE_ENV, "100")
    report = sized_caches(pipeline, sizes, serve_args(tiny_models_dir))
    assert pipeline.segmenter.cache_bytes == 100 * MIB and report["embedding_from"] == "set"
    assert pipeline.reasoner.views.max_bytes == sizes.view and report["view_from"] == "gpu"


def test_the_cpu_keeps_its_defaults(tiny_models_dir, caches_restored, monkeypatch):
    from think2seg.reasoner import DEFAULT_VIEW_CACHE_BYTES
    from think2seg.segmenter import DEFAULT_CACHE_BYTES

    monkeypatch.delenv(CACHE_ENV, raising=False)
    args = serve_args(tiny_models_dir)
    assert check_gpu_fit(args) is None  # --device cpu: no figures asked
    pipeline = caches_restored
    pipeline.segmenter.cache_bytes, pipeline.reasoner.views.max_bytes = DEFAULT_CACHE_BYTES["cpu"], 512 * MIB
    report = sized_caches(pipeline, None, args)
    assert report == {"embedding_mb": 256, "view_mb": DEFAULT_VIEW_CACHE_BYTES >> 20, "embedding_from": "default",
                      "view_from": "default"}  # fmt: skip
    assert callable(pipeline_loader(args)) and pipeline_loader(args).caches == {}


def test_a_started_service_reports_its_caches_in_health_and_its_log(tiny_models_dir, tmp_path):
    with tiny_service(tiny_models_dir, tmp_path / "cfg", "--view-cache-mb", "48") as svc:
        health = httpx.get(f"{svc.url}/v1/health", headers={"Authorization": f"Bearer {svc.token}"}, timeout=30)
        caches = health.json()["caches"]
        assert caches["view_mb"] == 48 and caches["view_from"] == "set"
        assert caches["embedding_mb"] == 256 and caches["embedding_from"] == "default"
        assert "caches: SAM2 embeddings 256 MiB (the default), reasoner views 48 MiB (as set)" in svc.log_tail(200)

"""`think2seg batch --ray`: a local Ray (2 CPUs, started once for the module) with the tiny models writes
the same features as the local path."""

from __future__ import annotations

import sys

import pytest
import shapely
from conftest import tiny_model_args
from think2seg.batch import BatchJob, run_batch
from think2seg.cli import main
from think2seg.testing.scenes import make_geotiff
from think2seg.tiling import Tiling

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        address="local",
        num_cpus=2,
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}},
    )
    yield
    ray.shutdown()


def rows(path, layer):
    from pyogrio.raw import read

    meta, _, geoms, fields = read(str(path), layer=layer)
    out = []
    for k, wkb in enumerate(geoms):
        r = {name: values[k] for name, values in zip(meta["fields"], fields)}
        out.append(
            (
                r["raster"],
                r["tile"],
                r.get("tiles", ""),
                r["query"],
                r["instance"],
                round(float(r.get("area_m2", 0.0)), 6),
                shapely.normalize(shapely.from_wkb(wkb)).wkb,
            )
        )
    return sorted(out)


def test_ray_batch_writes_what_the_local_batch_writes(local_ray, tiny_pipeline, tiny_models_dir, tmp_path, capsys):
    a = make_geotiff(tmp_path / "a.tif", 300, 200, discs=[(150, 100, 60)])
    b = make_geotiff(tmp_path / "b.tif", 200, 200, discs=[(100, 100, 50)])
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"no raster here")
    queries = ["the water bodies", "the fields"]
    local_out = tmp_path / "local.gpkg"
    job = BatchJob(
        rasters=[str(a), str(bad), str(b)],
        queries=queries,
        output=str(local_out),
        options={"max_reasoning_tokens": 128},
        tiling=Tiling(256, 32, batch_size=2),
        progress=False,
    )
    local = run_batch(lambda: tiny_pipeline, job)
    assert local.done == 2 and local.failed == 1

    ray_out = tmp_path / "ray.gpkg"
    rc = main(
        [
            "batch",
            "-q",
            queries[0],
            "-q",
            queries[1],
            str(a),
            str(bad),
            str(b),
            "-o",
            str(ray_out),
            "--tile-size",
            "256",
            "--overlap",
            "32",
            "--batch-size",
            "2",
            "--max-reasoning-tokens",
            "128",
            "--no-progress",
            "--ray",
            "local",
            *tiny_model_args(tiny_models_dir),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "2 done, 1 failed, 3 in all" in printed and "tiles     3 (3 run now" in printed
    for layer in ("mask", "prompt_points", "prompt_boxes"):
        assert rows(ray_out, layer) == rows(local_out, layer), f"layer {layer} differs"
    assert {r[0] for r in rows(ray_out, "prompt_boxes")} == {str(a), str(b)}
    assert len(rows(ray_out, "prompt_boxes")) == 3 * 2  # 3 tiles x 2 queries, one box each
    assert rows(ray_out, "mask"), "the comparison covers mask features too"


def test_ray_is_imported_lazily():
    import subprocess

    code = (
        "import sys, think2seg.batch, think2seg.tiling, think2seg.cli.batch, think2seg.cluster; "
        "sys.exit(1 if 'ray' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_actor_pool_runs_two_calls_per_actor():
    from think2seg.cluster import CALLS_PER_ACTOR, actor_pool

    pool = actor_pool(3)  # this environment's Ray has the parameters
    assert pool.min_size == pool.max_size == 3
    assert pool.max_concurrent_calls_per_actor == CALLS_PER_ACTOR == 2 and pool.enable_true_multi_threading


def test_an_actor_reads_the_next_call_while_one_is_with_the_models(tiny_pipeline, tmp_path, monkeypatch):
    """Two calls at once on one TileActor (as actor_pool lets Ray run them): the second reads its window and
    makes its model input while the first holds the models, the models serve one call at a time, and the
    answers are those of the calls one after the other."""
    import json
    import threading

    import numpy as np
    import rasterio
    import think2seg.tiling.read as tiling
    from think2seg.cluster import TileActor
    from think2seg.pipeline import Pipeline
    from think2seg.tiling import TileGrid

    monkeypatch.setattr(Pipeline, "from_pretrained", classmethod(lambda cls, *a, **k: tiny_pipeline))
    path = make_geotiff(tmp_path / "r.tif", 400, 200, discs=[(100, 100, 60), (300, 100, 50)])
    actor = TileActor({"model": "m", "sam": "s", "sam_size": None, "device": "cpu"}, {"max_reasoning_tokens": 32})
    with rasterio.open(path) as ds:
        specs = TileGrid.for_raster(ds, 256, 32).tiles[:2]
        first_key = tiny_pipeline.prepare(tiling.read_window(ds, specs[0])).key

    def batch(spec):
        return {
            "raster": np.array([str(path)]),
            "key": np.array(["k"]),
            "tile": np.array([spec.id]),
            "spec": np.array([json.dumps(spec.to_dict())]),
            "query_index": np.array([0]),
            "query": np.array(["the water bodies"]),
        }

    sequential = [actor(batch(s)) for s in specs]
    second_read, inside, most = threading.Event(), [0], [0]
    real_read, real_segment = tiling.read_window, tiny_pipeline.segment_tiles

    def read_window(ds, spec, bands=None):
        if spec.id == specs[1].id:
            second_read.set()
        return real_read(ds, spec, bands)

    def segment_tiles(*a, **k):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        try:
            if k["inputs"][0].key == first_key:  # the first call waits, holding the models, for the second's read
                assert second_read.wait(60), "the second call did not read while the first held the models"
            return real_segment(*a, **k)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(tiling, "read_window", read_window)
    monkeypatch.setattr(tiny_pipeline, "segment_tiles", segment_tiles)
    outs = [None, None]

    def call(k):
        outs[k] = actor(batch(specs[k]))

    first = threading.Thread(target=call, args=(0,))
    first.start()
    while inside[0] == 0 and first.is_alive():
        first.join(0.01)
    call(1)
    first.join()
    assert most[0] == 1 and second_read.is_set()

    def answers(out):  # what was found, less when and how long
        return [{k: v for k, v in json.loads(str(e)).items() if k not in ("created", "timings")} for e in out["entry"]]

    assert [answers(o) for o in outs] == [answers(o) for o in sequential]
    assert answers(outs[0])[0]["pieces"] and answers(outs[1])[0]["pieces"]
    assert all(not e for o in outs for e in o["error"])

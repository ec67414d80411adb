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

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}})
    yield
    ray.shutdown()


def rows(path, layer):
    from pyogrio.raw import read

    meta, _, geoms, fields = read(str(path), layer=layer)
    out = []
    for k, wkb in enumerate(geoms):
        r = {name: values[k] for name, values in zip(meta["fields"], fields)}
        out.append((r["raster"], r["tile"], r.get("tiles", ""), r["query"], r["instance"],
                    round(float(r.get("area_m2", 0.0)), 6), shapely.normalize(shapely.from_wkb(wkb)).wkb))
    return sorted(out)


def test_ray_batch_writes_what_the_local_batch_writes(local_ray, tiny_pipeline, tiny_models_dir, tmp_path, capsys):
    a = make_geotiff(tmp_path / "a.tif", 300, 200, discs=[(150, 100, 60)])
    b = make_geotiff(tmp_path / "b.tif", 200, 200, discs=[(100, 100, 50)])
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"no raster here")
    queries = ["the water bodies", "the fields"]
    local_out = tmp_path / "local.gpkg"
    job = BatchJob(rasters=[str(a), str(bad), str(b)], queries=queries, output=str(local_out),
                   options={"max_reasoning_tokens": 128}, tile_size=256, overlap=32, batch_size=2, progress=False)
    local = run_batch(lambda: tiny_pipeline, job)
    assert local.done == 2 and local.failed == 1

    ray_out = tmp_path / "ray.gpkg"
    rc = main(["batch", "-q", queries[0], "-q", queries[1], str(a), str(bad), str(b), "-o", str(ray_out),
               "--tile-size", "256", "--overlap", "32", "--batch-size", "2", "--max-reasoning-tokens", "128",
               "--no-progress", "--ray", "local", *tiny_model_args(tiny_models_dir)])
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

    code = ("import sys, think2seg.batch, think2seg.tiling, think2seg.cli.batch, think2seg.cluster; "
            "sys.exit(1 if 'ray' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0

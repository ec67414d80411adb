"""The benchmarks run and print their rows (no timing assertions: CI machines differ), and the fast decoding
path gives the plain path's tokens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from think2seg.testing.bench import PeakRSS, coarse_gsd, main
from think2seg.testing.scenes import make_geotiff, scene_block
from think2seg.testing.stand_in import StandInSegmenter

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / ".cache" / "tiny-models"


def needs_tiny():
    if not (TINY / "reasoner").exists():
        pytest.skip("tiny models missing: make tiny-models")


def test_synthetic_geotiff_is_written_by_blocks(tmp_path):
    path = make_geotiff(tmp_path / "s.tif", 1300, 700, discs=[(650, 350, 100)], block=256)
    with rasterio.open(path) as ds:
        assert (ds.width, ds.height, ds.count) == (1300, 700, 3)
        assert ds.block_shapes[0] == (256, 256) and ds.compression.name.lower() == "deflate"
        data = ds.read()
    assert np.array_equal(data, scene_block(0, 0, 1300, 700, [(650, 350, 100)])), "blocks join into one scene"
    seg = StandInSegmenter()
    seg.set_image(np.transpose(data, (1, 2, 0)))
    water = seg.predict([object()], (700, 1300)).merged
    assert water.sum() == pytest.approx(np.pi * 100**2, rel=0.01)


def test_peak_rss_sees_an_allocation():
    with PeakRSS(interval=0.001) as mem:
        block = np.full(256 * 2**20, 7, dtype=np.uint8)  # 256 MiB, every page written
        import time

        time.sleep(0.05)
    assert mem.growth > 128 * 2**20
    del block


def test_coarse_gsd_gives_the_asked_tile_count():
    from think2seg.tiling import make_grid

    for size in (8192, 20480):
        scale = coarse_gsd(size, 1024, 128, 0.5) / 0.5
        assert len(make_grid(size, size, 1024, 128, scale)) == 4


@pytest.mark.slow
def test_bench_prints_its_tables(capsys):
    needs_tiny()
    assert (
        main(
            [
                "--tiny",
                str(TINY),
                "--sizes",
                "256,700",
                "--tile-size",
                "256",
                "--overlap",
                "32",
                "--max-tiles",
                "1",
                "--coarse-tiles",
                "1",
                "--repeats",
                "2",
                "--stand-in",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    for row in (
        "## 1. One 256 x 256 tile",
        "| read (window, GeoTIFF)",
        "| preprocess",
        "| LVLM",
        "| parse",
        "| SAM2",
        "| polygonise",
        "| write (GPKG)",
        "## 2. Everything that is not a model",
        "| normalise",
        "| georeference",
        "| total, 8-bit raster",
        "| of which on the path that waits for the models",
        "## 3. Big rasters",
        "peak RSS",
    ):
        assert row in out, row
    lines = out.splitlines()
    for raster, mode in (
        ("256 x 256", "native, all tiles, tiny models"),
        ("700 x 700", "native, first 1 tiles"),
        ("700 x 700", "coarse gsd (whole raster)"),
        ("700 x 700", "tiny LVLM + stand-in SAM2"),
    ):
        assert any(raster in ln and mode in ln for ln in lines), (raster, mode)


@pytest.mark.slow
def test_gpu_bench_script_runs_with_tiny_shapes(tmp_path):
    needs_tiny()
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_bench.py"), "--tiny", "--batches", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for row in (
        "| read",
        "| prefill",
        "| decode (11 tokens)",
        "| SAM2 encoder",
        "| SAM2 decoder",
        "| polygonise",
        "| write",
        "(a) one query end to end",
        "| batch 1",
        "implementations:",
    ):
        assert row in proc.stdout, row
    import json

    report = json.loads(out.read_text())
    assert set(report["stages"]) == {"plain", "fast"} and report["batch"]["plain"]["1"]["tiles_per_s"] > 0

"""`think2seg batch`: many rasters, bad ones skipped with a report, one output, resumable, GeoParquet, CRSs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely
from conftest import tiny_model_args
from pyogrio.raw import read as ogr_read
from think2seg.batch import BatchJob, BatchSummary, collect_rasters, exit_code, read_queries, run_batch
from think2seg.cli import main
from think2seg.errors import BadInput, Cancelled
from think2seg.testing.scenes import make_geotiff
from think2seg.testing.stand_in import StandInSegmenter
from think2seg.tiling import Tiling


def read_layer(path, layer=None) -> list[dict]:
    meta, _, geoms, fields = ogr_read(str(path), layer=layer)
    rows = []
    for k, wkb in enumerate(geoms):
        row = {name: values[k] for name, values in zip(meta["fields"], fields)}
        row["geometry"] = shapely.from_wkb(wkb)
        rows.append(row)
    return rows


def corrupt_files(folder: Path) -> tuple[Path, Path]:
    """A file that is no raster at all, and a GeoTIFF cut short (its header opens, its tiles do not read)."""
    import rasterio

    bad = folder / "not_a_raster.tif"
    bad.write_bytes(b"this is not a GeoTIFF\n" * 50)
    whole = make_geotiff(folder / "whole.tif", 1024, 1024, block=256)
    with rasterio.open(whole) as ds:
        first = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    cut = folder / "truncated.tif"
    # Cut inside the first block: the very first tile fails to read, so no model runs on this file (cut later,
    # the models ran on every tile before the cut only to have the raster fail).
    cut.write_bytes(whole.read_bytes()[: first + size // 2])
    whole.unlink()
    return bad, cut


@pytest.fixture(scope="module")
def stand_in_pipeline(tiny_models_dir):
    from think2seg.pipeline import Pipeline
    from think2seg.reasoner import Reasoner

    return Pipeline(Reasoner.from_pretrained(str(tiny_models_dir / "reasoner"), device="cpu"), StandInSegmenter())


class Recorder:
    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.tiles: list[tuple] = []

    def __getattr__(self, name):
        return getattr(self.pipeline, name)

    def segment_tiles(self, tiles, queries, options=None, **kw):
        results = self.pipeline.segment_tiles(tiles, queries, options, **kw)
        self.tiles += [(t.source, tuple(t.read["window"])) for t in tiles]  # recorded once answered
        return results


# -- the command line with the real tiny models ---------------------------------------------------------------
@pytest.mark.slow
def test_cli_batch_two_rasters_and_corrupt_files(tmp_path, capsys, tiny_models_dir):
    a = make_geotiff(tmp_path / "a.tif", 300, 200, discs=[(150, 100, 60)])
    b = make_geotiff(tmp_path / "b.tif", 200, 200, discs=[(100, 100, 50)])
    bad, cut = corrupt_files(tmp_path)
    out = tmp_path / "out" / "answers.gpkg"
    rc = main(
        [
            "batch",
            "-q",
            "the water bodies",
            str(a),
            str(bad),
            str(b),
            str(cut),
            "-o",
            str(out),
            "--tile-size",
            "256",
            "--overlap",
            "32",
            "--max-reasoning-tokens",
            "128",
            "--no-progress",
            *tiny_model_args(tiny_models_dir),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0, "some rasters failed, the others were done: exit 0 with the failures in the summary"
    assert "2 done, 2 failed, 4 in all" in printed
    assert f"FAILED    {bad}" in printed and "not a raster GDAL can read" in printed
    assert f"FAILED    {cut}" in printed and "corrupt" in printed
    boxes = read_layer(out, "prompt_boxes")
    assert {r["raster"] for r in boxes} == {str(a), str(b)}
    assert {(r["raster"], r["tile"]) for r in boxes} == {(str(a), "r0c0"), (str(a), "r0c1"), (str(b), "r0c0")}
    masks = read_layer(out, "mask")
    assert all(r["raster"] in (str(a), str(b)) and r["tile"] and r["query"] == "the water bodies" for r in masks)
    summary = json.loads((out.parent / "answers.summary.json").read_text())
    assert summary["done"] == 2 and summary["failed"] == 2 and summary["tiles"] == 3
    assert {f["code"] for f in summary["failures"]} == {"not_a_raster", "read_failed"}
    assert Path(summary["state"]).exists(), "failures keep the state, so --resume retries only them"


def test_cli_batch_with_nothing_readable_exits_2_without_loading_models(tmp_path, capsys):
    bad, _ = corrupt_files(tmp_path)
    rc = main(
        [
            "batch",
            "-q",
            "water",
            str(bad),
            "-o",
            str(tmp_path / "o.gpkg"),
            "--no-progress",
            "--model",
            str(tmp_path / "no-such-model"),
            "--sam",
            "tiny",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 2 and "0 done, 1 failed" in out
    assert not (tmp_path / "o.gpkg").exists()


def test_exit_codes_and_inputs(tmp_path):
    assert exit_code(BatchSummary("o.gpkg", rasters=3, done=2, failed=1)) == 0
    assert exit_code(BatchSummary("o.gpkg", rasters=3, done=2, failed=1), strict=True) == 3
    assert exit_code(BatchSummary("o.gpkg", rasters=2, done=0, failed=2)) == 2
    assert exit_code(BatchSummary("o.gpkg", rasters=2, done=2)) == 0
    qfile = tmp_path / "q.txt"
    qfile.write_text("# wetlands\nthe wetlands\n\nthe roads\nthe wetlands\n")
    assert read_queries(["the fields"], str(qfile)) == ["the fields", "the wetlands", "the roads"]
    with pytest.raises(BadInput):
        read_queries([], None)
    (tmp_path / "scenes").mkdir()
    for name in ("b.tif", "a.TIF", "notes.txt"):
        (tmp_path / "scenes" / name).write_bytes(b"x")
    got = collect_rasters([str(tmp_path / "scenes"), str(tmp_path / "scenes" / "b.tif")])
    assert [Path(g).name for g in got] == ["a.TIF", "b.tif"]
    with pytest.raises(BadInput):
        BatchJob(rasters=[], queries=["q"], output=str(tmp_path / "o.shp"))


# -- the library with the tiny reasoner and a stand-in SAM2 ----------------------------------------------------
def _job(rasters, out, **kw) -> BatchJob:
    return BatchJob(
        rasters=[str(r) for r in rasters],
        queries=["the water bodies"],
        output=str(out),
        options={"max_reasoning_tokens": 128},
        tiling=Tiling(256, 32, batch_size=1),
        progress=False,
        **kw,
    )


def _features(path) -> list[tuple]:
    return sorted(
        (r["raster"], r["tile"], r["tiles"], round(r["area_m2"], 6), shapely.normalize(r["geometry"]).wkb)
        for r in read_layer(path, "mask")
    )


def test_batch_resumes_without_redoing_tiles(stand_in_pipeline, tmp_path):
    r1 = make_geotiff(tmp_path / "r1.tif", 440, 440, discs=[(220, 220, 100)])
    r2 = make_geotiff(tmp_path / "r2.tif", 440, 256, discs=[(300, 128, 70)])
    full = _job([r1, r2], tmp_path / "full.gpkg")
    run_batch(lambda: stand_in_pipeline, full)
    expected = _features(tmp_path / "full.gpkg")
    assert len(expected) == 2 and {e[0] for e in expected} == {str(r1), str(r2)}
    assert not Path(full.state_dir).exists(), "a complete run removes its state"

    out = tmp_path / "resumed.gpkg"
    first = Recorder(stand_in_pipeline)
    with pytest.raises(Cancelled):  # stopped after 5 of the 6 tiles (r1: 4 tiles, r2: 2)
        run_batch(lambda: first, _job([r1, r2], out), cancelled=lambda: len(first.tiles) >= 5)
    assert len(first.tiles) == 5 and not out.exists()
    second = Recorder(stand_in_pipeline)
    summary = run_batch(lambda: second, _job([r1, r2], out, resume=True))
    assert len(second.tiles) == 1 and not set(first.tiles) & set(second.tiles), "no finished tile is redone"
    assert summary.done == 2 and summary.tiles == 6 and summary.tiles_resumed == 1 and summary.tiles_run == 5
    assert _features(out) == expected, "the resumed batch writes the same features"


def test_a_local_batch_lays_out_each_rasters_grid_once(stand_in_pipeline, tmp_path, monkeypatch):
    """The batch plans every raster's grid before the models run; the tiled run takes that grid instead of
    laying it out again (one TileGrid per raster per run)."""
    from think2seg.tiling import TileGrid

    built: list[tuple[int, int]] = []
    real = TileGrid.for_raster.__func__

    def counting(cls, ds, *a, **k):
        built.append((ds.width, ds.height))
        return real(cls, ds, *a, **k)

    monkeypatch.setattr(TileGrid, "for_raster", classmethod(counting))
    r1 = make_geotiff(tmp_path / "r1.tif", 440, 440, discs=[(220, 220, 100)])
    r2 = make_geotiff(tmp_path / "r2.tif", 440, 256, discs=[(300, 128, 70)])
    summary = run_batch(lambda: stand_in_pipeline, _job([r1, r2], tmp_path / "o.gpkg"))
    assert summary.done == 2 and summary.tiles == 6
    assert sorted(built) == [(440, 256), (440, 440)], "each raster's grid is built once"


@pytest.mark.slow
def test_a_batch_keeps_no_cached_view_it_will_not_read_again(tiny_pipeline, tmp_path):
    """Every query of a tile is asked in one call and a batch never comes back to a tile: after a 4-tile batch
    the caches hold at most one call's views (SAM2's embeddings; the reasoner's vision features and prompt
    prefixes), where their byte budgets alone would have kept all four; the bound ends with the batch."""
    seg, views = tiny_pipeline.segmenter, tiny_pipeline.reasoner.views
    seg.cache_bytes, views.max_bytes = 1 << 30, 1 << 30  # room for every tile: only the run's bound can evict
    r = make_geotiff(tmp_path / "r.tif", 440, 440, discs=[(220, 220, 100)])
    job = BatchJob(
        rasters=[str(r)],
        queries=["the water bodies", "the fields"],
        output=str(tmp_path / "o.gpkg"),
        options={"max_reasoning_tokens": 64},
        tiling=Tiling(256, 32, batch_size=1),
        progress=False,
    )
    keys_seen: list[int] = []
    put = seg._cache.put

    def recording_put(key, value):
        put(key, value)
        keys_seen.append(len(seg.cached_keys))

    seg._cache.put = recording_put
    try:
        summary = run_batch(lambda: tiny_pipeline, job)
    finally:
        del seg._cache.put
    assert summary.done == 1 and summary.tiles == 4
    assert len(keys_seen) == 4, "each tile embedded once for its two queries"
    assert max(keys_seen) == 1 and len(seg.cached_keys) <= 1
    assert len(views) <= 2, "one view's vision features and prompt prefix at most"
    assert seg._cache.max_items is None and views.max_items is None, "the service's caches are whole again"


def test_resume_refuses_another_batch_state(stand_in_pipeline, tmp_path):
    r = make_geotiff(tmp_path / "r.tif", 256, 256, discs=[])
    job = _job([r], tmp_path / "o.gpkg")
    with pytest.raises(Cancelled):
        run_batch(lambda: stand_in_pipeline, job, cancelled=lambda: True)
    other = _job([r], tmp_path / "o.gpkg", resume=True)
    other.queries = ["the roads"]
    with pytest.raises(BadInput) as e:
        run_batch(lambda: stand_in_pipeline, other)
    assert e.value.code == "state_mismatch"


def test_geoparquet_output_in_one_crs(stand_in_pipeline, tmp_path):
    utm = make_geotiff(tmp_path / "utm.tif", 256, 256, discs=[(128, 128, 60)])
    # the same kind of scene in Web Mercator, somewhere else
    merc = make_geotiff(
        tmp_path / "merc.tif",
        256,
        256,
        discs=[(100, 150, 50)],
        crs="EPSG:3857",
        origin=(1669792.0, 5621521.0),
        pixel_size=2.0,
    )
    out = tmp_path / "answers.parquet"
    summary = run_batch(lambda: stand_in_pipeline, _job([utm, merc], out))
    assert summary.done == 2 and summary.crs == "EPSG:32633"
    assert sorted(Path(p).name for p in summary.outputs) == [
        "answers.parquet",
        "answers.prompt_boxes.parquet",
        "answers.prompt_points.parquet",
    ]
    table = pq.read_table(out)
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert geo["columns"]["geometry"]["crs"]["id"] == {"authority": "EPSG", "code": 32633}
    rows = table.to_pylist()
    assert {r["raster"] for r in rows} == {str(utm), str(merc)}
    m = next(r for r in rows if r["raster"] == str(merc))
    from pyproj import Transformer

    # the Mercator disc's centre, taken to UTM 33N, is where the reprojected feature is
    cx, cy = 1669792.0 + 100 * 2.0, 5621521.0 - 150 * 2.0
    ux, uy = Transformer.from_crs("EPSG:3857", "EPSG:32633", always_xy=True).transform(cx, cy)
    centroid = shapely.from_wkb(m["geometry"]).centroid
    assert centroid.distance(shapely.Point(ux, uy)) < 5.0
    # areas are measured in each raster's own CRS (Mercator metres are not ground metres)
    assert m["area_m2"] == pytest.approx(np.pi * 50**2 * 4.0, rel=0.02)

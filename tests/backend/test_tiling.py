"""Tiling of big rasters: grid math, seamless merge, resume, memory bounded by the tile.

The end-to-end tests run the real pipeline code with the tiny fitted reasoner (it always answers one box
in the middle of the tile) and a threshold stand-in for SAM2 (think2seg.testing.stand_in.StandInSegmenter: the dark
"water" discs of the synthetic scene), so the expected mask is known exactly in raster pixels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from shapely.geometry import box
from think2seg.errors import BadInput, Cancelled
from think2seg.georef import RasterTile
from think2seg.polygons import mask_to_multipolygon
from think2seg.testing.scenes import make_geotiff
from think2seg.testing.stand_in import StandInSegmenter
from think2seg.tiling import (
    Piece,
    TileGrid,
    Tiling,
    axis_cores,
    axis_offsets,
    clip_to_core,
    dissolve,
    make_grid,
    merge_pieces,
    segment_raster_tiled,
)

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / ".cache" / "tiny-models"
PIXEL = 0.5  # metres, make_geotiff's default
DISC = (220.0, 220.0, 100.0)  # centre x, y and radius in raster pixels: across all four tiles below


# -- grid math -------------------------------------------------------------------------------------------------
def _check_partition(specs, width, height):
    cover = np.zeros((height, width), dtype=np.int32)
    for s in specs:
        x0, y0, x1, y1 = s.core
        wx, wy, ww, wh = s.window
        assert wx <= x0 < x1 <= wx + ww and wy <= y0 < y1 <= wy + wh, "a core lies inside its window"
        assert 0 <= wx and wx + ww <= width and 0 <= wy and wy + wh <= height
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all(), "cores partition the raster: no gap, no double"


def test_axis_offsets_and_cores():
    assert axis_offsets(100, 256, 224) == [0]
    assert axis_offsets(256, 256, 224) == [0]
    assert axis_offsets(1000, 256, 224) == [0, 224, 448, 672, 744]
    cores = axis_cores([0, 224, 448, 672, 744], 256, 1000)
    # the middle of each overlap: (224 + 256) // 2 = 240, ..., last overlap [744, 928) -> 836
    assert cores == [(0, 240), (240, 464), (464, 688), (688, 836), (836, 1000)]


@pytest.mark.parametrize(
    "width,height,tile,overlap,scale",
    [
        (1000, 700, 256, 32, 1.0),
        (256, 256, 256, 64, 1.0),
        (257, 100, 256, 0, 1.0),
        (100, 80, 256, 32, 1.0),
        (5000, 3001, 512, 128, 3.7),
        (999, 1001, 128, 64, 1.0),
        (4096, 4096, 1024, 128, 0.5),
    ],
)
def test_grid_partitions_and_sizes(width, height, tile, overlap, scale):
    specs = make_grid(width, height, tile, overlap, scale)
    _check_partition(specs, width, height)
    win = round(tile * scale)
    for s in specs:
        wx, wy, ww, wh = s.window
        assert ww == min(win, width) and wh == min(win, height), "tiles are full-sized unless the raster is smaller"
        assert abs(s.out_shape[0] - wh / scale) <= 1 and abs(s.out_shape[1] - ww / scale) <= 1
    # neighbours overlap by at least the overlap asked for
    xs = sorted({s.window[0] for s in specs})
    for a, b in zip(xs, xs[1:]):
        assert a + win - b >= round(overlap * scale) - 1
    assert len({s.id for s in specs}) == len(specs)


def test_small_raster_is_one_tile():
    (spec,) = make_grid(100, 80, 256, 32)
    assert spec.window == (0, 0, 100, 80) and spec.core == (0, 0, 100, 80) and spec.out_shape == (80, 100)


def test_bad_grid_options():
    with pytest.raises(BadInput):
        make_grid(1000, 1000, 256, 200)
    with pytest.raises(BadInput):
        make_grid(1000, 1000, 16, 0)
    with pytest.raises(BadInput):
        make_grid(1000, 1000, 256, -1)


def test_grid_at_a_target_gsd(tmp_path):
    path = make_geotiff(tmp_path / "g.tif", 2000, 1500, discs=[])
    with rasterio.open(path) as ds:
        native = TileGrid.for_raster(ds, 256, 32)
        coarse = TileGrid.for_raster(ds, 256, 32, gsd=2.0)  # 0.5 m pixels -> 4 raster pixels per tile pixel
    assert native.scale == 1.0 and len(native.tiles) == 9 * 7
    assert coarse.scale == pytest.approx(4.0)
    assert coarse.tiles[0].window[2:] == (1024, 1024) and coarse.tiles[0].out_shape == (256, 256)
    assert len(coarse.tiles) == 3 * 2  # x: 0, 896, 976 (the last flush with the edge); y: 0, 476
    _check_partition(coarse.tiles, 2000, 1500)


def test_the_next_batch_is_read_while_this_one_is_answered(tmp_path, monkeypatch):
    """read_ahead: batch k+1 is read on the reader thread, under the caller's GDAL settings, before the caller
    asks for it; the tiles are those read_window gives, and `prepare` made their inputs on that thread (none
    for a tile without data); a read error surfaces for its own batch; and closing waits for a read under way
    (the caller may close the dataset right after)."""
    import threading
    import time

    import think2seg.tiling.read as tiling

    path = make_geotiff(tmp_path / "g.tif", 600, 500, discs=[])
    seen, started, finished, fail = [], threading.Event(), threading.Event(), set()
    real = tiling.read_window

    def recording(ds, spec, bands=None):
        seen.append((spec.id, threading.current_thread().name, rasterio.env.getenv().get("GDAL_CACHEMAX")))
        if spec.id in fail:
            raise BadInput("corrupt block", code="read_failed")
        if spec.id == slow:
            started.set()
            time.sleep(0.3)
            finished.set()
        return real(ds, spec, bands)

    monkeypatch.setattr(tiling, "read_window", recording)
    with rasterio.Env(GDAL_CACHEMAX=77), rasterio.open(path) as ds:
        grid = TileGrid.for_raster(ds, 256, 32)
        batches = [grid.tiles[k : k + 2] for k in range(0, 6, 2)]
        slow = batches[1][1].id
        prepared = []

        def prepare(tile):
            prepared.append((tile.read["window"], threading.current_thread().name))
            return ("input", tile.read["window"])

        real_has_data = tiling.has_data  # batch 0's second tile stands for one without data
        monkeypatch.setattr(
            tiling, "has_data", lambda t: t.read["window"] != list(batches[0][1].window) and real_has_data(t)
        )
        reads = tiling.read_ahead(ds, batches, prepare=prepare)
        tiles, read_s, inputs = next(reads)
        assert started.wait(5)  # batch 1 is being read: nobody asked for it yet
        assert [t.read["window"] for t in tiles] == [list(s.window) for s in batches[0]] and read_s > 0
        assert np.array_equal(tiles[1].rgb, real(ds, batches[0][1]).rgb)
        assert inputs == [("input", list(batches[0][0].window)), None]
        assert {name for _, name in prepared} == {"think2seg-read_0"}
        reads.close()  # waits for the read under way
        assert finished.is_set()
        assert {(name, cache) for _, name, cache in seen} == {("think2seg-read_0", 77)}
        fail.add(batches[1][0].id)
        reads = tiling.read_ahead(ds, batches)
        assert len(next(reads)[0]) == 2
        with pytest.raises(BadInput, match="corrupt block"):
            next(reads)


# -- merge logic on synthetic masks ----------------------------------------------------------------------------
def _global_mask(width=700, height=500) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    m = (xx - 300) ** 2 + (yy - 250) ** 2 <= 130**2  # a disc across several tiles
    m |= (np.abs(yy - 20 - 0.15 * xx) < 12) & (xx > 20)  # a slanted road across a whole row of tiles
    m |= (xx > 600) & (xx < 690) & (yy > 400) & (yy < 480)  # a field inside one tile
    m[200:300, 300:305] = False  # a thin cut: holes and notches must survive
    return m


def _pieces_from_tiles(mask, specs, simplify):
    pieces = []
    for s in specs:
        x, y, w, h = s.window
        tile = RasterTile(rgb=np.zeros((h, w, 3), np.uint8), transform=Affine.translation(x, y), crs=None)
        geom = mask_to_multipolygon(
            mask[y : y + h, x : x + w], tile.transform, min_area_pixels=0, simplify_pixels=simplify
        )
        for part in clip_to_core(geom, s.core).geoms:  # as tile_entry keeps them: one piece per part
            pieces.append(Piece(part, s.id, 0, 0, 1.0))
    return pieces


@pytest.mark.parametrize("simplify", [0.0, 0.5])
def test_merge_of_synthetic_masks_is_seamless(simplify):
    mask = _global_mask()
    specs = make_grid(mask.shape[1], mask.shape[0], 192, 48)
    assert len(specs) > 6
    whole = RasterTile(rgb=np.zeros(mask.shape + (3,), np.uint8), transform=Affine.identity(), crs=None)
    expected = mask_to_multipolygon(mask, whole.transform, min_area_pixels=0, simplify_pixels=0)
    merged = merge_pieces(_pieces_from_tiles(mask, specs, simplify))
    geoms = [g for g, _ in merged]
    # one feature per connected region, as if the raster had been one tile
    assert len(geoms) == len(expected.geoms) == 3
    for g in geoms:
        assert len(g.geoms) == 1, "no seam splits a region"
    union = shapely.union_all(geoms)
    assert union.area == pytest.approx(sum(g.area for g in geoms)), "no doubles: features do not overlap"
    if simplify == 0:
        assert union.symmetric_difference(expected).area == pytest.approx(0.0, abs=1e-6)
        assert union.area == pytest.approx(mask.sum())
    else:
        assert union.symmetric_difference(expected).area < 0.01 * expected.area
    # the disc spans several tiles and says so
    disc = max(merged, key=lambda gm: gm[0].area)
    assert len(disc[1]) >= 4


def test_dissolve_joins_shared_edges_and_overlaps_only():
    a = Piece(shapely.MultiPolygon([box(0, 0, 10, 10)]), "r0c0", 0, 0)
    b = Piece(shapely.MultiPolygon([box(10, 2, 20, 8)]), "r0c1", 0, 0)  # shares part of the border x = 10
    c = Piece(shapely.MultiPolygon([box(20, 8, 30, 18)]), "r1c2", 0, 0)  # touches b at a corner only
    d = Piece(shapely.MultiPolygon([box(2, 2, 12, 8)]), "r0c0", 0, 1)  # same tile, another instance, overlapping
    e = Piece(shapely.MultiPolygon([box(10, 0, 20, 2)]), "r0c1", 1, 0)  # another query
    f = Piece(shapely.MultiPolygon([box(40, 0, 50, 2)]), "r0c3", 0, 0)  # far away
    assert dissolve([a, b, c, d, e, f]) == [[0, 1, 3], [2], [4], [5]]


# -- end to end with the tiny reasoner and a stand-in SAM2 ----------------------------------------------------
@pytest.fixture(scope="module")
def pipeline(tiny_models_dir):
    from think2seg.pipeline import Pipeline
    from think2seg.reasoner import Reasoner

    return Pipeline(Reasoner.from_pretrained(str(TINY / "reasoner"), device="cpu"), StandInSegmenter())


class Recorder:
    """Wraps a pipeline and records which tile windows went to the model."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.windows: list[tuple] = []

    def __getattr__(self, name):
        return getattr(self.pipeline, name)

    def segment_tiles(self, tiles, queries, options=None, **kw):
        self.windows += [tuple(t.read["window"]) for t in tiles]
        return self.pipeline.segment_tiles(tiles, queries, options, **kw)


@pytest.fixture(scope="module")
def disc_raster(tmp_path_factory):
    return make_geotiff(tmp_path_factory.mktemp("tiling") / "disc.tif", 440, 440, discs=[DISC])


@pytest.fixture(scope="module")
def full_run_progress(pipeline, disc_raster):
    rec = Recorder(pipeline)
    calls = []
    res = segment_raster_tiled(
        rec,
        disc_raster,
        ["the water bodies"],
        {"max_reasoning_tokens": 128},
        tiling=Tiling(256, 32, batch_size=2),
        progress=lambda *call: calls.append(call),
    )
    return res, rec.windows, calls


@pytest.fixture(scope="module")
def full_run(full_run_progress):
    return full_run_progress[:2]


def test_progress_moves_per_tile_within_a_batch_and_names_each_phase(full_run_progress):
    """Issue 23 item 9: progress moved once per batch (a 4-tile batch: 0 until the end)."""
    *_, calls = full_run_progress
    tokens = [c for c in calls if "token" in c[2]]  # the reasoner's, as it writes
    calls = [c for c in calls if "token" not in c[2]]
    assert calls == [
        (0, 4, "disc.tif: 4 tiles"),
        (0, 4, "disc.tif: reasoning on tiles 1-2 of 4"),
        (1, 4, "disc.tif: tile 1 of 4"),
        (2, 4, "disc.tif: tile 2 of 4"),
        (2, 4, "disc.tif: reasoning on tiles 3-4 of 4"),
        (3, 4, "disc.tif: tile 3 of 4"),
        (4, 4, "disc.tif: tile 4 of 4"),
        (4, 4, "disc.tif: merging the tiles"),
    ]
    # each batch's tokens move the bar up to half a tile past the batch's start, never back
    first = [c for c in tokens if "tiles 1-2" in c[2]]
    second = [c for c in tokens if "tiles 3-4" in c[2]]
    assert first and second and len(first) + len(second) == len(tokens)
    assert first[0][2] == "disc.tif: reasoning on tiles 1-2 of 4, 1 token" and first[1][2].endswith(", 2 tokens")
    for batch, start in ((first, 0), (second, 2)):
        done = [d for d, _, _ in batch]
        assert done == sorted(done) and start < done[0] and done[-1] <= start + 0.5


def test_tiled_run_merges_a_disc_across_four_tiles(full_run):
    res, windows = full_run
    assert res.stats["tiles"] == 4 and len(windows) == 4
    assert len(res.features) == 1, "one polygon for a disc crossing every tile border"
    f = res.features[0]
    assert len(f.geometry.geoms) == 1 and f.geometry.is_valid
    assert f.tiles == ["r0c0", "r0c1", "r1c0", "r1c1"] and f.tile in f.tiles
    expected = math.pi * DISC[2] ** 2 * PIXEL**2
    assert f.area == pytest.approx(expected, rel=0.01)
    cx, cy = res.grid.transform @ (DISC[0], DISC[1])
    assert f.geometry.centroid.distance(shapely.Point(cx, cy)) < 2 * PIXEL
    # each tile's prompt box (the middle of the tile) lies in its own core: kept once, never twice
    assert len(res.instances) == 4 and {i["tile"] for i in res.instances} == {"r0c0", "r0c1", "r1c0", "r1c1"}


def test_to_dict_is_the_segment_answer(full_run):
    res, _ = full_run
    d = json.loads(json.dumps(res.to_dict()))
    for key in (
        "query",
        "status",
        "message",
        "reasoning",
        "answer",
        "instances",
        "mask",
        "crs",
        "epsg",
        "area_unit",
        "read",
        "timings",
        "models",
        "created",
        "tiles",
    ):
        assert key in d
    assert d["status"] == "ok" and d["epsg"] == 32633 and d["area_unit"] == "m2"
    feat = d["mask"]["features"][0]
    assert feat["properties"]["tile"] in feat["properties"]["tiles"]
    assert d["read"]["mode"] == "tiled" and d["read"]["tiles"] == 4
    assert len(d["tiles"]) == 4 and all(t["reasoning"] for t in d["tiles"])
    assert d["instances"][0]["tile"] and len(d["instances"][0]["box_crs"]) == 5


def test_resume_after_cancel_redoes_no_tile(pipeline, disc_raster, full_run, tmp_path):
    state = tmp_path / "state"
    first = Recorder(pipeline)
    done = []
    with pytest.raises(Cancelled):
        segment_raster_tiled(
            first,
            disc_raster,
            ["the water bodies"],
            {"max_reasoning_tokens": 128},
            tiling=Tiling(256, 32, batch_size=1),
            state_path=state,
            progress=lambda n, total, msg: done.append(n),
            cancelled=lambda: done[-1] >= 2,
        )
    assert len(first.windows) == 2
    saved = json.loads((state / "state.json").read_text())
    assert len(saved["finished"]) == 2
    second = Recorder(pipeline)
    res = segment_raster_tiled(
        second,
        disc_raster,
        ["the water bodies"],
        {"max_reasoning_tokens": 128},
        tiling=Tiling(256, 32, batch_size=1),
        state_path=state,
    )
    assert len(second.windows) == 2 and not set(first.windows) & set(second.windows), "no finished tile redone"
    assert res.stats["tiles_resumed"] == 2 and res.stats["tiles_run"] == 2
    full, _ = full_run
    assert len(res.features) == len(full.features) == 1
    a, b = res.features[0].geometry, full.features[0].geometry
    assert a.symmetric_difference(b).area == 0.0, "the resumed run ends with the same output"
    assert shapely.normalize(a).equals_exact(shapely.normalize(b), 1e-6)
    assert res.features[0].tiles == full.features[0].tiles
    # a different query cannot resume this state
    with pytest.raises(BadInput) as e:
        segment_raster_tiled(pipeline, disc_raster, ["roads"], tiling=Tiling(256, 32), state_path=state)
    assert e.value.code == "state_mismatch"


def test_memory_is_bounded_by_the_tile(pipeline, tmp_path, monkeypatch):
    path = make_geotiff(tmp_path / "big.tif", 3000, 2600, discs=[(1500, 1300, 200)])
    shapes = []
    real_read = rasterio.io.DatasetReader.read

    def spy(self, *args, **kwargs):
        out = real_read(self, *args, **kwargs)
        shapes.append(out.shape)
        return out

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    res = segment_raster_tiled(
        pipeline, path, ["water"], {"max_reasoning_tokens": 128}, tiling=Tiling(256, 32), max_tiles=2
    )
    # step 256 - 32 = 224: columns 1 + ceil((3000 - 256) / 224) = 14, rows 1 + ceil((2600 - 256) / 224) = 12
    assert res.stats["tiles"] == 14 * 12 and res.stats["tiles_run"] == 2
    assert shapes and max(int(np.prod(s[-2:])) for s in shapes) == 256 * 256
    assert res.stats["max_read_pixels"] == 256 * 256
    shapes.clear()
    coarse = segment_raster_tiled(
        pipeline, path, ["water"], {"max_reasoning_tokens": 128}, tiling=Tiling(256, 32, 4.0), max_tiles=1
    )
    assert coarse.grid.scale == pytest.approx(8.0) and coarse.stats["max_read_pixels"] == 256 * 256
    assert max(int(np.prod(s[-2:])) for s in shapes) == 256 * 256, "a coarse gsd reads tile-sized arrays too"


def test_nodata_tiles_skip_the_model(pipeline, tmp_path):
    path = tmp_path / "half.tif"
    make_geotiff(path, 512, 256, discs=[(400, 128, 60)], nodata=0)
    with rasterio.open(path, "r+") as ds:
        ds.write(np.zeros((3, 256, 256), np.uint8), window=rasterio.windows.Window(0, 0, 256, 256))
    rec = Recorder(pipeline)
    res = segment_raster_tiled(rec, path, ["water"], {"max_reasoning_tokens": 128}, tiling=Tiling(256, 0))
    assert res.stats["tiles"] == 2 and res.stats["tiles_nodata"] == 1 and len(rec.windows) == 1
    assert [r["status"] for r in res.tile_records] == ["nodata", "ok"]
    assert len(res.features) == 1


@pytest.mark.slow
def test_real_tiny_models_on_a_tiled_raster(tmp_path, tiny_models_dir):
    """The whole stack with the tiny SAM2 too (random weights: the masks are noise, the plumbing is real)."""
    from think2seg.pipeline import Pipeline

    p = Pipeline.from_pretrained(str(TINY / "reasoner"), str(TINY / "sam2.1_hiera_t.pt"), device="cpu")
    path = make_geotiff(tmp_path / "r.tif", 400, 300, discs=[(200, 150, 80)])
    res = segment_raster_tiled(
        p, path, ["the water bodies", "the fields"], {"max_reasoning_tokens": 128}, tiling=Tiling(256, 32, batch_size=2)
    )
    d = res.to_dict()
    assert res.stats["tiles"] == 4 and len(d["tiles"]) == 8  # 2 x 2 tiles, each asked both queries
    assert {r["status"] for r in d["tiles"]} <= {"ok", "empty"}
    for qi in (0, 1):
        geoms = [f.geometry for f in res.features if f.query_index == qi]
        if geoms:  # no doubles: a query's features never overlap
            assert shapely.union_all(geoms).area == pytest.approx(sum(g.area for g in geoms))
    assert all(f.geometry.is_valid for f in res.features)
    json.dumps(d)

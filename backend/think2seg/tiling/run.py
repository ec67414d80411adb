"""Answering tiles: the one way a read batch of tiles is asked its queries (`answer_tiles`), used by the local
run (`segment_raster_tiled`: batch, service jobs) and by the Ray actor (`think2seg.cluster.TileActor`).

Memory and resumability
    Windows are read one batch at a time (`batch_size` tiles, each asked every query in one batched
    `generate`; the next batch is read, and resized to the model frame, on a thread while this one is
    answered: `read_ahead`), under a bounded GDAL block cache, so memory follows the tile (two batches at
    most), not the raster. Each finished tile is written at once as a shard (`STATE/tiles/<tile>.json`)
    and listed in `STATE/state.json`; a rerun with the same `state_path` and the same raster, queries and
    options skips the finished tiles and ends with the same output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, closing, nullcontext
from pathlib import Path

import shapely

from ..errors import BadInput, Cancelled
from ..georef import RasterTile, open_raster
from ..options import SegmentOptions, check_query, tokens_text
from ..result import TiledResult, utc_now
from .grid import TileGrid, TileSpec, Tiling
from .merge import clip_to_core, in_core, merge_shards
from .read import GDAL_CACHE_MB, has_data, read_ahead
from .state import TileState, fingerprint, raster_identity

ProgressFn = Callable[[int, int, str], None]


def tile_entry(spec: TileSpec, query_index: int, result) -> dict:
    """One (tile, query) answer as kept in a shard: mask pieces clipped to the core (raster pixels, WKB),
    the prompts whose anchor (box centre, or the points' mean without a box) lies in the core, the reasoning.
    The result's geometry must be in the raster's pixel frame (`segment_tiles(..., geometry_frame="raster_pixels")`)."""
    if result.geometry_frame != "raster_pixels":
        raise ValueError("tile_entry needs instance geometry in raster pixels (geometry_frame='raster_pixels')")
    pieces, instances = [], []
    for inst in result.instances:
        piece = clip_to_core(inst.geometry, spec.core)
        for poly in piece.geoms:  # one piece per connected part: features are connected regions
            pieces.append(
                {"instance": inst.instance, "score": float(inst.score), "wkb": shapely.to_wkb(poly, hex=True)}
            )
        if in_core(*inst.anchor_pixel, spec.core):
            d = inst.to_dict()
            d["points_in_core"] = [bool(in_core(px, py, spec.core)) for px, py in inst.points_pixel]
            instances.append(d)
    return {
        "query_index": query_index,
        "query": result.query,
        "status": result.status,
        "message": result.message,
        "reasoning": result.reasoning,
        "answer": result.answer,
        "pieces": pieces,
        "instances": instances,
        "view_id": getattr(result, "view_id", ""),
        "timings": {k: round(float(v), 6) for k, v in result.timings.items()},
        "created": result.created,
    }


def nodata_entry(query_index: int, query: str) -> dict:
    return {
        "query_index": query_index,
        "query": query,
        "status": "nodata",
        "message": "The tile holds no data; it was not sent to the model.",
        "reasoning": "",
        "answer": "",
        "pieces": [],
        "instances": [],
        "timings": {},
        "created": utc_now(),
    }


def read_record(tile: RasterTile, nodata: bool) -> dict:
    """How a tile was read, as its shard keeps it."""
    return {"read": tile.read, "read_pixels": int(tile.rgb.shape[0] * tile.rgb.shape[1]), "nodata": nodata}


def answer_tiles(
    pipeline,
    specs: Sequence[TileSpec],
    tiles: Sequence[RasterTile],
    pairs: Sequence[tuple[int, int, str]],
    options,
    cancelled: Callable[[], bool] | None = None,
    inputs: Sequence | None = None,
    read_s: float = 0.0,
    models_lock: AbstractContextManager | None = None,
    on_tile: Callable[[int], None] | None = None,
    on_token: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """The one way read tiles are answered (the local run and the Ray actor alike): `pairs` are (tile index
    into `specs`/`tiles`, query index, query); all the pairs of tiles with data go to the models in one
    batched call (the pairs of one tile side by side), and each pair gets its shard entry (`tile_entry`, or
    `nodata_entry` for a tile without data), in the order of `pairs`. `inputs`: the tiles' model inputs made
    ahead (`read_tiles`), one per tile; without them the pipeline makes them. `read_s`: seconds spent reading
    each tile, shared among its pairs' timings. `models_lock` is held around the model call only (an actor
    running calls at once lets one at a time use the models). `on_tile(ti)` is called as tile `ti`'s last pair
    is answered (a tile without data at once): progress tile by tile within the batch; `on_token(n, budget)` as
    the reasoner writes (Pipeline.segment_tiles)."""
    live = sorted((k for k, (ti, _, _) in enumerate(pairs) if has_data(tiles[ti])), key=lambda k: pairs[k][0])
    asked = {ti: sum(1 for t, _, _ in pairs if t == ti) for ti, _, _ in pairs}
    results = []
    extra = {}
    if on_tile is not None:
        for ti in dict.fromkeys(ti for ti, _, _ in pairs):
            if not has_data(tiles[ti]):
                on_tile(ti)
        left = {ti: sum(1 for k in live if pairs[k][0] == ti) for ti in asked}

        def on_pair(j: int) -> None:
            ti = pairs[live[j]][0]
            left[ti] -= 1
            if left[ti] == 0:
                on_tile(ti)

        extra["on_pair"] = on_pair
    if on_token is not None:
        extra["on_token"] = on_token
    if live:
        with models_lock if models_lock is not None else nullcontext():
            results = pipeline.segment_tiles(
                [tiles[pairs[k][0]] for k in live],
                [pairs[k][2] for k in live],
                options,
                cancelled=cancelled,
                geometry_frame="raster_pixels",
                inputs=[inputs[pairs[k][0]] for k in live] if inputs is not None else None,
                **extra,
            )
    answered = dict(zip(live, results))
    entries = []
    for k, (ti, qi, q) in enumerate(pairs):
        r = answered.get(k)
        if r is None:
            entries.append(nodata_entry(qi, q))
            continue
        r.timings = {"read": read_s / asked[ti], **r.timings}
        entries.append(tile_entry(specs[ti], qi, r))
    return entries


def run_tiles(
    pipeline,
    specs: Sequence[TileSpec],
    tiles: Sequence[RasterTile],
    read_s: float,
    queries: Sequence[str],
    options,
    cancelled: Callable[[], bool] | None = None,
    inputs: Sequence | None = None,
    on_tile: Callable[[int], None] | None = None,
    on_token: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Ask each of `specs`' tiles (`read_tiles`; `read_s` seconds each) every query in one batched call
    (`answer_tiles`), and return one shard per tile (plain JSON-able data)."""
    pairs = [(k, qi, q) for k in range(len(specs)) for qi, q in enumerate(queries)]
    entries = answer_tiles(
        pipeline, specs, tiles, pairs, options, cancelled, inputs, read_s, on_tile=on_tile, on_token=on_token
    )
    n = len(queries)
    return [
        {"tile": spec.to_dict(), **read_record(tile, not has_data(tile)), "entries": entries[k * n : (k + 1) * n]}
        for k, (spec, tile) in enumerate(zip(specs, tiles))
    ]


#: how far past a batch's start its reasoning moves the bar (in tiles: less than one, so the first answered tile
#: still moves it forward)
REASONING_TILES = 0.5


def tile_progress(progress: ProgressFn | None, before: int, batch: int, total: int, name: str):
    """Report a batch's reasoning now, and return `(on_tile, on_token)`: the first reports each of its tiles as
    answered, the second the reasoner's tokens before that ((None, None) without `progress`)."""
    if not progress:
        return None, None
    first, last = before + 1, before + batch
    span = f"tile {first}" if first == last else f"tiles {first}-{last}"
    progress(before, total, f"{name}: reasoning on {span} of {total}")
    answered = iter(range(first, last + 1))

    def on_tile(_ti: int) -> None:
        n = next(answered, last)
        progress(n, total, f"{name}: tile {n} of {total}")

    def on_token(n: int, budget: int) -> None:
        done = before + REASONING_TILES * min(n, budget) / max(1, budget)
        progress(done, total, f"{name}: reasoning on {span} of {total}, {tokens_text(n)}")

    return on_tile, on_token


def _options(options):
    return options if isinstance(options, SegmentOptions) else SegmentOptions.from_dict(options)


def _queries(queries) -> list[str]:
    qs = [queries] if isinstance(queries, str) else list(queries)
    if not qs:
        raise BadInput("Give at least one query.", code="empty_query")
    return [check_query(q) for q in qs]


def segment_raster_tiled(
    pipeline,
    path: str | os.PathLike,
    queries: str | Sequence[str],
    options=None,
    tiling: Tiling | None = None,
    state_path: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
    cancelled: Callable[[], bool] | None = None,
    max_tiles: int | None = None,
    grid: TileGrid | None = None,
    label: str | None = None,
) -> TiledResult:
    """Answer every query on every tile of a raster of any size; think2seg.tiling.grid says how the grid is
    laid out, .merge how the tiles' answers become seamless features, .state what the state folder holds.

    `options` is a `SegmentOptions` or its dict (`bands`, `max_reasoning_tokens`, `min_area_pixels`);
    `tiling` the `Tiling` (default: `Tiling()`); `grid` the raster's `TileGrid` when the caller already laid
    it out (a batch plans every raster first), so a raster's grid is built once per run. The tiling's
    `batch_size` tiles are read and sent together (each with every query: `batch_size * len(queries)`
    sequences in one `generate`). With `state_path`, finished tiles are kept there and a rerun with the
    same raster, queries and options resumes; without it a temporary folder is used and removed. `progress`
    is called as `progress(done_tiles, total_tiles, message)`: at the start, before each batch's reasoning
    ("reasoning on tiles 5-8 of 20"), as each tile is answered ("tile 6 of 20") and before the merge
    ("merging the tiles", done = total: the result is not ready until this returns); `cancelled()` is
    checked before each batch (and between the batch's pairs): when it turns true, `Cancelled` is raised and
    the finished tiles stay in the state folder. `max_tiles` (benchmarks, previews) stops after that many
    new tiles; the result then covers the finished tiles only. `label`: the raster's name in the progress
    messages (default: its file name; the service gives the client's, not its upload's temporary name).
    Returns a `TiledResult` (its `to_dict()` is the /v1/segment answer).
    """
    opts = _options(options)
    qs = _queries(queries)
    tiling = tiling if tiling is not None else Tiling()
    batch_size = tiling.batch_size
    path = os.fspath(path)
    t_start = time.perf_counter()
    temp = None
    if state_path is None:
        temp = tempfile.mkdtemp(prefix="think2seg-tiles-")
        state_path = temp
    try:
        import rasterio

        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            ds = open_raster(path)
            try:
                if grid is None:
                    grid = tiling.grid(ds)
                elif (grid.width, grid.height) != (ds.width, ds.height):
                    raise ValueError(f"the grid given is of a {grid.width} x {grid.height} raster, not of {path}")
                models = pipeline.provenance(opts)
                state = TileState(state_path, fingerprint(qs, opts, grid, models, raster=raster_identity(path)), grid)
                done_ids = set(state.finished)
                todo = [s for s in grid.tiles if s.id not in done_ids]
                total, resumed = len(grid.tiles), len(grid.tiles) - len(todo)
                if max_tiles is not None:
                    todo = todo[: max(0, int(max_tiles))]
                name = label or Path(path).name
                if progress:
                    progress(
                        resumed,
                        total,
                        f"{name}: {resumed} of {total} tiles already done" if resumed else f"{name}: {total} tiles",
                    )
                max_read, nodata = 0, 0
                batches = [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)]
                with closing(read_ahead(ds, batches, opts.bands, pipeline.prepare)) as reads:
                    for specs, (tiles, read_s, inputs) in zip(batches, reads):
                        if cancelled is not None and cancelled():
                            raise Cancelled(
                                f"The job was cancelled after {len(state.finished)} of {total} tiles; "
                                "run it again with the same state to continue."
                            )
                        on_tile, on_token = tile_progress(progress, len(state.finished), len(specs), total, name)
                        shards = run_tiles(
                            pipeline, specs, tiles, read_s, qs, opts, cancelled, inputs, on_tile, on_token
                        )
                        state.save(shards)
                        max_read = max([max_read] + [s["read_pixels"] for s in shards])
                        nodata += sum(1 for s in shards if s["nodata"])
            finally:
                ds.close()
        if progress:
            progress(total, total, f"{name}: merging the tiles")
        stats = {
            "tiles": total,
            "tiles_run": len(todo),
            "tiles_resumed": resumed,
            "tiles_nodata": nodata,
            "max_read_pixels": max_read,
        }
        result = merge_shards(state.shards(), grid, qs, path, models, opts.min_area_pixels, stats)
        result.timings["total"] = time.perf_counter() - t_start
        return result
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)

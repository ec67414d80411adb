"""Big rasters: a grid of overlapping tiles read by windows, every query on every tile, seamless polygons.

The grid
    Tiles are `tile_size` x `tile_size` pixels *as the model sees them*, overlapping by `overlap` pixels. At
    native resolution a tile pixel is a raster pixel; with `gsd` (the ground sample distance wanted, in the
    raster's CRS units: metres for a projected CRS, pixels for a raster without georeferencing) a tile pixel
    covers `scale = gsd / native pixel size` raster pixels and the window is read resampled (GDAL averages,
    and uses overviews when the file has them). Tiles step by `tile_size - overlap`; the last tile of a row
    or column is moved back to end flush with the raster's edge, so every tile is full-sized (a raster
    smaller than one tile is one tile).

Seamless merge (no seams, no doubles)
    Every tile owns a *core*: the part of its window up to the middle of its overlap with each neighbour
    (at the raster's edge, the edge). Cores partition the raster. Each tile keeps only what falls in its
    core: mask polygons are clipped to the core, prompts are kept where the box centre (points: the point)
    lies in it. Masks are polygonised straight into the raster's pixel frame (`geometry_frame=
    "raster_pixels"`), and clipping and merging happen there, where core borders are whole numbers and the
    geometry is snapped to a 1/256-pixel grid, so the two sides of a border meet exactly.
    The answer to a query is the OR of its instance masks (method.md); its features are the connected
    regions of that answer, as if the raster were one tile: polygons of the same query that share a stretch
    of border or overlap are dissolved into one feature (`parts` lists the tile:instance pieces in it), which
    then goes to the CRS, once, through the raster's geotransform (rotation included). Memory holds
    polygons, never a raster-sized mask.

Memory and resumability
    Windows are read one batch at a time (`batch_size` tiles, each asked every query in one batched
    `generate`; the next batch is read, and resized to the model frame, on a thread while this one is
    answered: `read_ahead`), under a bounded GDAL block cache, so memory follows the tile (two batches at
    most), not the raster. Each finished tile is written at once as a shard (`STATE/tiles/<tile>.json`)
    and listed in `STATE/state.json`; a rerun with the same `state_path` and the same raster, queries and
    options skips the finished tiles and ends with the same output.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from shapely.affinity import affine_transform
from shapely.geometry import MultiPolygon, Polygon, box

from .errors import BadInput, Cancelled
from .georef import RasterTile, area_m2, open_raster, read_tile
from .options import MAX_TILE, MIN_TILE, SegmentOptions, check_query
from .polygons import as_multipolygon
from .result import TiledFeature, TiledResult, utc_now

#: Precision of clipped / merged geometry, in raster pixels (a power of two: exact in binary).
SNAP_PIXELS = 1.0 / 256.0
#: GDAL block cache while reading tiles (MB): bounded so memory follows the tile, not the raster.
GDAL_CACHE_MB = 64
STATE_VERSION = 1

ProgressFn = Callable[[int, int, str], None]


# -- the grid -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TileSpec:
    """One tile: its window and core in raster pixels (x0, y0, x1, y1 half-open), its read size."""

    id: str  # "r{row}c{col}"
    row: int
    col: int
    window: tuple[int, int, int, int]  # col_off, row_off, width, height
    out_shape: tuple[int, int]  # (height, width) as read, = the tile's pixels
    core: tuple[int, int, int, int]  # x0, y0, x1, y1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TileSpec:
        return cls(d["id"], int(d["row"]), int(d["col"]), tuple(int(v) for v in d["window"]),
                   tuple(int(v) for v in d["out_shape"]), tuple(int(v) for v in d["core"]))


def axis_offsets(length: int, window: int, step: int) -> list[int]:
    """Window starts along one axis: a regular step, the last one flush with the end."""
    if length <= window:
        return [0]
    offsets = list(range(0, length - window, step))
    offsets.append(length - window)
    return offsets


def axis_cores(offsets: Sequence[int], window: int, length: int) -> list[tuple[int, int]]:
    """Each window's share of the axis: from the middle of its overlap with the previous window to the
    middle of its overlap with the next one (the axis ends at the ends). The shares partition [0, length)."""
    cuts = [0]
    for prev, cur in zip(offsets[:-1], offsets[1:]):
        cuts.append((cur + min(prev + window, length)) // 2)
    cuts.append(length)
    return list(zip(cuts[:-1], cuts[1:]))


def make_grid(width: int, height: int, tile_size: int = 1024, overlap: int = 128, scale: float = 1.0) -> list[TileSpec]:
    """The tiles of a `width` x `height` raster; `tile_size`/`overlap` in tile pixels, `scale` raster pixels
    per tile pixel (1 = native resolution, 4 = a quarter of the resolution)."""
    check_grid_options(tile_size, overlap, scale)
    win, step = window_and_step(tile_size, overlap, scale)
    specs = []
    xs, ys = axis_offsets(width, win, step), axis_offsets(height, win, step)
    x_cores, y_cores = axis_cores(xs, win, width), axis_cores(ys, win, height)
    for r, (y, (cy0, cy1)) in enumerate(zip(ys, y_cores)):
        h = min(win, height - y)
        for c, (x, (cx0, cx1)) in enumerate(zip(xs, x_cores)):
            w = min(win, width - x)
            out = (max(1, int(round(h / scale))), max(1, int(round(w / scale))))
            specs.append(TileSpec(f"r{r}c{c}", r, c, (x, y, w, h), out, (cx0, cy0, cx1, cy1)))
    return specs


def window_and_step(tile_size: int, overlap: int, scale: float) -> tuple[int, int]:
    """A tile's window side and the step between windows, in raster pixels."""
    return max(1, int(round(tile_size * scale))), max(1, int(round((tile_size - overlap) * scale)))


def tile_count(width: int, height: int, tile_size: int = 1024, overlap: int = 128, scale: float = 1.0) -> int:
    """len(make_grid(...)) without building the grid: callers bound a job before it allocates anything."""
    win, step = window_and_step(tile_size, overlap, scale)

    def along(length: int) -> int:  # = len(axis_offsets(length, win, step))
        return 1 if length <= win else -(-(length - win) // step) + 1

    return along(width) * along(height)


def check_grid_options(tile_size: int, overlap: int, scale: float = 1.0) -> None:
    if tile_size < MIN_TILE or tile_size > MAX_TILE:
        raise BadInput(f"tile_size must be between {MIN_TILE} and {MAX_TILE} pixels (got {tile_size}).", code="bad_options")
    if overlap < 0 or overlap > tile_size // 2:
        raise BadInput(f"overlap must be between 0 and half the tile size, {tile_size // 2} (got {overlap}).",
                       code="bad_options")
    if not (scale > 0 and math.isfinite(scale)):
        raise BadInput("gsd must be a positive number.", code="bad_options")


def native_pixel_size(transform: Affine) -> float:
    """Side of one raster pixel in CRS units (rotation and shear included: the root of the pixel's area)."""
    return math.sqrt(abs(transform.a * transform.e - transform.b * transform.d)) or 1.0


@dataclass
class TileGrid:
    """A raster's tiling: its size, georeferencing and tiles."""

    width: int
    height: int
    transform: Affine  # raster pixel -> CRS
    crs: CRS | None
    tile_size: int
    overlap: int
    gsd: float | None
    scale: float  # raster pixels per tile pixel
    tiles: list[TileSpec]

    @classmethod
    def for_raster(cls, ds, tile_size: int = 1024, overlap: int = 128, gsd: float | None = None) -> TileGrid:
        transform = ds.transform  # identity for an image without georeferencing: then gsd is in pixels
        native = native_pixel_size(transform)
        scale = 1.0 if gsd is None else float(gsd) / native
        check_grid_options(tile_size, overlap, scale)
        tiles = make_grid(ds.width, ds.height, tile_size, overlap, scale)
        return cls(ds.width, ds.height, transform, ds.crs if ds.crs else None, tile_size, overlap, gsd, scale, tiles)

    @property
    def pixel_area(self) -> float:
        """Area of one raster pixel in CRS units squared."""
        t = self.transform
        return abs(t.a * t.e - t.b * t.d) or 1.0

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "transform": list(self.transform)[:6],
                "crs": self.crs.to_wkt() if self.crs else None, "tile_size": self.tile_size, "overlap": self.overlap,
                "gsd": self.gsd, "scale": self.scale, "tiles": len(self.tiles)}

    def to_crs(self, geom_px):
        """Raster-pixel geometry -> CRS geometry."""
        t = self.transform
        return affine_transform(geom_px, [t.a, t.b, t.d, t.e, t.c, t.f])


def read_window(ds, spec: TileSpec, bands: list[int] | None = None) -> RasterTile:
    """Read exactly one tile's window (resampled to its tile size) and nothing more."""
    x, y, w, h = spec.window
    return read_tile(ds, bands=bands, window=Window(x, y, w, h), out_shape=spec.out_shape)


# -- per-tile results: what each tile keeps of its answers ---------------------------------------------------
def clip_to_core(geom_px, core: tuple[int, int, int, int]) -> MultiPolygon:
    """A raster-pixel geometry cut to a tile's core and snapped to the shared pixel grid."""
    if geom_px.is_empty:
        return MultiPolygon()
    clipped = shapely.intersection(geom_px, box(*core))
    return as_multipolygon(shapely.set_precision(clipped, SNAP_PIXELS))


def _in_core(x: float, y: float, core) -> bool:
    return core[0] <= x < core[2] and core[1] <= y < core[3]


def tile_entry(grid: TileGrid, spec: TileSpec, query_index: int, result) -> dict:
    """One (tile, query) answer as kept in a shard: mask pieces clipped to the core (raster pixels, WKB),
    the prompts whose anchor (box centre, or the points' mean without a box) lies in the core, the reasoning.
    The result's geometry must be in the raster's pixel frame (`segment_tiles(..., geometry_frame="raster_pixels")`)."""
    if result.geometry_frame != "raster_pixels":
        raise ValueError("tile_entry needs instance geometry in raster pixels (geometry_frame='raster_pixels')")
    pieces, instances = [], []
    for inst in result.instances:
        piece = clip_to_core(inst.geometry, spec.core)
        for poly in piece.geoms:  # one piece per connected part: features are connected regions
            pieces.append({"instance": inst.instance, "score": float(inst.score), "wkb": shapely.to_wkb(poly, hex=True)})
        if _in_core(*inst.anchor_pixel, spec.core):
            d = inst.to_dict()
            d["points_in_core"] = [bool(_in_core(px, py, spec.core)) for px, py in inst.points_pixel]
            instances.append(d)
    return {
        "query_index": query_index, "query": result.query, "status": result.status, "message": result.message,
        "reasoning": result.reasoning, "answer": result.answer, "pieces": pieces, "instances": instances,
        "view_id": getattr(result, "view_id", ""),
        "timings": {k: round(float(v), 6) for k, v in result.timings.items()}, "created": result.created,
    }


def nodata_entry(query_index: int, query: str) -> dict:
    return {"query_index": query_index, "query": query, "status": "nodata",
            "message": "The tile holds no data; it was not sent to the model.", "reasoning": "", "answer": "",
            "pieces": [], "instances": [], "timings": {}, "created": utc_now()}


def has_data(tile: RasterTile) -> bool:
    """Whether a tile has any valid pixel (a tile all no-data is not asked)."""
    return tile.valid is None or bool(tile.valid.any())


def read_tiles(ds, specs: Sequence[TileSpec], bands: list[int] | None = None,
               prepare: Callable[[RasterTile], object] | None = None) -> tuple[list[RasterTile], float, list]:
    """Read `specs`' windows: the tiles, the seconds spent per tile, and the tiles' model inputs: `prepare(tile)`
    (the pipeline's) for each tile with data, None for the others (all None without `prepare`). The local
    loop calls it through `read_ahead`, a Ray actor directly."""
    t0 = time.perf_counter()
    tiles = [read_window(ds, spec, bands) for spec in specs]
    read_s = (time.perf_counter() - t0) / max(1, len(specs))
    return tiles, read_s, [prepare(t) if prepare is not None and has_data(t) else None for t in tiles]


def read_ahead(ds, batches: Sequence[Sequence[TileSpec]], bands: list[int] | None = None,
               prepare: Callable[[RasterTile], object] | None = None) -> Iterator[tuple]:
    """Each batch's `read_tiles` (tiles, read_s, inputs), in order, the next batch read on a thread while the
    caller works on this one: GDAL decodes (warps, fetches over the network) the next windows, and `prepare`
    makes their model inputs (the model-frame resize), while the model answers this batch. One thread reads,
    under the caller's GDAL settings; the caller must not use `ds` until this generator is closed (closing it
    waits for a read under way)."""
    import rasterio

    env = rasterio.env.getenv() if rasterio.env.hasenv() else {}

    def read(specs):
        with rasterio.Env(**env):
            return read_tiles(ds, specs, bands, prepare)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="think2seg-read") as pool:
        ahead = pool.submit(read, batches[0]) if batches else None
        for k in range(len(batches)):
            done = ahead.result()
            ahead = pool.submit(read, batches[k + 1]) if k + 1 < len(batches) else None
            yield done


def run_tiles(pipeline, grid: TileGrid, specs: Sequence[TileSpec], tiles: Sequence[RasterTile], read_s: float,
              queries: Sequence[str], options, cancelled: Callable[[], bool] | None = None,
              inputs: Sequence | None = None) -> list[dict]:
    """Ask each of `specs`' tiles (`read_tiles`; `read_s` seconds each) every query in one batched call, and
    return one shard per tile (plain JSON-able data). `inputs`: the tiles' model inputs made ahead
    (`read_ahead`), one per tile; without them the pipeline makes them."""
    live = [k for k, t in enumerate(tiles) if has_data(t)]
    pair_tiles = [tiles[k] for k in live for _ in queries]
    pair_queries = [q for _ in live for q in queries]
    pair_inputs = [inputs[k] for k in live for _ in queries] if inputs is not None else None
    results = pipeline.segment_tiles(pair_tiles, pair_queries, options, cancelled=cancelled,
                                     geometry_frame="raster_pixels", inputs=pair_inputs) if pair_tiles else []
    shards = []
    it = iter(results)
    for k, (spec, tile) in enumerate(zip(specs, tiles)):
        entries = []
        for qi, q in enumerate(queries):
            if k in live:
                r = next(it)
                r.timings = {"read": read_s / len(queries), **r.timings}
                entries.append(tile_entry(grid, spec, qi, r))
            else:
                entries.append(nodata_entry(qi, q))
        shards.append({"tile": spec.to_dict(), "read": tile.read, "read_pixels": int(tile.rgb.shape[0] * tile.rgb.shape[1]),
                       "nodata": k not in live, "entries": entries})
    return shards


# -- merging pieces across tile borders ----------------------------------------------------------------------
@dataclass
class Piece:
    """A connected part of one tile's instance mask inside that tile's core (raster pixels)."""

    geometry: Polygon | MultiPolygon
    tile: str
    query_index: int
    instance: int
    score: float = 0.0


def dissolve(pieces: Sequence[Piece]) -> list[list[int]]:
    """Groups of piece indexes to merge: pieces of the same query that share a stretch of border (across
    tiles) or overlap (two instances of one tile); a corner alone does not join. Every piece is in exactly
    one group."""
    n = len(pieces)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if n > 1:
        geoms = np.array([p.geometry for p in pieces], dtype=object)
        tree = shapely.STRtree(geoms)
        a, b = tree.query(geoms, predicate="intersects")
        queries = np.array([p.query_index for p in pieces])
        keep = (a < b) & (queries[a] == queries[b])
        a, b = a[keep], b[keep]
        if len(a):
            shared = shapely.length(shapely.intersection(geoms[a], geoms[b])) > 0
            for i, j in zip(a[shared], b[shared]):
                ri, rj = find(int(i)), find(int(j))
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def merge_pieces(pieces: Sequence[Piece], min_area_pixels: float = 0.0) -> list[tuple[MultiPolygon, list[int]]]:
    """Dissolved geometries (raster pixels) with the pieces each is made of; specks under `min_area_pixels`
    (raster pixels) after merging are dropped."""
    out = []
    for group in dissolve(pieces):
        geom = pieces[group[0]].geometry if len(group) == 1 else shapely.union_all(
            [pieces[i].geometry for i in group], grid_size=SNAP_PIXELS)
        geom = as_multipolygon(geom)
        if geom.is_empty or geom.area < min_area_pixels:
            continue
        out.append((geom, group))
    return out


def merge_shards(shards: Iterable[dict], grid: TileGrid, queries: Sequence[str], source: str, models: dict,
                 min_area_pixels: float = 0.0, stats: dict | None = None) -> TiledResult:
    """The raster's answer from its tiles' shards (any order): pieces dissolved across core borders."""
    t0 = time.perf_counter()
    pieces: list[Piece] = []
    records, instances = [], []
    timings: dict[str, float] = {}
    reasoning: dict[tuple[str, int], str] = {}
    order = {s.id: k for k, s in enumerate(grid.tiles)}
    for shard in sorted(shards, key=lambda s: order.get(s["tile"]["id"], 0)):
        spec = TileSpec.from_dict(shard["tile"])
        for e in shard["entries"]:
            qi = int(e["query_index"])
            reasoning[(spec.id, qi)] = e["reasoning"]
            records.append({"tile": spec.id, "window": list(spec.window), "query": e["query"], "status": e["status"],
                            "message": e["message"], "reasoning": e["reasoning"], "answer": e["answer"],
                            "instances": len(e["instances"]), "view_id": e.get("view_id", "")})
            for inst in e["instances"]:
                instances.append({**inst, "tile": spec.id, "query": e["query"]})
            for p in e["pieces"]:
                pieces.append(Piece(shapely.from_wkb(p["wkb"]), spec.id, qi, int(p["instance"]), float(p["score"])))
            for k, v in e.get("timings", {}).items():
                timings[k] = timings.get(k, 0.0) + float(v)
    features = []
    counters = [0] * len(queries)
    min_area = min_area_pixels * grid.scale * grid.scale
    for geom_px, group in merge_pieces(pieces, min_area):
        parts = [pieces[i] for i in group]
        areas = np.array([p.geometry.area for p in parts])
        main = parts[int(np.argmax(areas))]
        qi = main.query_index
        geom = as_multipolygon(grid.to_crs(geom_px))
        features.append(TiledFeature(
            query=queries[qi], query_index=qi, instance=counters[qi], geometry=geom,
            area=area_m2(geom, grid.crs, grid.pixel_area) if grid.crs is not None else float(geom_px.area),
            score=float(np.average([p.score for p in parts], weights=areas if areas.sum() > 0 else None)),
            tile=main.tile, tiles=sorted({p.tile for p in parts}, key=lambda t: order.get(t, 0)),
            parts=list(dict.fromkeys(f"{p.tile}:{p.instance}" for p in parts)), reasoning=reasoning.get((main.tile, qi), ""),
            geometry_pixels=geom_px,
        ))
        counters[qi] += 1
    timings["merge"] = time.perf_counter() - t0
    return TiledResult(source=source, queries=list(queries), grid=grid, features=features, tile_records=records,
                       instances=instances, models=models, timings=timings, stats=dict(stats or {}))


# -- the resumable run ----------------------------------------------------------------------------------------
def write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, path)


class TileState:
    """A run's folder: `state.json` (what the run is, which tiles are finished) and one shard per tile."""

    def __init__(self, folder: str | os.PathLike, fingerprint: dict, grid: TileGrid):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.grid = grid
        self.finished: list[str] = []
        (self.folder / "tiles").mkdir(parents=True, exist_ok=True)
        state_file = self.folder / "state.json"
        if state_file.exists():
            try:
                old = json.loads(state_file.read_text())
            except ValueError:
                old = None
            if old is not None and old.get("fingerprint") != fingerprint:
                raise BadInput(
                    f"{self.folder} holds a run of another raster, query or tiling; remove it (or run without "
                    "resuming) to start over.", code="state_mismatch")
            if old is not None:
                self.finished = [t for t in old.get("finished", []) if self.shard_path(t).exists()]
        self._save_state()

    def shard_path(self, tile_id: str) -> Path:
        return self.folder / "tiles" / f"{tile_id}.json"

    def _save_state(self) -> None:
        write_json(self.folder / "state.json", {
            "version": STATE_VERSION, "fingerprint": self.fingerprint, "grid": self.grid.to_dict(),
            "finished": self.finished, "updated": utc_now()})

    def save(self, shards: Sequence[dict]) -> None:
        """Shards first, then the list: a tile is finished only once its shard is on disk."""
        for s in shards:
            write_json(self.shard_path(s["tile"]["id"]), s)
        done = set(self.finished)
        self.finished += [s["tile"]["id"] for s in shards if s["tile"]["id"] not in done]
        self._save_state()

    def shards(self) -> Iterable[dict]:
        for tile_id in self.finished:
            yield json.loads(self.shard_path(tile_id).read_text())


def raster_identity(path: str) -> dict:
    """What makes a raster the same raster for resuming: its path, size and modification time."""
    ident: dict = {"path": os.path.abspath(path) if os.path.exists(path) else path}
    try:
        st = os.stat(path)
        ident.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    except OSError:
        pass
    return ident


def run_fingerprint(path: str, queries: Sequence[str], options, grid: TileGrid, models: dict) -> dict:
    return {
        "raster": raster_identity(path), "queries": list(queries), "tile_size": grid.tile_size,
        "overlap": grid.overlap, "gsd": grid.gsd, "bands": options.bands,
        "max_reasoning_tokens": options.max_reasoning_tokens, "min_area_pixels": options.min_area_pixels,
        "reasoner": models.get("reasoner"), "segmenter": models.get("segmenter"),
        "prompt_template": models.get("prompt_template"), "parse_mode": models.get("parse_mode"),
        "constrain_answer": bool(getattr(options, "constrain_answer", False)),
    }


def state_key(path: str) -> str:
    """A folder name for one raster's state inside a batch's state folder."""
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(path).stem)[:40]
    return f"{stem}-{digest}"


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
    tile_size: int = 1024,
    overlap: int = 128,
    gsd: float | None = None,
    batch_size: int = 4,
    state_path: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
    cancelled: Callable[[], bool] | None = None,
    max_tiles: int | None = None,
) -> TiledResult:
    """Answer every query on every tile of a raster of any size; see the module docstring for the grid,
    the merge and the state folder.

    `options` is a `SegmentOptions` or its dict (`bands`, `max_reasoning_tokens`, `min_area_pixels`).
    `batch_size` tiles are read and sent together (each with every query: `batch_size * len(queries)`
    sequences in one `generate`). With `state_path`, finished tiles are kept there and a rerun with the
    same raster, queries and options resumes; without it a temporary folder is used and removed. `progress`
    is called as `progress(done_tiles, total_tiles, message)`; `cancelled()` is checked before each batch
    (and between the batch's pairs): when it turns true, `Cancelled` is raised and the finished tiles stay
    in the state folder. `max_tiles` (benchmarks, previews) stops after that many new tiles; the result
    then covers the finished tiles only. Returns a `TiledResult` (its `to_dict()` is the /v1/segment answer).
    """
    opts = _options(options)
    qs = _queries(queries)
    if batch_size < 1:
        raise BadInput("batch_size must be at least 1.", code="bad_options")
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
                grid = TileGrid.for_raster(ds, tile_size, overlap, gsd)
                models = pipeline.provenance(opts)
                state = TileState(state_path, run_fingerprint(path, qs, opts, grid, models), grid)
                done_ids = set(state.finished)
                todo = [s for s in grid.tiles if s.id not in done_ids]
                total, resumed = len(grid.tiles), len(grid.tiles) - len(todo)
                if max_tiles is not None:
                    todo = todo[: max(0, int(max_tiles))]
                name = Path(path).name
                if progress:
                    progress(resumed, total, f"{name}: {resumed} of {total} tiles already done" if resumed
                             else f"{name}: {total} tiles")
                max_read, nodata = 0, 0
                batches = [todo[start:start + batch_size] for start in range(0, len(todo), batch_size)]
                with closing(read_ahead(ds, batches, opts.bands, pipeline.prepare)) as reads:
                    for specs, (tiles, read_s, inputs) in zip(batches, reads):
                        if cancelled is not None and cancelled():
                            raise Cancelled(f"The job was cancelled after {len(state.finished)} of {total} tiles; "
                                            "run it again with the same state to continue.")
                        shards = run_tiles(pipeline, grid, specs, tiles, read_s, qs, opts, cancelled, inputs)
                        state.save(shards)
                        max_read = max([max_read] + [s["read_pixels"] for s in shards])
                        nodata += sum(1 for s in shards if s["nodata"])
                        if progress:
                            n = len(state.finished)
                            progress(n, total, f"{name}: tile {n} of {total}")
            finally:
                ds.close()
        stats = {"tiles": total, "tiles_run": len(todo), "tiles_resumed": resumed, "tiles_nodata": nodata,
                 "max_read_pixels": max_read}
        result = merge_shards(state.shards(), grid, qs, path, models, opts.min_area_pixels, stats)
        result.timings["total"] = time.perf_counter() - t_start
        return result
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)

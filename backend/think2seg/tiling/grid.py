"""The tile plan of a raster: which windows are read, at what scale, and which part of each (its core) it owns.

The grid
    Tiles are `tile_size` x `tile_size` pixels *as the model sees them*, overlapping by `overlap` pixels. At
    native resolution a tile pixel is a raster pixel; with `gsd` (the ground sample distance wanted, in the
    raster's CRS units: metres for a projected CRS, pixels for a raster without georeferencing) a tile pixel
    covers `scale = gsd / native pixel size` raster pixels and the window is read resampled (GDAL averages,
    and uses overviews when the file has them). Tiles step by `tile_size - overlap`; the last tile of a row
    or column is moved back to end flush with the raster's edge, so every tile is full-sized (a raster
    smaller than one tile is one tile).

Cores: every tile owns the part of its window up to the middle of its overlap with each neighbour (at the
raster's edge, the edge); the cores partition the raster (think2seg.tiling.merge keeps each tile's answer
inside its core).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from affine import Affine
from rasterio.crs import CRS
from shapely.affinity import affine_transform

from ..errors import BadInput
from ..options import MAX_TILE, MIN_TILE


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
        return cls(
            d["id"],
            int(d["row"]),
            int(d["col"]),
            tuple(int(v) for v in d["window"]),
            tuple(int(v) for v in d["out_shape"]),
            tuple(int(v) for v in d["core"]),
        )


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
        raise BadInput(
            f"tile_size must be between {MIN_TILE} and {MAX_TILE} pixels (got {tile_size}).", code="bad_options"
        )
    if overlap < 0 or overlap > tile_size // 2:
        raise BadInput(
            f"overlap must be between 0 and half the tile size, {tile_size // 2} (got {overlap}).", code="bad_options"
        )
    if not (scale > 0 and math.isfinite(scale)):
        raise BadInput("gsd must be a positive number.", code="bad_options")


@dataclass(frozen=True)
class Tiling:
    """How rasters are cut into tiles and sent to the models: one value, made and checked once where the user
    gave the settings (the CLI, a job's options) and passed whole to the batch, the run and the state.

    `tile_size`, `overlap`: tile pixels as the model sees them; `gsd`: the ground sample distance to read at
    (CRS units; None: native resolution); `batch_size`: tiles sent to the model together."""

    tile_size: int = 1024
    overlap: int = 128
    gsd: float | None = None
    batch_size: int = 4

    def __post_init__(self):
        check_grid_options(self.tile_size, self.overlap, 1.0 if self.gsd is None else self.gsd)
        if self.batch_size < 1:
            raise BadInput("batch_size must be at least 1.", code="bad_options")

    @classmethod
    def from_options(cls, options) -> Tiling:
        """The tiling of a job's options (`JobOptions`, already checked field by field)."""
        return cls(options.tile_size, options.overlap, options.gsd, options.batch_size)

    def grid(self, ds) -> TileGrid:
        """This tiling laid over an open raster."""
        return TileGrid.for_raster(ds, self.tile_size, self.overlap, self.gsd)


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
        return {
            "width": self.width,
            "height": self.height,
            "transform": list(self.transform)[:6],
            "crs": self.crs.to_wkt() if self.crs else None,
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "gsd": self.gsd,
            "scale": self.scale,
            "tiles": len(self.tiles),
        }

    def to_crs(self, geom_px):
        """Raster-pixel geometry -> CRS geometry."""
        t = self.transform
        return affine_transform(geom_px, [t.a, t.b, t.d, t.e, t.c, t.f])

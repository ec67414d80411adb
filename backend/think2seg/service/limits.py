"""What one request may cost: bounds checked from the raster's header, before any grid is built or pixel read.

A 16 KB sparse GeoTIFF can declare 200000 x 200000 pixels, and `gsd` far below the pixel size asks for
millions of 1-pixel tiles; both must be refused at submission, in milliseconds. docs/api.md lists the
bounds; `think2seg serve` sets them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import BadInput, BadOptions
from ..options import JobOptions, SegmentOptions


@dataclass(frozen=True)
class Limits:
    max_upload_mb: int = 512
    #: items waiting for the worker (sync requests and jobs together); beyond it 429 + Retry-After
    max_waiting: int = 16
    #: tiles in one job's grid
    max_tiles: int = 4096
    #: raster pixels one read may cover (a /v1/segment raster, a job tile's window): GDAL decodes them all
    max_source_pixels: int = 8192 * 8192
    #: pixels one read may produce (held in memory as float per band while stretched to 8 bits)
    max_read_pixels: int = 4096 * 4096
    #: bytes of one declared block (tile or strip, its bands when pixel-interleaved): GDAL decodes it whole
    max_block_mb: int = 512
    #: bands of one raster (a header declaring 65,535 makes every read fail slowly)
    max_bands: int = 1024
    #: images (IFDs) in one TIFF: GDAL walks them all when it opens the file
    max_ifds: int = 256

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def max_block_bytes(self) -> int:
        return self.max_block_mb * 1024 * 1024


@dataclass(frozen=True)
class ReadPlan:
    """How an upload will be read: one resampled read, or a grid of `tiles` tiles."""

    tiled: bool
    tiles: int = 1


def plan_read(width: int, height: int, transform, opts: SegmentOptions, limits: Limits) -> ReadPlan:
    """Check a raster of `width` x `height` against the limits for these options; say how it will be read.

    A job (JobOptions) is tiled when its raster is larger than `max_read_size` or when the client set a
    tiling field (then a raster under one tile is one tile, read at `gsd`); otherwise it is one read."""
    if isinstance(opts, JobOptions) and (opts.tiling_requested or max(width, height) > opts.max_read_size):
        return _plan_grid(width, height, transform, opts, limits)
    if width * height > limits.max_source_pixels:
        raise BadInput(
            f"This raster is {width} x {height} pixels, more than one request reads "
            f"({limits.max_source_pixels:,} pixels): send it as a job (POST /v1/jobs), which tiles it.",
            code="raster_too_large",
        )
    scale = min(1.0, opts.max_read_size / max(width, height))
    read = round(width * scale) * round(height * scale)
    if read > limits.max_read_pixels:
        side = math.isqrt(limits.max_read_pixels)
        raise BadOptions(
            f"max_read_size {opts.max_read_size} would read {read:,} pixels; this backend reads at most "
            f"{limits.max_read_pixels:,} in one go: use a max_read_size of at most {side}."
        )
    return ReadPlan(tiled=False)


def _plan_grid(width: int, height: int, transform, opts: JobOptions, limits: Limits) -> ReadPlan:
    from ..tiling import check_grid_options, native_pixel_size, tile_count

    scale = 1.0 if opts.gsd is None else opts.gsd / native_pixel_size(transform)
    check_grid_options(opts.tile_size, opts.overlap, scale)
    if opts.tile_size**2 > limits.max_read_pixels:
        raise BadOptions(
            f"tile_size {opts.tile_size} is over this backend's read limit "
            f"({limits.max_read_pixels:,} pixels a tile): use at most {math.isqrt(limits.max_read_pixels)}."
        )
    window = (opts.tile_size * scale) ** 2
    if window > limits.max_source_pixels:
        raise BadInput(
            f"At gsd {opts.gsd} a tile covers {window:,.0f} raster pixels, more than one read may "
            f"({limits.max_source_pixels:,}): use a smaller gsd or tile_size.",
            code="raster_too_large",
        )
    n = tile_count(width, height, opts.tile_size, opts.overlap, scale)
    if n > limits.max_tiles:
        raise BadInput(
            f"This job would make {n:,} tiles of a {width} x {height} raster; the limit is "
            f"{limits.max_tiles:,}: send a smaller area, a larger gsd or a larger tile_size.",
            code="too_many_tiles",
        )
    return ReadPlan(tiled=True, tiles=n)

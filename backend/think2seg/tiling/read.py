"""Reading a grid's windows: one tile's window (`read_window`), a batch of them with their model inputs
(`read_tiles`), and the next batch read on a thread while the models answer this one (`read_ahead`).

Windows are read one batch at a time under a bounded GDAL block cache (`GDAL_CACHE_MB`), so memory follows
the tile (two batches at most), not the raster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from rasterio.windows import Window

from ..georef import RasterTile, read_tile
from .grid import TileSpec

#: GDAL block cache while reading tiles (MB): bounded so memory follows the tile, not the raster.
GDAL_CACHE_MB = 64


def read_window(ds, spec: TileSpec, bands: list[int] | None = None) -> RasterTile:
    """Read exactly one tile's window (resampled to its tile size) and nothing more."""
    x, y, w, h = spec.window
    return read_tile(ds, bands=bands, window=Window(x, y, w, h), out_shape=spec.out_shape)


def has_data(tile: RasterTile) -> bool:
    """Whether a tile has any valid pixel (a tile all no-data is not asked)."""
    return tile.valid is None or bool(tile.valid.any())


def read_tiles(
    ds, specs: Sequence[TileSpec], bands: list[int] | None = None, prepare: Callable[[RasterTile], object] | None = None
) -> tuple[list[RasterTile], float, list]:
    """Read `specs`' windows: the tiles, the seconds spent per tile, and the tiles' model inputs: `prepare(tile)`
    (the pipeline's) for each tile with data, None for the others (all None without `prepare`). The local
    loop calls it through `read_ahead`, a Ray actor directly."""
    t0 = time.perf_counter()
    tiles = [read_window(ds, spec, bands) for spec in specs]
    read_s = (time.perf_counter() - t0) / max(1, len(specs))
    return tiles, read_s, [prepare(t) if prepare is not None and has_data(t) else None for t in tiles]


def read_ahead(
    ds,
    batches: Sequence[Sequence[TileSpec]],
    bands: list[int] | None = None,
    prepare: Callable[[RasterTile], object] | None = None,
) -> Iterator[tuple]:
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

"""Synthetic scenes: textured fields with dark "water" discs, written as tiled GeoTIFFs of any size.

The tests and `python -m think2seg.testing.bench` use them: the answer (the discs) is known, and a raster of
20,000 x 20,000 pixels is written block by block in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: A synthetic scene: textured fields with dark "water" discs (cx, cy, r in pixels).
WATER_RGB = (30, 60, 160)


def default_discs(width: int, height: int, seed: int = 0) -> list[tuple[float, float, float]]:
    """Discs spread over the raster (about one per 1,500 x 1,500 pixels, some across tile borders)."""
    rng = np.random.default_rng(seed)
    n = max(1, int(width * height / 1500**2))
    return [
        (float(rng.uniform(0, width)), float(rng.uniform(0, height)), float(rng.uniform(40, 300))) for _ in range(n)
    ]


def scene_block(x0: int, y0: int, w: int, h: int, discs) -> np.ndarray:
    """(3, h, w) uint8 of the synthetic scene at raster pixels [x0, x0+w) x [y0, y0+h)."""
    xx = np.arange(x0, x0 + w, dtype=np.int32)[None, :]
    yy = np.arange(y0, y0 + h, dtype=np.int32)[:, None]
    t = ((xx * 7 ^ yy * 13) & 31).astype(np.uint8)
    fields = ((xx // 400 + yy // 300) & 1).astype(np.uint8) * 40
    out = np.empty((3, h, w), dtype=np.uint8)
    out[0] = 110 + t + fields
    out[1] = 130 + t
    out[2] = 70 + (t >> 1) + fields // 2
    for cx, cy, r in discs:
        if cx + r < x0 or cx - r > x0 + w or cy + r < y0 or cy - r > y0 + h:
            continue
        inside = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r
        for b, v in enumerate(WATER_RGB):
            out[b][inside] = v
    return out


def make_geotiff(
    path: str | os.PathLike,
    width: int,
    height: int,
    discs=None,
    block: int = 512,
    crs: str | None = "EPSG:32633",
    pixel_size: float = 0.5,
    origin=(500000.0, 5000000.0),
    count: int = 3,
    nodata: int | None = None,
) -> Path:
    """Write a tiled, deflate-compressed GeoTIFF block by block (memory: one block), fast at any size."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    discs = default_discs(width, height) if discs is None else discs
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype="uint8",
        transform=from_origin(origin[0], origin[1], pixel_size, pixel_size),
        tiled=True,
        blockxsize=block,
        blockysize=block,
        compress="deflate",
        zlevel=1,
        num_threads="ALL_CPUS",
    )
    if crs:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as ds:
        for y in range(0, height, block):
            for x in range(0, width, block):
                w, h = min(block, width - x), min(block, height - y)
                data = scene_block(x, y, w, h, discs)
                if count != 3:
                    data = np.concatenate([data, np.repeat(data[:1], count - 3, axis=0)])[:count]
                ds.write(data, window=Window(x, y, w, h))
    return Path(path)

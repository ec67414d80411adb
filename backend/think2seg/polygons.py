"""Masks -> valid polygons (in the CRS, or in a raster's pixel frame): holes kept, specks dropped, simplified
below a pixel."""

from __future__ import annotations

import math

import numpy as np
import shapely
from affine import Affine
from rasterio import features
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.ops import unary_union

from .options import DEFAULT_MIN_AREA_PIXELS
from .result import as_multipolygon

#: Simplification tolerance as a fraction of a pixel: invisible at native resolution, far fewer vertices.
SIMPLIFY_PIXELS = 0.5


#: A mask with more than this many 0/1 changes along its rows per pixel of its height + width is ragged (noise,
#: speckle: many regions) and is sieved before polygonising; a clean one has ~2 per region per row it spans.
RAGGED_CHANGES_PER_SIDE_PIXEL = 4


def _ragged(m: np.ndarray) -> bool:
    """Whether a mask has many small regions (cheap: one comparison pass, ~0.3 ms for 1024 x 1024)."""
    changes = int(np.count_nonzero(m[:, 1:] != m[:, :-1]))
    return changes > RAGGED_CHANGES_PER_SIDE_PIXEL * (m.shape[0] + m.shape[1])


def mask_to_multipolygon(
    mask: np.ndarray,
    transform: Affine,
    min_area_pixels: float = DEFAULT_MIN_AREA_PIXELS,
    simplify_pixels: float = SIMPLIFY_PIXELS,
) -> MultiPolygon:
    """One (multi)polygon for a boolean mask, in the frame `transform` takes its pixels to (a tile's
    `transform`: the CRS; its `to_source_pixel`: the source raster's pixels). Thresholds are in mask pixels."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    if not m.any():
        return MultiPolygon()
    pixel_area = abs(transform.a * transform.e - transform.b * transform.d) or 1.0
    min_area = min_area_pixels * pixel_area
    if min_area_pixels > 1 and _ragged(m):
        # Specks first, on the raster (GDAL's sieve, one pass in C): a noisy mask has thousands of them, and
        # making each a shapely polygon only to drop it cost seconds. A region of fewer than `min_area_pixels`
        # pixels is exactly a polygon of less than `min_area` below; `& m` keeps the sieve from filling holes
        # (holes are judged below, as before), so the polygons kept are the same. A clean mask skips it: the
        # sieve costs more than polygonising a few regions (~21 vs ~16 ms of CPU for a 1024 x 1024 tile).
        m = m & features.sieve(m, int(math.ceil(min_area_pixels)), connectivity=8)
        if not m.any():
            return MultiPolygon()
    # Polygonise only the mask's bounding box (GDAL scans every pixel it is given; an object is rarely the tile).
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    r0, c0 = int(rows[0]), int(cols[0])
    m = m[r0:int(rows[-1]) + 1, c0:int(cols[-1]) + 1]
    if r0 or c0:
        transform = transform * Affine.translation(c0, r0)
    polys = []
    for geom, value in features.shapes(m, mask=m.view(bool), transform=transform, connectivity=8):
        if value != 1:
            continue
        poly = shape(geom)
        if poly.area < min_area:
            continue
        # Holes smaller than the speck threshold are noise too.
        if isinstance(poly, Polygon) and poly.interiors:
            holes = [h for h in poly.interiors if Polygon(h).area >= min_area]
            poly = Polygon(poly.exterior, holes)
        polys.append(poly)
    if not polys:
        return MultiPolygon()
    geom = unary_union(polys)
    if simplify_pixels > 0:
        geom = geom.simplify(simplify_pixels * np.sqrt(pixel_area), preserve_topology=True)
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    return as_multipolygon(geom)

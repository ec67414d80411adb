"""Masks -> valid polygons (in the CRS, or in a raster's pixel frame): holes kept, specks dropped, simplified
below a pixel."""

from __future__ import annotations

import math

import numpy as np
import shapely
from affine import Affine
from rasterio import features
from shapely.geometry import MultiPolygon, Polygon
from shapely.ops import unary_union

from .options import DEFAULT_MIN_AREA_PIXELS

#: Simplification tolerance as a fraction of a pixel: invisible at native resolution, far fewer vertices.
SIMPLIFY_PIXELS = 0.5


#: A mask with more than this many 0/1 changes along its rows per pixel of its height + width is ragged (noise,
#: speckle: many regions) and is sieved before polygonising; a clean one has ~2 per region per row it spans.
RAGGED_CHANGES_PER_SIDE_PIXEL = 4


def _ragged(m: np.ndarray) -> bool:
    """Whether a mask has many small regions (cheap: one comparison pass, ~0.3 ms for 1024 x 1024)."""
    changes = int(np.count_nonzero(m[:, 1:] != m[:, :-1]))
    return changes > RAGGED_CHANGES_PER_SIDE_PIXEL * (m.shape[0] + m.shape[1])


#: What one polygonise call costs beyond its pixels, in pixels scanned: rasterio/GDAL set up ~0.8 ms a call and
#: scan ~21 ns a pixel. A mask is cut into more pieces only where each extra piece saves more pixels than this.
CALL_PIXELS = 40_000


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
    r0, c0, m = _trim(0, 0, m)  # GDAL scans every pixel it is given: an object is rarely the whole tile
    if min_area_pixels > 1 and _ragged(m):
        # Specks first, on the raster (GDAL's sieve, one pass in C): a noisy mask has thousands of them, and
        # making each a shapely polygon only to drop it cost seconds. A region of fewer than `min_area_pixels`
        # pixels is exactly a polygon of less than `min_area` below; `& m` keeps the sieve from filling holes
        # (holes are judged below, as before), so the polygons kept are the same. A clean mask skips it: the
        # sieve costs more than polygonising a few regions (~21 vs ~16 ms of CPU for a 1024 x 1024 tile).
        m = m & features.sieve(m, int(math.ceil(min_area_pixels)), connectivity=8)
        if not m.any():
            return MultiPolygon()
        r0, c0, m = _trim(r0, c0, m)
    polys = []
    for r, c, piece in _apart(r0, c0, m):
        piece = np.ascontiguousarray(piece)
        for geom, value in features.shapes(
            piece, mask=piece.view(bool), connectivity=8, transform=transform @ Affine.translation(c, r)
        ):
            if value != 1:
                continue
            poly = _polygon(geom["coordinates"], min_area)
            if poly is not None:
                polys.append(poly)
    if not polys:
        return MultiPolygon()
    # The regions of one 8-connected polygonise never overlap (and a kept island never sits in a dropped hole:
    # it is smaller than the hole), so they are a coverage: GEOS's coverage union merges them into valid
    # polygons (GDAL's rings touch themselves at diagonal pixels) with the geometry of a full union, ~9x faster
    # on a noisy mask (40 random masks: the same polygons after normalising, 2.2 against 20.6 s).
    geom = shapely.coverage_union_all(polys)
    if simplify_pixels > 0:
        geom = geom.simplify(simplify_pixels * np.sqrt(pixel_area), preserve_topology=True)
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    return as_multipolygon(geom)


def _polygon(rings: list, min_area: float) -> Polygon | None:
    """A GeoJSON polygon's rings as a shapely polygon (None when smaller than `min_area`), less its holes smaller
    than `min_area` (noise too). The rings go through numpy in one call: shapely's shape() walked every
    coordinate in Python (1.2 vs 0.27 ms for a 1,173-vertex lake), and a speckled mask has thousands of holes."""
    if len(rings) == 1:
        poly = Polygon(np.asarray(rings[0]))
        return poly if poly.area >= min_area else None
    coords = [np.asarray(r) for r in rings]
    lr = shapely.linearrings(
        np.concatenate(coords), indices=np.repeat(np.arange(len(coords)), [len(c) for c in coords])
    )
    areas = shapely.area(shapely.polygons(lr))  # each ring's own
    if areas[0] - areas[1:].sum() < min_area:
        return None
    return shapely.polygons(lr[0], holes=lr[1:][areas[1:] >= min_area])


def _apart(r: int, c: int, m: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """Pieces (row, col, sub-mask) that hold every set pixel of `m` (whose top-left pixel is at row `r`, col
    `c`), each trimmed to its pixels and cut from the others along empty rows or columns (an XY cut). No
    8-connected region spans two pieces, so each is polygonised alone, and objects far apart are scanned
    without the empty rest of their common bounding box (the bench's two lakes: 533k -> 276k pixels)."""
    done, todo = [], [(r, c, m)]
    while todo:
        r, c, sub = todo.pop()
        # the cut (along rows or columns) that leaves the fewest pixels to scan, and how many it saves
        saved, best = max(
            ((sub.size - sum(p[2].size for p in ps), ps) for ps in (_cut(r, c, sub, 0), _cut(r, c, sub, 1))),
            key=lambda option: option[0],
        )
        if len(best) > 1 and saved > (len(best) - 1) * CALL_PIXELS:
            todo.extend(best)
        else:
            done.append((r, c, sub))
    return done


def _cut(r: int, c: int, sub: np.ndarray, axis: int) -> list[tuple[int, int, np.ndarray]]:
    """`sub` (trimmed) cut along its empty rows (axis 0) or columns (axis 1), each piece trimmed."""
    filled = np.flatnonzero(sub.any(axis=1 - axis))
    gaps = np.flatnonzero(np.diff(filled) > 1)
    if not len(gaps):
        return [(r, c, sub)]
    starts, ends = [filled[0], *filled[gaps + 1]], [*(filled[gaps] + 1), filled[-1] + 1]
    if axis == 0:
        return [_trim(r + a, c, sub[a:b]) for a, b in zip(starts, ends)]
    return [_trim(r, c + a, sub[:, a:b]) for a, b in zip(starts, ends)]


def _trim(r: int, c: int, sub: np.ndarray) -> tuple[int, int, np.ndarray]:
    """`sub` cut to the bounding box of its set pixels (it has some), with that box's top-left (row, col)."""
    rows, cols = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
    return r + int(rows[0]), c + int(cols[0]), sub[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def as_multipolygon(geom) -> MultiPolygon:
    """The polygonal part of any geometry as one MultiPolygon (empty when there is none)."""
    if geom is None or geom.is_empty:
        return MultiPolygon()
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    polys: list[Polygon] = []
    for g in getattr(geom, "geoms", []):
        if isinstance(g, Polygon) and not g.is_empty:
            polys.append(g)
        elif isinstance(g, MultiPolygon):
            polys.extend(g.geoms)
    if not polys:
        return MultiPolygon()
    multi = MultiPolygon(polys)
    if len(polys) > 1 and not multi.is_valid:  # parts of a collection may overlap: dissolve them
        return as_multipolygon(unary_union(polys))
    return multi

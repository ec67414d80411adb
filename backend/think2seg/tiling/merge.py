"""What each tile keeps of its answers and how the raster's answer is made of them.

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
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from ..georef import area_m2
from ..polygons import as_multipolygon
from ..result import TiledFeature, TiledResult
from .grid import TileGrid, TileSpec

#: Precision of clipped / merged geometry, in raster pixels (a power of two: exact in binary).
SNAP_PIXELS = 1.0 / 256.0


def clip_to_core(geom_px, core: tuple[int, int, int, int]) -> MultiPolygon:
    """A raster-pixel geometry cut to a tile's core and snapped to the shared pixel grid."""
    if geom_px.is_empty:
        return MultiPolygon()
    clipped = shapely.intersection(geom_px, box(*core))
    return as_multipolygon(shapely.set_precision(clipped, SNAP_PIXELS))


def in_core(x: float, y: float, core) -> bool:
    return core[0] <= x < core[2] and core[1] <= y < core[3]


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
        geom = (
            pieces[group[0]].geometry
            if len(group) == 1
            else shapely.union_all([pieces[i].geometry for i in group], grid_size=SNAP_PIXELS)
        )
        geom = as_multipolygon(geom)
        if geom.is_empty or geom.area < min_area_pixels:
            continue
        out.append((geom, group))
    return out


def merge_shards(
    shards: Iterable[dict],
    grid: TileGrid,
    queries: Sequence[str],
    source: str,
    models: dict,
    min_area_pixels: float = 0.0,
    stats: dict | None = None,
) -> TiledResult:
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
            records.append(
                {
                    "tile": spec.id,
                    "window": list(spec.window),
                    "query": e["query"],
                    "status": e["status"],
                    "message": e["message"],
                    "reasoning": e["reasoning"],
                    "answer": e["answer"],
                    "instances": len(e["instances"]),
                    "view_id": e.get("view_id", ""),
                }
            )
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
        features.append(
            TiledFeature(
                query=queries[qi],
                query_index=qi,
                instance=counters[qi],
                geometry=geom,
                area=area_m2(geom, grid.crs, grid.pixel_area) if grid.crs is not None else float(geom_px.area),
                score=float(np.average([p.score for p in parts], weights=areas if areas.sum() > 0 else None)),
                tile=main.tile,
                tiles=sorted({p.tile for p in parts}, key=lambda t: order.get(t, 0)),
                parts=list(dict.fromkeys(f"{p.tile}:{p.instance}" for p in parts)),
                reasoning=reasoning.get((main.tile, qi), ""),
                geometry_pixels=geom_px,
            )
        )
        counters[qi] += 1
    timings["merge"] = time.perf_counter() - t0
    return TiledResult(
        source=source,
        queries=list(queries),
        grid=grid,
        features=features,
        tile_records=records,
        instances=instances,
        models=models,
        timings=timings,
        stats=dict(stats or {}),
    )

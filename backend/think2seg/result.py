"""What a result is as GIS layers: the one place that defines the layers, their columns and geometry types.

Three layers, whatever made the result (one tile from `segment` or the service, or a whole raster from a
tiled run, `batch` or Ray):

- `mask` (MultiPolygon): one feature per instance (one tile) or per merged connected region (tiled);
- `prompt_points` (Point): the points the reasoner gave SAM2, numbered `point` 1, 2 per instance;
- `prompt_boxes` (MultiPolygon): the box of each instance (a rotated raster gives a rotated box).

Every feature carries `query`, `instance`, the model ids (`reasoner`, `segmenter`), `created` and `source`
(the raster). `mask` adds `area_m2` (`area_px` for a raster without georeferencing), `score`, `status` and
`reasoning`. Tiled results add `raster` and `tile` (the tile holding most of the feature) and, on `mask`,
`tiles` (every tile it spans) and `parts` (the tile:instance pieces merged into it).

`layer_rows(result)` turns a result of either kind into (geometry in the CRS, attributes) rows per layer;
`think2seg.output` writes them. The small shared helpers of results live here too: `as_multipolygon` (any
polygonal geometry as one MultiPolygon) and `area_text` (the "X ha" of the result sentences).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.ops import unary_union

if TYPE_CHECKING:
    from .pipeline import SegmentResult
    from .tiling import TiledResult

    AnyResult = SegmentResult | TiledResult

LAYERS = ("mask", "prompt_points", "prompt_boxes")
GEOMETRY_TYPES = {"mask": "MultiPolygon", "prompt_points": "Point", "prompt_boxes": "MultiPolygon"}

#: Columns of every layer, in order, with their type.
_COMMON: dict[str, type] = {"query": str, "instance": int, "reasoner": str, "segmenter": str, "created": str,
                            "source": str}
_OWN: dict[str, dict[str, type]] = {
    "mask": {"area_m2": float, "score": float, "status": str, "reasoning": str},
    "prompt_points": {"point": int},
    "prompt_boxes": {},
}
#: The columns a tiled result adds.
_TILED: dict[str, dict[str, type]] = {
    "mask": {"raster": str, "tile": str, "tiles": str, "parts": str},
    "prompt_points": {"raster": str, "tile": str},
    "prompt_boxes": {"raster": str, "tile": str},
}

Row = tuple[object, dict]  # (shapely geometry in the CRS, attributes)


def area_column(georeferenced: bool) -> str:
    """`area_m2` in a georeferenced result, `area_px` (pixels) in one without georeferencing."""
    return "area_m2" if georeferenced else "area_px"


def columns(layer: str, georeferenced: bool = True, tiled: bool = False) -> dict[str, type]:
    """The columns of one layer, in order, with their Python type (str, int or float)."""
    cols = {**_COMMON, **_OWN[layer], **(_TILED[layer] if tiled else {})}
    if not georeferenced and "area_m2" in cols:
        cols = {(area_column(False) if k == "area_m2" else k): v for k, v in cols.items()}
    return cols


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


def area_text(area: float, unit: str) -> str:
    """An area as people read it: hectares from 1 ha up, m² below, else the unit's own (pixels)."""
    if unit == "m2":
        return f"{area / 1e4:.2f} ha" if area >= 1e4 else f"{area:.0f} m²"
    return f"{area:.0f} {unit}"


def found_sentence(n: int, noun: str, area: float, unit: str, where: str = "") -> str:
    """"3 instances found, 1.20 ha in all." (`where`: " in 4 tiles")."""
    return f"{n} {noun}{'s' if n != 1 else ''} found{where}, {area_text(area, unit)} in all."


def layer_rows(result: AnyResult, extra: dict | None = None) -> dict[str, list[Row]]:
    """(geometry in the CRS, attributes) per layer for a one-tile result or a tiled result; `extra` is added
    to every row (a batch adds `raster`)."""
    from .tiling import TiledResult

    if isinstance(result, TiledResult):
        return _tiled_rows(result, extra)
    return _tile_rows(result, extra)


def _tile_rows(result: SegmentResult, extra: dict | None) -> dict[str, list[Row]]:
    base = {
        "query": result.query, "reasoner": result.models["reasoner"], "segmenter": result.models["segmenter"],
        "created": result.created, "source": result.tile.source, **(extra or {}),
    }
    area_key = area_column(result.crs is not None)
    rows: dict[str, list[Row]] = {name: [] for name in LAYERS}
    for inst in result.instances:
        if not inst.geometry.is_empty:
            rows["mask"].append((inst.geometry, {
                **base, "instance": inst.instance, area_key: inst.area, "score": inst.score,
                "status": result.status, "reasoning": result.reasoning,
            }))
        for j, xy in enumerate(inst.points_crs):
            rows["prompt_points"].append((Point(xy), {**base, "instance": inst.instance, "point": j + 1}))
        if inst.box_crs is not None:  # None when the model gave only points
            rows["prompt_boxes"].append((MultiPolygon([Polygon(inst.box_crs)]), {**base, "instance": inst.instance}))
    return rows


def _tiled_rows(result: TiledResult, extra: dict | None) -> dict[str, list[Row]]:
    base = {"reasoner": result.models.get("reasoner", ""), "segmenter": result.models.get("segmenter", ""),
            "created": result.created, "source": result.source, "raster": result.source, **(extra or {})}
    area_key = area_column(result.crs is not None)
    rows: dict[str, list[Row]] = {name: [] for name in LAYERS}
    for f in result.features:
        rows["mask"].append((f.geometry, {**base, "query": f.query, "instance": f.instance, area_key: f.area,
                                          "score": f.score, "status": "ok", "reasoning": f.reasoning,
                                          "tile": f.tile, "tiles": ",".join(f.tiles), "parts": ",".join(f.parts)}))
    for inst in result.instances:
        attrs = {**base, "query": inst["query"], "instance": inst["instance"], "tile": inst["tile"]}
        for j, (xy, inside) in enumerate(zip(inst["points_crs"], inst.get("points_in_core", []))):
            if inside:  # a point outside the tile's core is another tile's to show
                rows["prompt_points"].append((Point(xy), {**attrs, "point": j + 1}))
        if inst.get("box_crs"):  # None when the model gave only points
            rows["prompt_boxes"].append((MultiPolygon([Polygon(inst["box_crs"])]), attrs))
    return rows

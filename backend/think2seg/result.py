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

The result types live here, each with the small interface the writer (`think2seg.output`), the batch and the
service use, so none of them asks which kind a result is (`Result`): `SegmentResult` (one read, made of
`InstanceResult`s) and `TiledResult` (a whole raster, made of merged `TiledFeature`s). `layer_rows(result)`
turns a result of either kind into (geometry in the CRS, attributes) rows per layer; `think2seg.output`
writes them. The sentences of results live here too (`area_text`, `found_sentence`, `describe`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol

import numpy as np
from shapely.geometry import MultiPolygon, Point, Polygon, mapping
from shapely.ops import unary_union

from .georef import RasterTile, area_m2, area_unit, box_ring, crs_epsg, pixel_geometry_area, raster_transform
from .polygons import as_multipolygon

if TYPE_CHECKING:
    from rasterio.crs import CRS

    from .prompts import PromptInstance
    from .tiling.grid import TileGrid

LAYERS = ("mask", "prompt_points", "prompt_boxes")
GEOMETRY_TYPES = {"mask": "MultiPolygon", "prompt_points": "Point", "prompt_boxes": "MultiPolygon"}

#: Columns of every layer, in order, with their type.
_COMMON: dict[str, type] = {
    "query": str,
    "instance": int,
    "reasoner": str,
    "segmenter": str,
    "created": str,
    "source": str,
}
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


def area_text(area: float, unit: str) -> str:
    """An area as people read it: hectares from 1 ha up, m² below, else the unit's own (pixels)."""
    if unit == "m2":
        return f"{area / 1e4:.2f} ha" if area >= 1e4 else f"{area:.0f} m²"
    return f"{area:.0f} {unit}"


def found_sentence(n: int, noun: str, area: float, unit: str, where: str = "") -> str:
    """ "3 instances found, 1.20 ha in all." (`where`: " in 4 tiles")."""
    return f"{n} {noun}{'s' if n != 1 else ''} found{where}, {area_text(area, unit)} in all."


def describe(status: str, n: int, area: float, unit: str, reason: str) -> str:
    if status == "empty":
        return "The model found nothing that matches the query."
    if status == "unparsed":
        return f"The model's answer could not be used ({reason}); no mask was made."
    return found_sentence(n, "instance", area, unit)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Result(Protocol):
    """What the writer, the batch and the service need of a result, whichever kind it is."""

    #: True for a whole raster's merged result (its layers carry the tiled columns, `columns(tiled=True)`)
    tiled: bool

    @property
    def crs(self) -> CRS | None: ...

    @property
    def queries(self) -> list[str]: ...

    @property
    def reasoning(self) -> str: ...

    def layer_rows(self, extra: dict | None = None) -> dict[str, list[Row]]: ...

    def to_dict(self) -> dict: ...


def layer_rows(result: Result, extra: dict | None = None) -> dict[str, list[Row]]:
    """(geometry in the CRS, attributes) per layer for a one-tile result or a tiled result; `extra` is added
    to every row (a batch adds `raster`)."""
    return result.layer_rows(extra)


@dataclass
class InstanceResult:
    instance: int
    box_pixel: list[float] | None  # in the source raster's pixel frame; None: the model gave only points
    points_pixel: list[list[float]]  # empty: the model gave only a box
    box_crs: list[list[float]] | None  # closed ring in the CRS (a rotated raster gives a rotated box)
    points_crs: list[list[float]]
    score: float
    geometry: MultiPolygon  # this instance's own mask, in the CRS
    area: float

    @property
    def anchor_pixel(self) -> tuple[float, float]:
        """Where the instance is, in source pixels: its box centre, or without a box its points' mean."""
        if self.box_pixel is not None:
            x1, y1, x2, y2 = self.box_pixel
            return ((x1 + x2) / 2, (y1 + y2) / 2)
        xs = [p[0] for p in self.points_pixel]
        ys = [p[1] for p in self.points_pixel]
        return (sum(xs) / len(xs), sum(ys) / len(ys))

    def to_dict(self) -> dict:
        return {
            "instance": self.instance,
            "box_pixel": self.box_pixel,
            "points_pixel": self.points_pixel,
            "box_crs": self.box_crs,
            "points_crs": self.points_crs,
            "score": self.score,
            "area": self.area,
        }

    @classmethod
    def from_prompt(
        cls,
        k: int,
        inst: PromptInstance,
        tile: RasterTile,
        geometry: MultiPolygon,
        score: float,
        area: float | None = None,
    ) -> InstanceResult:
        """Instance `k` of a tile: its prompt (tile pixels) placed in the source raster's pixels and the CRS,
        its mask's geometry and SAM2's score; `area` defaults to the geometry's (a CRS geometry)."""
        # An instance may have only a box (no points) or only points (box None): SAM2 takes either.
        pts = np.asarray(inst.points, dtype=float).reshape(-1, 2)
        src = tile.to_source_pixel
        has_box = inst.box is not None
        return cls(
            instance=k,
            box_pixel=[float(v) for v in (*(src @ inst.box[:2]), *(src @ inst.box[2:]))] if has_box else None,
            points_pixel=[[float(v) for v in src @ (float(x), float(y))] for x, y in pts],
            box_crs=tile.pixel_to_crs(box_ring(inst.box)).tolist() if has_box else None,
            points_crs=tile.pixel_to_crs(pts).tolist() if len(pts) else [],
            score=score,
            geometry=geometry,
            area=area
            if area is not None
            else (area_m2(geometry, tile.crs, tile.pixel_area) if not geometry.is_empty else 0.0),
        )


@dataclass
class SegmentResult:
    query: str
    status: str  # ok | empty | unparsed
    message: str
    reasoning: str
    answer: str
    instances: list[InstanceResult]
    tile: RasterTile
    timings: dict[str, float]
    models: dict  # provenance: model ids, prompt template, parse mode, generation settings, versions
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    merged_mask: np.ndarray | None = None  # bool, tile pixels (the OR of the instances)
    #: "crs": instance geometries are in the CRS; "raster_pixels": in the source raster's pixel frame (tiled
    #: runs clip and merge there and go to the CRS once, after the merge)
    geometry_frame: str = "crs"
    #: the content key of the tile the model saw (`image_key`): names the view a refine works on
    view_id: str = ""
    tiled = False  # Result: a one-read result's layers have no tiled columns

    @property
    def crs(self):
        return self.tile.crs

    @property
    def queries(self) -> list[str]:
        return [self.query]

    @property
    def mask_geometry(self) -> MultiPolygon:
        geoms = [i.geometry for i in self.instances if not i.geometry.is_empty]
        return as_multipolygon(unary_union(geoms)) if geoms else MultiPolygon()

    @property
    def area(self) -> float:
        g = self.mask_geometry
        if g.is_empty:
            return 0.0
        if self.geometry_frame == "raster_pixels":
            return pixel_geometry_area(g, raster_transform(self.tile), self.crs)
        return area_m2(g, self.crs, self.tile.pixel_area)

    def to_dict(self) -> dict:
        """The JSON answer of the HTTP API (docs/api.md)."""
        crs = self.crs
        return {
            "query": self.query,
            "status": self.status,
            "message": self.message,
            "reasoning": self.reasoning,
            "answer": self.answer,
            "instances": [i.to_dict() for i in self.instances],
            "mask": {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": mapping(i.geometry),
                        "properties": {"instance": i.instance, "area": i.area, "score": i.score},
                    }
                    for i in self.instances
                    if not i.geometry.is_empty
                ],
            },
            "crs": crs.to_wkt() if crs else None,
            "epsg": crs_epsg(crs),
            "area_unit": area_unit(crs),
            "read": self.tile.read,
            "timings": self.timings,
            "models": self.models,
            "created": self.created,
            "view_id": self.view_id,
        }

    def layer_rows(self, extra: dict | None = None) -> dict[str, list[Row]]:
        base = {
            "query": self.query,
            "reasoner": self.models["reasoner"],
            "segmenter": self.models["segmenter"],
            "created": self.created,
            "source": self.tile.source,
            **(extra or {}),
        }
        area_key = area_column(self.crs is not None)
        rows: dict[str, list[Row]] = {name: [] for name in LAYERS}
        for inst in self.instances:
            if not inst.geometry.is_empty:
                rows["mask"].append(
                    (
                        inst.geometry,
                        {
                            **base,
                            "instance": inst.instance,
                            area_key: inst.area,
                            "score": inst.score,
                            "status": self.status,
                            "reasoning": self.reasoning,
                        },
                    )
                )
            for j, xy in enumerate(inst.points_crs):
                rows["prompt_points"].append((Point(xy), {**base, "instance": inst.instance, "point": j + 1}))
            if inst.box_crs is not None:  # None when the model gave only points
                rows["prompt_boxes"].append(
                    (MultiPolygon([Polygon(inst.box_crs)]), {**base, "instance": inst.instance})
                )
        return rows


@dataclass
class TiledFeature:
    """One merged mask feature in the raster's CRS."""

    query: str
    query_index: int
    instance: int  # running number per query in this raster (a connected region of the query's answer)
    geometry: MultiPolygon
    area: float
    score: float  # area-weighted mean of its pieces' SAM2 scores
    tile: str  # the tile holding most of it
    tiles: list[str]
    parts: list[str]  # "tile:instance" of every piece merged into it
    reasoning: str  # that main tile's reasoning for this query
    #: the same geometry in the raster's pixels, as merged (not in `to_dict`): a refine re-merges edits with it
    geometry_pixels: MultiPolygon | None = None


@dataclass
class TiledResult:
    """Everything one tiled run found on one raster. `to_dict()` is the /v1/segment answer (docs/api.md)
    for a whole raster:

    - `query` (the first query), `queries` (all), `status` ("ok" when any feature, else "empty", or
      "unparsed" when no tile had a usable answer), `message`;
    - `reasoning`: the tiles' reasoning, one "[tile] text" paragraph per tile and query (each tile's own is
      in `tiles`); `answer`: "" (each tile's raw answer is in `tiles`);
    - `instances`: per tile, the prompts whose box centre lies in that tile's core (no doubles from the
      overlaps), /v1/segment's instance fields plus `tile` and `query`; pixels are the raster's;
    - `mask`: a FeatureCollection of the merged features (CRS), properties `instance`, `area`, `score`,
      `query`, `tile` (the tile holding most of the feature), `tiles` (every tile it spans), `parts`;
    - `tiles`: one record per tile and query: `tile`, `window` [col, row, w, h], `query`, `status`,
      `message`, `reasoning`, `answer`, `instances`;
    - `crs`, `epsg`, `area_unit`, `read` ({"mode": "tiled", sizes, grid, tile counts, largest read}),
      `timings` (seconds per stage, summed over tiles), `models`, `created`.
    """

    source: str
    queries: list[str]
    grid: TileGrid
    features: list[TiledFeature]
    tile_records: list[dict]
    instances: list[dict]
    models: dict
    timings: dict[str, float]
    stats: dict[str, int]
    created: str = field(default_factory=utc_now)
    #: the service's id for refining this result (POST /v1/views/{view_id}/refine); "" outside the service
    view_id: str = ""
    tiled = True  # Result: the layers carry `raster`, `tile`, `tiles` and `parts`

    @property
    def crs(self) -> CRS | None:
        return self.grid.crs

    @property
    def status(self) -> str:
        if self.features:
            return "ok"
        statuses = {r["status"] for r in self.tile_records if r["status"] != "nodata"}
        return "unparsed" if statuses == {"unparsed"} else "empty"

    @property
    def area(self) -> float:
        return float(sum(f.area for f in self.features))

    @property
    def message(self) -> str:
        n, tiles = len(self.features), self.stats.get("tiles", 0)
        where = f"in {tiles} tile{'s' if tiles != 1 else ''}"
        if self.status == "empty":
            return f"The model found nothing that matches the quer{'ies' if len(self.queries) > 1 else 'y'} {where}."
        if self.status == "unparsed":
            return f"No tile gave a usable answer {where}; no mask was made."
        return found_sentence(n, "feature", self.area, area_unit(self.crs), f" {where}")

    @property
    def reasoning(self) -> str:
        """The tiles' reasoning, one "[tile] text" paragraph per tile (and query, when there are several)."""
        return "\n\n".join(
            f"[{r['tile']}{'' if len(self.queries) == 1 else ' ' + repr(r['query'])}] {r['reasoning']}"
            for r in self.tile_records
            if r["reasoning"]
        )

    def to_dict(self) -> dict:
        crs = self.crs
        return {
            "query": self.queries[0] if self.queries else "",
            "queries": list(self.queries),
            "status": self.status,
            "message": self.message,
            "reasoning": self.reasoning,
            "answer": "",
            "instances": self.instances,
            "mask": {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": mapping(f.geometry),
                        "properties": {
                            "instance": f.instance,
                            "area": f.area,
                            "score": f.score,
                            "query": f.query,
                            "tile": f.tile,
                            "tiles": f.tiles,
                            "parts": f.parts,
                        },
                    }
                    for f in self.features
                ],
            },
            "tiles": self.tile_records,
            "crs": crs.to_wkt() if crs else None,
            "epsg": crs_epsg(crs),
            "area_unit": area_unit(crs),
            "read": {"mode": "tiled", "source": self.source, **self.grid.to_dict(), **self.stats},
            "timings": self.timings,
            "models": self.models,
            "created": self.created,
            "view_id": self.view_id,
        }

    def layer_rows(self, extra: dict | None = None) -> dict[str, list[Row]]:
        base = {
            "reasoner": self.models.get("reasoner", ""),
            "segmenter": self.models.get("segmenter", ""),
            "created": self.created,
            "source": self.source,
            "raster": self.source,
            **(extra or {}),
        }
        area_key = area_column(self.crs is not None)
        rows: dict[str, list[Row]] = {name: [] for name in LAYERS}
        for f in self.features:
            rows["mask"].append(
                (
                    f.geometry,
                    {
                        **base,
                        "query": f.query,
                        "instance": f.instance,
                        area_key: f.area,
                        "score": f.score,
                        "status": "ok",
                        "reasoning": f.reasoning,
                        "tile": f.tile,
                        "tiles": ",".join(f.tiles),
                        "parts": ",".join(f.parts),
                    },
                )
            )
        for inst in self.instances:
            attrs = {**base, "query": inst["query"], "instance": inst["instance"], "tile": inst["tile"]}
            for j, (xy, inside) in enumerate(zip(inst["points_crs"], inst.get("points_in_core", []))):
                if inside:  # a point outside the tile's core is another tile's to show
                    rows["prompt_points"].append((Point(xy), {**attrs, "point": j + 1}))
            if inst.get("box_crs"):  # None when the model gave only points
                rows["prompt_boxes"].append((MultiPolygon([Polygon(inst["box_crs"])]), attrs))
        return rows

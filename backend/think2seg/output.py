"""Write results as GIS layers: a GeoPackage with `mask`, `prompt_points`, `prompt_boxes`, or GeoJSON files.

Every feature carries the query, the instance, the model ids and a timestamp; the mask features carry the
reasoning too, and so does the GeoPackage layer description. Batch runs append (`append=True`) and add
their own columns (`extra`: the raster, the tile).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import shapely
from pyogrio import list_layers, set_gdal_config_options
from pyogrio.raw import write as ogr_write
from shapely.geometry import MultiPolygon, Point, Polygon

from .errors import BadInput
from .pipeline import SegmentResult

LAYERS = ("mask", "prompt_points", "prompt_boxes")

# A GeoPackage is SQLite: without per-statement fsync, writing the three layers takes a third of the time.
# A crash mid-write can leave a broken file, which the next run overwrites (outputs are never appended to
# by a single segment run).
set_gdal_config_options({"OGR_SQLITE_SYNCHRONOUS": "OFF"})


def result_rows(result: SegmentResult, extra: dict | None = None) -> dict[str, list[tuple[object, dict]]]:
    """(geometry, attributes) per layer for one result."""
    base = {
        "query": result.query, "reasoner": result.models["reasoner"], "segmenter": result.models["segmenter"],
        "created": result.created, "source": result.tile.source, **(extra or {}),
    }
    rows: dict[str, list] = {name: [] for name in LAYERS}
    for inst in result.instances:
        if not inst.geometry.is_empty:
            rows["mask"].append((inst.geometry, {
                **base, "instance": inst.instance, "area_m2" if result.tile.crs else "area_px": inst.area,
                "score": inst.score, "status": result.status, "reasoning": result.reasoning,
            }))
        for j, xy in enumerate(inst.points_crs):
            rows["prompt_points"].append((Point(xy), {**base, "instance": inst.instance, "point": j + 1}))
        if inst.box_crs is not None:  # None when the model gave only points
            rows["prompt_boxes"].append((MultiPolygon([Polygon(inst.box_crs)]), {**base, "instance": inst.instance}))
    return rows


_GEOMETRY_TYPES = {"mask": "MultiPolygon", "prompt_points": "Point", "prompt_boxes": "MultiPolygon"}


def _write_layer(path: str, layer: str | None, rows, crs_wkt: str | None, driver: str, append: bool,
                 description: str | None, template: dict) -> None:
    names = list(template)
    for _, attrs in rows:
        for k in attrs:
            if k not in names:
                names.append(k)
    geoms = np.array([shapely.to_wkb(g) for g, _ in rows], dtype=object)
    fields = []
    for name in names:
        sample = next((a[name] for _, a in rows if name in a), template.get(name, ""))
        kind = object if isinstance(sample, str) else (np.int64 if isinstance(sample, (int, np.integer)) else np.float64)
        fields.append(np.array([a.get(name, template.get(name)) for _, a in rows], dtype=kind))
    opts = {}
    if description and driver == "GPKG" and not append:
        opts["DESCRIPTION"] = description[:4000]
    ogr_write(
        path, geoms, fields, names, layer=layer, driver=driver, crs=crs_wkt,
        geometry_type=_GEOMETRY_TYPES[(layer or "mask").split("__")[0]], append=append, layer_options=opts or None,
    )


# Column types of empty layers (pyogrio needs one sample value per field).
_TEMPLATES = {
    "mask": {"query": "", "reasoner": "", "segmenter": "", "created": "", "source": "", "instance": 0,
             "area_m2": 0.0, "score": 0.0, "status": "", "reasoning": ""},
    "prompt_points": {"query": "", "reasoner": "", "segmenter": "", "created": "", "source": "", "instance": 0, "point": 0},
    "prompt_boxes": {"query": "", "reasoner": "", "segmenter": "", "created": "", "source": "", "instance": 0},
}


def layer_template(name: str, extra: dict | None = None, pixel_areas: bool = False) -> dict:
    """The columns (with a sample value giving each one's type) of one output layer."""
    template = {**_TEMPLATES[name], **(extra or {})}
    if pixel_areas and name == "mask":
        template["area_px"] = template.pop("area_m2")
    return template


def write_layer_rows(path: str | os.PathLike, rows: dict[str, list], crs_wkt: str | None, append: bool,
                     extra_columns: dict | None = None, suffix: str = "", description: str | None = None) -> None:
    """Write (geometry, attributes) rows into a GeoPackage's three layers (`mask{suffix}` ...), creating
    them with the template's columns (+ `extra_columns`) or appending to them."""
    for name in LAYERS:
        template = layer_template(name, extra_columns, pixel_areas=crs_wkt is None)
        layer = name + suffix
        exists = append and os.path.exists(path) and layer in {row[0] for row in list_layers(path)}
        _write_layer(str(path), layer, rows.get(name, []), crs_wkt, "GPKG", exists,
                     description if name == "mask" else None, template)


def write_results(results: list[SegmentResult], path: str | os.PathLike, append: bool = False,
                  extra: list[dict] | None = None) -> dict[str, str]:
    """Write results to OUT.gpkg (three layers) or OUT.geojson (+ OUT.points.geojson, OUT.boxes.geojson).

    Returns the written file per layer. All results must share one CRS."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gpkg", ".geojson", ".json"):
        raise BadInput(f"Cannot write {path.name}: the output must end in .gpkg or .geojson.", code="bad_output")
    crss = {r.crs.to_wkt() if r.crs else None for r in results}
    if len(crss) > 1:
        raise BadInput("These results are in different CRSs; write them to separate files.", code="mixed_crs")
    crs_wkt = crss.pop() if crss else None
    rows: dict[str, list] = {name: [] for name in LAYERS}
    for k, r in enumerate(results):
        for name, rs in result_rows(r, extra[k] if extra else None).items():
            rows[name].extend(rs)
    description = "\n\n".join(f"Query: {r.query}\nReasoning: {r.reasoning}" for r in results[:20])
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gpkg" and path.exists() and not append:
        path.unlink()
    written = {}
    for name in LAYERS:
        if suffix == ".gpkg":
            target, layer, driver = str(path), name, "GPKG"
        else:
            target = str(path) if name == "mask" else str(path.with_suffix(f".{name.split('_')[-1]}.geojson"))
            layer, driver = name, "GeoJSON"
            if os.path.exists(target) and not append:
                os.remove(target)
        template = dict(_TEMPLATES[name])
        if name == "mask" and results and results[0].crs is None:
            template["area_px"] = template.pop("area_m2")
        _write_layer(target, layer, rows[name], crs_wkt, driver, append and os.path.exists(target),
                     description if name == "mask" else None, template)
        written[name] = target
    return written

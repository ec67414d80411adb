"""Result layers from the backend's answer: mask polygons, prompt points and prompt boxes.

The feature-building functions serve both the panel (memory or GeoPackage layers in a project group) and the
Processing algorithm (feature sinks), so both give the same fields and geometry.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from osgeo import ogr
from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsDistanceArea,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsLayerTreeGroup,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
    QgsUnitTypes,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QDateTime

from .compat import FIELD_BOOL, FIELD_DATETIME, FIELD_DOUBLE, FIELD_INT, FIELD_STRING, make_field
from .errors import BAD_ANSWER, WRITE_FAILED, Think2SegError
from .i18n import number_text, tr
from .resource_files import style_path

ogr.UseExceptions()

AREA_FIELD = "area_m2"  # the CLI's and the backend's name: square metres, geodesic for lon/lat
MASKS_STYLE = "think2seg_masks.qml"
POINTS_STYLE = "think2seg_points.qml"
BOXES_STYLE = "think2seg_boxes.qml"


@dataclass
class ResultContext:
    """Provenance written on every feature."""

    query: str
    source_layer: str
    crs: QgsCoordinateReferenceSystem
    sam_size: str
    created: QDateTime = field(default_factory=QDateTime.currentDateTime)
    clip_geometry: QgsGeometry | None = None  # selected polygons, in the raster's CRS


@dataclass
class ResultLayers:
    masks: QgsVectorLayer
    points: QgsVectorLayer
    boxes: QgsVectorLayer
    group_name: str
    message: str

    def layers(self) -> list[QgsVectorLayer]:
        return [self.masks, self.points, self.boxes]


# -- fields ------------------------------------------------------------------------------------------------
def _common_fields() -> list[QgsField]:
    return [
        make_field("query", FIELD_STRING),
        make_field("instance", FIELD_INT),
        make_field("source_layer", FIELD_STRING),
        make_field("reasoner", FIELD_STRING),
        make_field("segmenter", FIELD_STRING),
        make_field("sam_size", FIELD_STRING),
        make_field("created", FIELD_DATETIME),
    ]


def _fields(extra: list[QgsField]) -> QgsFields:
    fields = QgsFields()
    for f in _common_fields() + extra:
        fields.append(f)
    return fields


def mask_fields() -> QgsFields:
    return _fields(
        [
            make_field(AREA_FIELD, FIELD_DOUBLE),
            make_field("score", FIELD_DOUBLE),
            make_field("reasoning", FIELD_STRING),
            make_field("edited", FIELD_BOOL),  # refined by the user (think2seg_qgis.refine_tool)
        ]
    )


def pixel_field(name: str):
    """A pixel coordinate field shown with PIXEL_DECIMALS decimals (the attribute table shows a double whole)."""
    field = make_field(name, FIELD_DOUBLE)
    field.setPrecision(PIXEL_DECIMALS)
    return field


def point_fields() -> QgsFields:
    return _fields(
        [
            make_field("point", FIELD_INT),
            pixel_field("x_pixel"),
            pixel_field("y_pixel"),
            make_field("source", FIELD_STRING),  # "model" or "user" (a refine click)
            make_field("label", FIELD_INT),  # 1 positive, 0 negative
        ]
    )


def box_fields() -> QgsFields:
    return _fields(
        [make_field("box_pixel", FIELD_STRING), make_field("score", FIELD_DOUBLE), make_field("source", FIELD_STRING)]
    )


# -- the answer --------------------------------------------------------------------------------------------
def answer_is_empty(answer: dict) -> bool:
    features = ((answer.get("mask") or {}).get("features")) or []
    return answer.get("status") in ("empty", "unparsed") or not features


def empty_sentence(answer: dict, query: str, source_layer: str) -> str:
    if answer.get("status") == "unparsed":
        return tr(
            "Nothing matches “{query}” in “{layer}”: the model gave no usable answer (see its raw answer in the panel)."
        ).format(query=query, layer=source_layer)
    return tr("Nothing matches “{query}” in “{layer}”.").format(query=query, layer=source_layer)


def _instances(answer: dict) -> dict[int, dict]:
    out = {}
    for position, item in enumerate(answer.get("instances") or []):
        if isinstance(item, dict):
            out[int(item.get("instance", position))] = item
    return out


def prompt_items(answer: dict) -> list[tuple[int, dict]]:
    """(mask instance, prompt item) pairs: the prompts of each mask feature, numbered as the masks are.

    A tiled answer numbers its prompts per tile (``tile``, ``instance``) and its masks per merged region, each
    listing the ``tile:instance`` parts merged into it: a prompt belongs to the mask feature holding its part
    (none: its piece was dropped as a speck, and so is the prompt). A feature may so have several tiles'
    prompts. One read has one item per instance, numbered as its mask."""
    items = [item for item in answer.get("instances") or [] if isinstance(item, dict)]
    if not any("tile" in item for item in items):
        return list(_instances(answer).items())
    owner = {}
    for position, feature in enumerate((answer.get("mask") or {}).get("features") or []):
        props = (feature or {}).get("properties") or {}
        for part in props.get("parts") or []:
            owner[str(part)] = int(props.get("instance", position))
    out = []
    for position, item in enumerate(items):
        instance = owner.get(f"{item.get('tile')}:{item.get('instance', position)}")
        if instance is not None:
            out.append((instance, item))
    return out


def _geometry_from_geojson(geometry: dict) -> QgsGeometry:
    try:
        ogr_geometry = ogr.CreateGeometryFromJson(json.dumps(geometry))
    except (RuntimeError, TypeError, ValueError):
        ogr_geometry = None
    if ogr_geometry is None:
        raise Think2SegError(BAD_ANSWER, tr("The backend returned a mask geometry that cannot be read."))
    result = QgsGeometry()
    result.fromWkb(bytes(ogr_geometry.ExportToIsoWkb()))
    return result


_SAM_NAMES = (
    ("base_plus", "base_plus"),
    ("b+", "base_plus"),
    ("large", "large"),
    ("hiera_l", "large"),
    ("small", "small"),
    ("hiera_s", "small"),
    ("tiny", "tiny"),
    ("hiera_t", "tiny"),
)


def sam_size_used(answer: dict, requested: str) -> str:
    """The SAM2 size the backend used: its ``models.sam_size``, else read from its segmenter id, else the size
    asked for."""
    models = answer.get("models") or {}
    if str(models.get("sam_size") or "") in {size for _, size in _SAM_NAMES}:
        return str(models["sam_size"])
    segmenter = str(models.get("segmenter", "")).lower()
    for key, size in _SAM_NAMES:
        if key in segmenter:
            return size
    return requested


def sam_size_note(answer: dict, requested: str) -> str:
    """A sentence when the backend drew the masks with another SAM2 size than the one asked for."""
    used = sam_size_used(answer, requested)
    if not requested or used == requested:
        return ""
    return tr("Masks drawn with SAM2 {used}: the backend did not use the size asked for ({requested}).").format(
        used=used, requested=requested
    )


def area_m2(geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem) -> float:
    """Square metres, by the backend's rule (georef.area_m2): planar times the unit's factor squared for a
    projected CRS, on the ellipsoid for a geographic one."""
    if crs.isGeographic():
        measure = QgsDistanceArea()
        measure.setSourceCrs(crs, QgsProject.instance().transformContext())
        measure.setEllipsoid(crs.ellipsoidAcronym() or "EPSG:7030")
        return measure.convertAreaMeasurement(measure.measureArea(geometry), QgsUnitTypes.AreaUnit.AreaSquareMeters)
    factor = QgsUnitTypes.fromUnitToUnitFactor(crs.mapUnits(), QgsUnitTypes.DistanceUnit.DistanceMeters)
    return geometry.area() * factor * factor


def _common_attributes(context: ResultContext, answer: dict, instance: int) -> list:
    models = answer.get("models") or {}
    return [
        context.query,
        instance,
        context.source_layer,
        str(models.get("reasoner", "")),
        str(models.get("segmenter", "")),
        sam_size_used(answer, context.sam_size),
        context.created,
    ]


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


#: Pixel coordinates in the exported image as people read them: an area read resampled gives 289.20000000000005.
PIXEL_DECIMALS = 2


def pixel_value(value) -> float | None:
    number = _number(value)
    return None if number is None else round(number, PIXEL_DECIMALS)


def pixel_text(values) -> str:
    """A box's pixel coordinates as its attribute holds them: "289.2,14,301.75,40"."""
    return ",".join(f"{round(float(v), PIXEL_DECIMALS):g}" for v in values)


def mask_features(answer: dict, context: ResultContext) -> list[QgsFeature]:
    fields = mask_fields()
    instances = _instances(answer)
    reasoning = str(answer.get("reasoning") or "")
    out = []
    for position, item in enumerate((answer.get("mask") or {}).get("features") or []):
        if not isinstance(item, dict) or not item.get("geometry"):
            continue
        props = item.get("properties") or {}
        instance = int(props.get("instance", position))
        geometry = _geometry_from_geojson(item["geometry"])
        if geometry.isEmpty():
            continue
        if context.clip_geometry is not None:
            geometry = geometry.intersection(context.clip_geometry)
            if geometry.isEmpty() or geometry.type() != QgsWkbTypes.GeometryType.PolygonGeometry:
                continue
        # Measured here, on the geometry the layer holds (clipped or not), so panel and Processing agree.
        area = area_m2(geometry, context.crs)
        geometry.convertToMultiType()
        feature = QgsFeature(fields)
        feature.setGeometry(geometry)
        feature.setAttributes(
            _common_attributes(context, answer, instance)
            + [area, _number(props.get("score", instances.get(instance, {}).get("score"))), reasoning, False]
        )
        out.append(feature)
    return out


def point_features(answer: dict, context: ResultContext, keep: set[int] | None = None) -> list[QgsFeature]:
    fields = point_fields()
    out = []
    numbers: dict[int, int] = {}  # a running point number per mask instance (a tiled one has several tiles')
    for instance, item in prompt_items(answer):
        if keep is not None and instance not in keep:
            continue
        pixels = item.get("points_pixel") or []
        for index, xy in enumerate(item.get("points_crs") or []):
            if not isinstance(xy, (list, tuple)) or len(xy) < 2:
                continue
            pixel = pixels[index] if index < len(pixels) and len(pixels[index]) >= 2 else [None, None]
            number = numbers.get(instance, 0)
            numbers[instance] = number + 1
            feature = QgsFeature(fields)
            feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(float(xy[0]), float(xy[1]))))
            feature.setAttributes(
                _common_attributes(context, answer, instance)
                + [number, pixel_value(pixel[0]), pixel_value(pixel[1]), "model", 1]
            )
            out.append(feature)
    return out


def box_features(answer: dict, context: ResultContext, keep: set[int] | None = None) -> list[QgsFeature]:
    fields = box_fields()
    out = []
    for instance, item in prompt_items(answer):
        if keep is not None and instance not in keep:
            continue
        ring = [QgsPointXY(float(xy[0]), float(xy[1])) for xy in (item.get("box_crs") or []) if len(xy) >= 2]
        if len(ring) < 4:
            continue
        if ring[0] != ring[-1]:
            ring.append(ring[0])
        feature = QgsFeature(fields)
        feature.setGeometry(QgsGeometry.fromPolygonXY([ring]))
        box_pixel = item.get("box_pixel") or []
        feature.setAttributes(
            _common_attributes(context, answer, instance) + [pixel_text(box_pixel), _number(item.get("score")), "model"]
        )
        out.append(feature)
    return out


def kept_instances(masks: list[QgsFeature]) -> set[int]:
    return {int(f["instance"]) for f in masks}


# -- layers ------------------------------------------------------------------------------------------------
def _memory_layer(kind: str, name: str, crs: QgsCoordinateReferenceSystem, fields: QgsFields) -> QgsVectorLayer:
    layer = QgsVectorLayer(f"{kind}?index=yes", name, "memory")
    layer.setCrs(crs)
    layer.dataProvider().addAttributes(fields.toList())
    layer.updateFields()
    return layer


def apply_style(layer: QgsVectorLayer, style: str) -> None:
    path = style_path(style)
    if path:
        layer.loadNamedStyle(path)


def _set_abstract(layer: QgsVectorLayer, text: str) -> None:
    metadata = layer.metadata()
    metadata.setAbstract(text)
    layer.setMetadata(metadata)
    # The layer properties' abstract (server tab): QgsMapLayer.setAbstract() until 3.38, which deprecates it for
    # serverProperties() (a DeprecationWarning on 3.40 if called there).
    if Qgis.QGIS_VERSION_INT >= 33800 and hasattr(layer, "serverProperties"):
        layer.serverProperties().setAbstract(text)
    elif hasattr(layer, "setAbstract"):
        layer.setAbstract(text)


def layer_names(query: str) -> dict[str, str]:
    """The result layers' names, after the query (several runs stay apart in the layer tree and legend)."""
    short = group_name_for(query) if len(query) <= 40 else group_name_for(query)[:39] + "…"
    return {
        "masks": tr("{query} — masks").format(query=short),
        "points": tr("{query} — prompt points").format(query=short),
        "boxes": tr("{query} — prompt boxes").format(query=short),
    }


def group_name_for(query: str) -> str:
    query = " ".join(query.split())
    return query if len(query) <= 80 else query[:79] + "…"


def slug(text: str, length: int = 40) -> str:
    value = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return (value[:length].rstrip("_")) or "query"


def geopackage_path_for(file_path: str | None, fallback_dir: str) -> str:
    """``<raster stem>_think2seg.gpkg`` next to the raster, or in ``fallback_dir`` when that is not writable."""
    if file_path:
        folder = os.path.dirname(os.path.abspath(file_path))
        stem = os.path.splitext(os.path.basename(file_path))[0]
        if os.access(folder, os.W_OK):
            return os.path.join(folder, f"{stem}_think2seg.gpkg")
        return os.path.join(fallback_dir, f"{stem}_think2seg.gpkg")
    return os.path.join(fallback_dir, "think2seg_results.gpkg")


def build_result_layers(
    answer: dict,
    context: ResultContext,
    destination: str = "memory",
    geopackage: str | None = None,
) -> ResultLayers:
    """Layers (not yet in a project) for a non-empty answer; raise Think2SegError when writing fails."""
    masks = mask_features(answer, context)
    keep = kept_instances(masks)
    points = point_features(answer, context, keep)
    boxes = box_features(answer, context, keep)
    group = group_name_for(context.query)
    names = layer_names(context.query)
    layers = {
        "masks": _memory_layer("MultiPolygon", names["masks"], context.crs, mask_fields()),
        "points": _memory_layer("Point", names["points"], context.crs, point_fields()),
        "boxes": _memory_layer("Polygon", names["boxes"], context.crs, box_fields()),
    }
    for key, features in (("masks", masks), ("points", points), ("boxes", boxes)):
        layers[key].dataProvider().addFeatures(features)
        layers[key].updateExtents()
    if destination == "geopackage" and geopackage:
        stamp = context.created.toString("yyyyMMdd_HHmmss")
        base = _free_table_base(geopackage, f"{slug(context.query)}_{stamp}")
        layers = {key: _write_geopackage(layer, geopackage, f"{base}_{key}") for key, layer in layers.items()}
    for key, style in (("masks", MASKS_STYLE), ("points", POINTS_STYLE), ("boxes", BOXES_STYLE)):
        apply_style(layers[key], style)
    reasoning = str(answer.get("reasoning") or "").strip()
    _set_abstract(
        layers["masks"],
        tr("Think2Seg answer to “{query}” on “{layer}”.\n\nReasoning:\n{reasoning}")
        .format(query=context.query, layer=context.source_layer, reasoning=reasoning)
        .strip(),
    )
    # The backend's sentence only when nothing was found (why); else ours, in the locale's numbers.
    message = found_sentence(masks) if masks else str(answer.get("message") or "")
    mark_result_layers(layers, answer)
    return ResultLayers(layers["masks"], layers["points"], layers["boxes"], group, message)


def area_text(area_m2_total: float) -> str:
    """Hectares from 1 ha up, m² below, with the locale's thousands separators ("1,496.47 ha" in English)."""
    if area_m2_total >= 1e4:
        return tr("{area} ha").format(area=number_text(area_m2_total / 1e4, 2))
    return tr("{area} m²").format(area=number_text(area_m2_total))


def found_sentence(masks) -> str:
    """ "3 features found, 1,496.47 ha in all.": a run's answer in the user's words and numbers, from its mask
    features (a layer or a list of features)."""
    n, total = _count_and_area(masks.getFeatures() if isinstance(masks, QgsVectorLayer) else masks)
    sentence = tr("1 feature found, {area} in all.") if n == 1 else tr("{n} features found, {area} in all.")
    return sentence.format(n=number_text(n), area=area_text(total))


def _count_and_area(features) -> tuple[int, float]:
    n, total = 0, 0.0
    for feature in features:
        n += 1
        try:
            total += float(feature.attribute(AREA_FIELD) or 0.0)
        except (KeyError, TypeError, ValueError):
            pass
    return n, total


def summary_sentence(masks: QgsVectorLayer, edited: bool = False) -> str:
    """The result's count and area as its masks layer holds them now (after refine edits too)."""
    n, total = _count_and_area(masks.getFeatures())
    sentence = (tr("1 feature, {area} in all") if n == 1 else tr("{n} features, {area} in all")).format(
        n=number_text(n), area=area_text(total)
    )
    return sentence + (tr(" (after your edits)") if edited else "") + "."


#: Layer custom properties that let the refine tool find an answer's layers and its backend view.
ROLE_PROPERTY = "think2seg/role"
VIEW_PROPERTY = "think2seg/view_id"


def mark_result_layers(layers: dict[str, QgsVectorLayer], answer: dict) -> None:
    """Tag each layer with its role (masks/points/boxes) and the answer's view id (saved with the project)."""
    for key, layer in layers.items():
        layer.setCustomProperty(ROLE_PROPERTY, key)
        layer.setCustomProperty(VIEW_PROPERTY, str(answer.get("view_id") or ""))


def _free_table_base(path: str, base: str) -> str:
    """``base`` or ``base_2``, ``base_3``… so that a run never replaces the tables of an earlier one."""
    if not os.path.exists(path):
        return base
    try:
        dataset = ogr.Open(path)
        names = {dataset.GetLayer(i).GetName() for i in range(dataset.GetLayerCount())} if dataset else set()
    except RuntimeError:
        names = set()
    candidate, number = base, 1
    while any(f"{candidate}_{key}" in names for key in ("masks", "points", "boxes")):
        number += 1
        candidate = f"{base}_{number}"
    return candidate


def _write_geopackage(layer: QgsVectorLayer, path: str, table: str) -> QgsVectorLayer:
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = table
    options.fileEncoding = "UTF-8"
    if os.path.exists(path):
        options.actionOnExistingFile = QgsVectorFileWriter.ActionOnExistingFile.CreateOrOverwriteLayer
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    result = QgsVectorFileWriter.writeAsVectorFormatV3(layer, path, QgsProject.instance().transformContext(), options)
    error, message = result[0], result[1]
    if error != QgsVectorFileWriter.WriterError.NoError:
        raise Think2SegError(
            WRITE_FAILED, tr("Could not write the results to {path}: {message}").format(path=path, message=message)
        )
    written = QgsVectorLayer(f"{path}|layername={table}", layer.name(), "ogr")
    if not written.isValid():
        raise Think2SegError(
            WRITE_FAILED, tr("The results written to {path} could not be opened again.").format(path=path)
        )
    return written


def add_to_project(result: ResultLayers, project: QgsProject | None = None) -> QgsLayerTreeGroup:
    """Add the three layers to a group (named after the query) at the top of the layer tree."""
    project = project or QgsProject.instance()
    root = project.layerTreeRoot()
    group = root.insertGroup(0, result.group_name)
    for layer in result.layers():
        project.addMapLayer(layer, False)
        group.addLayer(layer)
    group.setExpanded(True)
    return group


def answer_extent(result: ResultLayers, crs: QgsCoordinateReferenceSystem, project: QgsProject | None = None):
    """The extent of the answer in ``crs`` (e.g. the canvas's), with a margin; None when it has no geometry."""
    extent = QgsRectangle()
    for layer in (result.masks, result.boxes):
        layer.updateExtents()
        if layer.featureCount() and not layer.extent().isEmpty():
            extent.combineExtentWith(layer.extent())
    if extent.isNull() or extent.isEmpty():
        return None
    if crs.isValid() and crs != result.masks.crs():
        transform = QgsCoordinateTransform(
            result.masks.crs(), crs, (project or QgsProject.instance()).transformContext()
        )
        extent = transform.transformBoundingBox(extent)
    extent.scale(1.5)
    return extent

"""The area to read, in the raster's CRS: the visible map extent, the whole layer, or selected polygons."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsCsException,
    QgsGeometry,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
    QgsWkbTypes,
)

from .errors import EMPTY_AREA, Think2SegError
from .export import RasterSource
from .i18n import tr


def whole_layer(source: RasterSource) -> QgsRectangle:
    return QgsRectangle(source.extent)


def _transform(
    src: QgsCoordinateReferenceSystem,
    dst: QgsCoordinateReferenceSystem,
    context: QgsCoordinateTransformContext | None,
) -> QgsCoordinateTransform:
    return QgsCoordinateTransform(src, dst, context or QgsProject.instance().transformContext())


def map_extent(
    extent: QgsRectangle,
    extent_crs: QgsCoordinateReferenceSystem,
    source: RasterSource,
    context: QgsCoordinateTransformContext | None = None,
) -> QgsRectangle:
    """A map extent (e.g. the canvas's, in the project CRS) as a rectangle in the raster's CRS, clipped to it."""
    rect = QgsRectangle(extent)
    if extent_crs.isValid() and extent_crs != source.crs:
        try:
            rect = _transform(extent_crs, source.crs, context).transformBoundingBox(rect)
        except QgsCsException:
            raise Think2SegError(
                EMPTY_AREA,
                tr("The visible map extent cannot be expressed in the CRS of “{name}”.").format(name=source.name),
            ) from None
    clipped = rect.intersect(source.extent)
    if clipped.isEmpty():
        raise Think2SegError(
            EMPTY_AREA,
            tr("The visible map does not show “{name}”: pan over it, or choose “Whole layer” as the area.").format(
                name=source.name
            ),
        )
    return clipped


def selected_polygons(
    layer: QgsVectorLayer, source: RasterSource, context: QgsCoordinateTransformContext | None = None
) -> tuple[QgsRectangle, QgsGeometry]:
    """(bounding box, union of the selected polygons), both in the raster's CRS."""
    if layer is None or not layer.isValid() or layer.geometryType() != QgsWkbTypes.GeometryType.PolygonGeometry:
        raise Think2SegError(EMPTY_AREA, tr("Choose a polygon layer whose selected features mark the area to read."))
    geometries = [f.geometry() for f in layer.getSelectedFeatures() if f.hasGeometry()]
    if not geometries:
        raise Think2SegError(
            EMPTY_AREA,
            tr("No feature is selected in “{name}”: select the polygons that mark the area.").format(name=layer.name()),
        )
    union = QgsGeometry.unaryUnion(geometries)
    if layer.crs().isValid() and layer.crs() != source.crs:
        union = QgsGeometry(union)
        try:
            union.transform(_transform(layer.crs(), source.crs, context))
        except QgsCsException:
            raise Think2SegError(
                EMPTY_AREA,
                tr("The selected polygons cannot be expressed in the CRS of “{name}”.").format(name=source.name),
            ) from None
    box = union.boundingBox().intersect(source.extent)
    if box.isEmpty():
        raise Think2SegError(EMPTY_AREA, tr("The selected polygons do not overlap “{name}”.").format(name=source.name))
    return box, union

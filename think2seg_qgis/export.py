"""Export an area of any raster layer QGIS can draw to a georeferenced GeoTIFF of bounded size.

Two ways, chosen per layer:
- a GDAL dataset with at least three bands and a geotransform: read the window with GDAL (``gdal.Translate``,
  or ``gdal.Warp`` for a rotated geotransform), keeping the bands, their data type and nodata;
- anything else (WMS/XYZ, PostGIS raster, single-band or paletted rasters): draw the layer as QGIS shows it
  with a map renderer job and write the RGB picture with its geotransform and CRS.

``RasterSource`` is captured on the main thread; ``export_raster_area`` runs in a worker thread.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from osgeo import gdal
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsMapRendererCustomPainterJob,
    QgsMapSettings,
    QgsMultiBandColorRenderer,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QImage, QPainter

from .errors import EMPTY_AREA, EXPORT_FAILED, NO_CRS, Think2SegError
from .i18n import tr
from .segmentation import cancelled_error

gdal.UseExceptions()

MODE_GDAL = "gdal"
MODE_RENDERED = "rendered"


def no_crs_sentence(name: str) -> str:
    return tr(
        "The layer “{name}” has no coordinate reference system, so its answer could not be placed on the map: "
        "set its CRS (Layer Properties > Source) and run again."
    ).format(name=name)


@dataclass
class RasterSource:
    """What the export needs from a raster layer, read on the main thread."""

    name: str
    layer_id: str
    crs: QgsCoordinateReferenceSystem
    extent: QgsRectangle
    units_per_pixel_x: float
    units_per_pixel_y: float
    gdal_path: str | None = None  # set when GDAL reads the pixels directly
    file_path: str | None = None  # a file on disk (for "GeoPackage next to the raster")
    display_bands: list[int] | None = None
    render_layer: QgsRasterLayer | None = field(default=None, repr=False)  # a clone for drawing off-thread

    @classmethod
    def from_layer(cls, layer: QgsRasterLayer) -> RasterSource:
        if layer is None or not layer.isValid():
            raise Think2SegError(EXPORT_FAILED, tr("Choose a valid raster layer first."))
        if not layer.crs().isValid():
            raise Think2SegError(NO_CRS, no_crs_sentence(layer.name()))
        gdal_path, file_path = _gdal_path(layer)
        display_bands = None
        renderer = layer.renderer()
        if isinstance(renderer, QgsMultiBandColorRenderer):
            bands = [renderer.redBand(), renderer.greenBand(), renderer.blueBand()]
            if all(b > 0 for b in bands):
                display_bands = bands
        return cls(
            name=layer.name(),
            layer_id=layer.id(),
            crs=QgsCoordinateReferenceSystem(layer.crs()),
            extent=QgsRectangle(layer.extent()),
            units_per_pixel_x=float(layer.rasterUnitsPerPixelX() or 0.0),
            units_per_pixel_y=float(layer.rasterUnitsPerPixelY() or 0.0),
            gdal_path=gdal_path,
            file_path=file_path,
            display_bands=display_bands,
            render_layer=None if gdal_path else layer.clone(),
        )


@dataclass
class ExportedRaster:
    path: str
    width: int
    height: int
    extent: QgsRectangle
    crs: QgsCoordinateReferenceSystem
    mode: str
    bands: list[int] | None
    scale: float  # exported pixels per native pixel (1.0 = full resolution)


def _gdal_path(layer: QgsRasterLayer) -> tuple[str | None, str | None]:
    """(a dataset GDAL can read with >= 3 bands and a geotransform, the file on disk) for this layer."""
    if layer.providerType() != "gdal":
        return None, None
    source = layer.source()
    try:
        dataset = gdal.Open(source)
    except RuntimeError:
        return None, None
    if dataset is None:
        return None, None
    file_path = source if _is_file(source) else None
    band = dataset.GetRasterBand(1) if dataset.RasterCount else None
    usable = (
        dataset.RasterCount >= 3
        and band is not None
        and band.GetColorTable() is None
        and dataset.GetGeoTransform(can_return_null=True) is not None
    )
    return (source if usable else None), file_path


def _is_file(source: str) -> bool:
    return os.path.isfile(source)


def bounded_size(width: float, height: float, max_size: int) -> tuple[int, int, float]:
    """(columns, rows, scale) so that the long side is at most ``max_size``."""
    long_side = max(width, height)
    scale = min(1.0, max_size / long_side) if long_side > 0 else 1.0
    return max(1, int(round(width * scale))), max(1, int(round(height * scale))), scale


def export_raster_area(
    source: RasterSource,
    area: QgsRectangle,
    out_path: str,
    max_size: int = 2048,
    is_cancelled: Callable[[], bool] = lambda: False,
) -> ExportedRaster:
    """Write ``area`` (in the layer's CRS) of ``source`` to a GeoTIFF at ``out_path``, long side <= max_size."""
    clipped = QgsRectangle(area).intersect(source.extent)
    if clipped.isEmpty() or clipped.width() <= 0 or clipped.height() <= 0:
        raise Think2SegError(
            EMPTY_AREA,
            tr(
                "The area to read does not overlap the layer “{name}”: pan the map over it or choose “Whole layer”."
            ).format(name=source.name),
        )
    if source.gdal_path:
        return _export_with_gdal(source, clipped, out_path, max_size, is_cancelled)
    return _export_rendered(source, clipped, out_path, max_size, is_cancelled)


def _export_with_gdal(source, area, out_path, max_size, is_cancelled) -> ExportedRaster:
    dataset = gdal.Open(source.gdal_path)
    gt = dataset.GetGeoTransform()
    rotated = gt[2] != 0 or gt[4] != 0
    px = math.hypot(gt[1], gt[4]) or source.units_per_pixel_x or 1.0
    py = math.hypot(gt[2], gt[5]) or source.units_per_pixel_y or 1.0
    width, height, scale = bounded_size(area.width() / px, area.height() / py, max_size)
    resample = "average" if scale < 1.0 else "nearest"

    def callback(_complete, _message, _data):
        return 0 if is_cancelled() else 1

    try:
        if rotated:
            options = gdal.WarpOptions(
                format="GTiff",
                outputBounds=(area.xMinimum(), area.yMinimum(), area.xMaximum(), area.yMaximum()),
                width=width,
                height=height,
                resampleAlg=resample,
                callback=callback,
            )
            result = gdal.Warp(out_path, dataset, options=options)
        else:
            options = gdal.TranslateOptions(
                format="GTiff",
                projWin=[area.xMinimum(), area.yMaximum(), area.xMaximum(), area.yMinimum()],
                width=width,
                height=height,
                resampleAlg=resample,
                callback=callback,
            )
            result = gdal.Translate(out_path, dataset, options=options)
    except RuntimeError as error:
        if is_cancelled():
            raise cancelled_error() from None
        raise Think2SegError(
            EXPORT_FAILED, tr("GDAL could not read “{name}”: {error}").format(name=source.name, error=error)
        ) from None
    if result is None:
        if is_cancelled():
            raise cancelled_error()
        raise Think2SegError(EXPORT_FAILED, tr("GDAL could not read the area of “{name}”.").format(name=source.name))
    if not result.GetProjection():
        # QGIS knows a CRS the file does not carry (set by the user): the answer must come back in it.
        result.SetProjection(source.crs.toWkt(QgsCoordinateReferenceSystem.WktVariant.WKT_PREFERRED_GDAL))
    out_gt = result.GetGeoTransform()
    extent = QgsRectangle(
        out_gt[0],
        out_gt[3] + out_gt[5] * result.RasterYSize,
        out_gt[0] + out_gt[1] * result.RasterXSize,
        out_gt[3],
    )
    exported = ExportedRaster(
        path=out_path,
        width=result.RasterXSize,
        height=result.RasterYSize,
        extent=extent,
        crs=source.crs,
        mode=MODE_GDAL,
        bands=source.display_bands,
        scale=scale,
    )
    result.FlushCache()
    result = None
    return exported


def _export_rendered(source, area, out_path, max_size, is_cancelled) -> ExportedRaster:
    layer = source.render_layer
    if layer is None:
        raise Think2SegError(
            EXPORT_FAILED, tr("The layer “{name}” cannot be drawn for export.").format(name=source.name)
        )
    native_w = area.width() / source.units_per_pixel_x if source.units_per_pixel_x > 0 else max_size
    native_h = area.height() / source.units_per_pixel_y if source.units_per_pixel_y > 0 else max_size
    if layer.providerType() != "gdal":
        # Web tiles and services have no single native resolution: draw at the bound.
        native_w, native_h = area.width(), area.height()
        width, height, _ = bounded_size(native_w, native_h, max_size)
        if max(native_w, native_h) < max_size:
            factor = max_size / max(native_w, native_h)
            width, height = max(1, round(native_w * factor)), max(1, round(native_h * factor))
        scale = 1.0
    else:
        width, height, scale = bounded_size(native_w, native_h, max_size)
    if is_cancelled():
        raise cancelled_error()

    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(source.crs)
    settings.setOutputSize(QSize(width, height))
    settings.setExtent(area)
    settings.setOutputDpi(96)
    settings.setBackgroundColor(QColor(255, 255, 255))
    settings.setFlag(QgsMapSettings.Flag.DrawLabeling, False)
    settings.setFlag(QgsMapSettings.Flag.Antialiasing, False)
    image = QImage(width, height, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(QColor(255, 255, 255))
    painter = QPainter(image)
    try:
        job = QgsMapRendererCustomPainterJob(settings, painter)
        job.renderSynchronously()
    finally:
        painter.end()
    if is_cancelled():
        raise cancelled_error()
    visible = settings.visibleExtent()
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    pointer = rgb.constBits()
    pointer.setsize(rgb.sizeInBytes())
    try:
        dataset = gdal.GetDriverByName("GTiff").Create(out_path, width, height, 3, gdal.GDT_Byte, ["PHOTOMETRIC=RGB"])
        dataset.SetGeoTransform(
            (
                visible.xMinimum(),
                visible.width() / width,
                0.0,
                visible.yMaximum(),
                0.0,
                -visible.height() / height,
            )
        )
        dataset.SetProjection(source.crs.toWkt(QgsCoordinateReferenceSystem.WktVariant.WKT_PREFERRED_GDAL))
        dataset.WriteRaster(
            0,
            0,
            width,
            height,
            bytes(pointer),
            buf_xsize=width,
            buf_ysize=height,
            buf_type=gdal.GDT_Byte,
            band_list=[1, 2, 3],
            buf_pixel_space=3,
            buf_line_space=rgb.bytesPerLine(),
            buf_band_space=1,
        )
        dataset.FlushCache()
        dataset = None
    except RuntimeError as error:
        raise Think2SegError(
            EXPORT_FAILED,
            tr("Could not write the drawn image of “{name}”: {error}").format(name=source.name, error=error),
        ) from None
    return ExportedRaster(
        path=out_path,
        width=width,
        height=height,
        extent=QgsRectangle(visible),
        crs=source.crs,
        mode=MODE_RENDERED,
        bands=[1, 2, 3],
        scale=scale,
    )

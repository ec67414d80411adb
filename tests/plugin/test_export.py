"""Export of a raster area to a georeferenced GeoTIFF: GDAL window for files, rendering for everything else."""

from __future__ import annotations

import pytest
from osgeo import gdal
from plugin_testing import LANDSAT, NAIP, load_raster
from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle

from think2seg_qgis.errors import CANCELLED, EMPTY_AREA, NO_CRS, Think2SegError
from think2seg_qgis.export import MODE_GDAL, MODE_RENDERED, RasterSource, export_raster_area


def _bounds(path: str) -> tuple[float, float, float, float]:
    ds = gdal.Open(path)
    gt = ds.GetGeoTransform()
    return gt[0], gt[3] + gt[5] * ds.RasterYSize, gt[0] + gt[1] * ds.RasterXSize, gt[3]


def test_whole_file_layer_is_read_with_gdal_at_full_resolution(qgis_app, tmp_path):
    layer = load_raster(NAIP)
    source = RasterSource.from_layer(layer)
    assert source.gdal_path and source.file_path == str(NAIP)
    assert source.display_bands == [1, 2, 3]
    exported = export_raster_area(source, source.extent, str(tmp_path / "a.tif"), 2048)
    assert exported.mode == MODE_GDAL
    ds = gdal.Open(exported.path)
    assert (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) == (934, 723, 4)
    assert QgsCoordinateReferenceSystem(ds.GetProjection()).authid() == "EPSG:26914"
    for got, want in zip(
        _bounds(exported.path),
        (
            layer.extent().xMinimum(),
            layer.extent().yMinimum(),
            layer.extent().xMaximum(),
            layer.extent().yMaximum(),
        ),
    ):
        assert got == pytest.approx(want, abs=1e-6)
    assert exported.scale == 1.0


def test_export_is_bounded_on_the_long_side(qgis_app, tmp_path):
    source = RasterSource.from_layer(load_raster(NAIP))
    exported = export_raster_area(source, source.extent, str(tmp_path / "small.tif"), 256)
    assert max(exported.width, exported.height) == 256
    assert exported.width == 256 and exported.height == round(723 * 256 / 934)
    assert exported.scale < 1
    # The georeferencing still covers the same ground.
    x0, y0, x1, y1 = _bounds(exported.path)
    assert x1 - x0 == pytest.approx(source.extent.width(), rel=1e-3)
    assert y1 - y0 == pytest.approx(source.extent.height(), rel=2e-3)


def test_a_window_inside_the_layer(qgis_app, tmp_path):
    source = RasterSource.from_layer(load_raster(NAIP))
    e = source.extent
    window = QgsRectangle(e.xMinimum() + 100, e.yMinimum() + 200, e.xMinimum() + 1100, e.yMinimum() + 700)
    exported = export_raster_area(source, window, str(tmp_path / "w.tif"), 2048)
    assert (exported.width, exported.height) == (200, 100)  # 5 m pixels
    assert _bounds(exported.path) == pytest.approx(
        (window.xMinimum(), window.yMinimum(), window.xMaximum(), window.yMaximum()), abs=1e-6
    )


def test_non_file_layers_are_rendered_with_crs_and_geotransform(qgis_app, tmp_path):
    layer = load_raster(LANDSAT)
    source = RasterSource.from_layer(layer)
    # Pretend this is a web layer: draw it as QGIS shows it.
    source.gdal_path, source.render_layer = None, layer.clone()
    exported = export_raster_area(source, source.extent, str(tmp_path / "r.tif"), 512)
    assert exported.mode == MODE_RENDERED
    ds = gdal.Open(exported.path)
    assert ds.RasterCount == 3 and max(ds.RasterXSize, ds.RasterYSize) == 512
    assert QgsCoordinateReferenceSystem(ds.GetProjection()).authid() == "EPSG:32618"
    x0, y0, x1, y1 = _bounds(exported.path)
    assert x0 == pytest.approx(source.extent.xMinimum(), abs=source.extent.width() / 400)
    assert y1 == pytest.approx(source.extent.yMaximum(), abs=source.extent.height() / 400)
    # Something was drawn (not a blank white page).
    stats = ds.GetRasterBand(1).ComputeRasterMinMax(False)
    assert stats[0] < 200


def test_single_band_rasters_are_rendered(qgis_app, tmp_path):
    path = tmp_path / "one_band.tif"
    gdal.Translate(str(path), str(NAIP), bandList=[4])
    source = RasterSource.from_layer(load_raster(path))
    assert source.gdal_path is None and source.render_layer is not None
    exported = export_raster_area(source, source.extent, str(tmp_path / "o.tif"), 300)
    assert exported.mode == MODE_RENDERED and exported.bands == [1, 2, 3]


def test_a_raster_without_crs_is_refused_with_a_sentence(qgis_app, tmp_path):
    path = tmp_path / "no_crs.tif"
    memory = gdal.Translate("", str(NAIP), format="MEM")
    memory.SetProjection("")
    gdal.GetDriverByName("GTiff").CreateCopy(str(path), memory)
    memory = None
    assert gdal.Open(str(path)).GetProjection() == ""
    layer = load_raster(path)
    if layer.crs().isValid():
        layer.setCrs(QgsCoordinateReferenceSystem())
    with pytest.raises(Think2SegError) as info:
        RasterSource.from_layer(layer)
    assert info.value.code == NO_CRS
    assert "no coordinate reference system" in info.value.message


def test_an_area_outside_the_layer(qgis_app, tmp_path):
    source = RasterSource.from_layer(load_raster(NAIP))
    far = QgsRectangle(0, 0, 10, 10)
    with pytest.raises(Think2SegError) as info:
        export_raster_area(source, far, str(tmp_path / "x.tif"))
    assert info.value.code == EMPTY_AREA


def test_a_cancelled_export_stops_with_a_sentence(qgis_app, tmp_path):
    source = RasterSource.from_layer(load_raster(NAIP))
    with pytest.raises(Think2SegError) as info:
        export_raster_area(source, source.extent, str(tmp_path / "c.tif"), 2048, is_cancelled=lambda: True)
    assert info.value.code == CANCELLED
    assert "cancelled" in info.value.message

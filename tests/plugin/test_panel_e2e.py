"""The panel's Run, driven from the test, against the real service on the tiny models."""

from __future__ import annotations

import shutil

import pytest
from plugin_testing import LANDSAT, NAIP, choose_layer, load_raster, open_panel, run_panel, wait_until
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsRectangle,
    QgsVectorLayer,
    QgsWkbTypes,
)

QUERY = "the wetlands that hold water all year"


@pytest.fixture()
def panel(iface, project, use_service):
    with open_panel(iface) as panel:
        yield panel


def _prepare(panel, iface, project, path=NAIP, area="layer", project_crs=None):
    layer = load_raster(path)
    project.addMapLayer(layer)
    if project_crs:
        project.setCrs(QgsCoordinateReferenceSystem(project_crs))
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(project.crs() if project_crs else layer.crs())
    canvas.setLayers([layer])
    canvas.setExtent(
        QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(), project).transformBoundingBox(
            layer.extent()
        )
    )
    iface.setActiveLayer(layer)
    panel.area_combo.setCurrentIndex(panel.area_combo.findData(area))
    panel.max_size_spin.setValue(512)  # a smaller image: a faster tiny reasoner, same code path
    panel.run_settings.tiled_max_size = 512  # resampled to one 512 px read, not tiled (a test below tiles)
    panel.set_query(QUERY)
    return layer


def test_run_adds_masks_points_and_boxes(panel, iface, project):
    # The project is in WGS 84: the layers must still be in the raster's CRS and land on it.
    layer = _prepare(panel, iface, project, area="canvas", project_crs="EPSG:4326")
    assert panel.layer_combo.currentLayer() == layer  # the active layer by default
    outcome, result = run_panel(panel)
    assert outcome.error is None, outcome.error
    assert result is not None, panel.status_label.text()

    group = project.layerTreeRoot().findGroup(QUERY)
    assert group is not None
    names = [node.layer().name() for node in group.findLayers()]
    assert names == [f"{QUERY} — masks", f"{QUERY} — prompt points", f"{QUERY} — prompt boxes"]
    extent = QgsRectangle(layer.extent())
    extent.grow(layer.rasterUnitsPerPixelX() * 2)
    for vector in result.layers():
        assert vector.crs().authid() == "EPSG:26914"
        assert vector.featureCount() > 0
        for feature in vector.getFeatures():
            assert extent.contains(feature.geometry().boundingBox()), vector.name()
            assert feature["query"] == QUERY
            assert feature["source_layer"] == layer.name()
            assert feature["reasoner"] and feature["segmenter"]
            assert feature["sam_size"] in ("tiny", "small", "base_plus", "large")
            assert feature["created"].isValid()
    masks = result.masks
    assert masks.wkbType() == QgsWkbTypes.MultiPolygon
    mask: QgsFeature = next(masks.getFeatures())
    assert mask["area_m2"] > 0
    assert "area" not in masks.fields().names() and "area_unit" not in masks.fields().names()
    assert mask["reasoning"] and mask["reasoning"] in masks.metadata().abstract()
    assert panel.reasoning_view.toPlainText() == mask["reasoning"]
    assert "<answer>" in panel.answer_view.toPlainText()
    # The map zoomed to the answer, drawn in the project CRS.
    canvas_extent = iface.mapCanvas().extent()
    to_map = QgsCoordinateTransform(masks.crs(), project.crs(), project)
    assert canvas_extent.intersects(to_map.transformBoundingBox(masks.extent()))
    assert panel.progress.value() == 100
    assert "found" in panel.status_label.text()
    # The query is remembered to pick again.
    assert panel.query_combo.findText(QUERY) >= 0


def test_selected_polygons_bound_and_clip_the_answer(panel, iface, project):
    layer = _prepare(panel, iface, project, area="selection")
    e = layer.extent()
    selection = QgsVectorLayer("Polygon?crs=EPSG:4326", "area", "memory")
    rect = QgsRectangle(e.xMinimum(), e.yMinimum(), e.center().x(), e.yMaximum())
    geometry = QgsGeometry.fromRect(rect)
    geometry.transform(QgsCoordinateTransform(layer.crs(), selection.crs(), project))
    feature = QgsFeature()
    feature.setGeometry(geometry)
    selection.dataProvider().addFeatures([feature])
    project.addMapLayer(selection)
    selection.selectAll()
    panel.selection_combo.setLayer(selection)
    outcome, result = run_panel(panel)
    assert outcome.error is None, outcome.error
    grown = QgsRectangle(rect)
    grown.grow(20)
    if result is None:  # the answer fell outside the selection: said, not junk layers
        assert "Nothing matches" in panel.status_label.text()
        assert project.layerTreeRoot().findGroup(QUERY) is None
    else:
        for mask in result.masks.getFeatures():
            assert grown.contains(mask.geometry().boundingBox())
    assert outcome.exported.width <= 934 // 2 + 2


def test_results_in_a_geopackage_next_to_the_raster(panel, iface, project, tmp_path):
    copy = tmp_path / NAIP.name
    shutil.copy(NAIP, copy)
    _prepare(panel, iface, project, path=copy)
    panel.destination_combo.setCurrentIndex(panel.destination_combo.findData("geopackage"))
    outcome, result = run_panel(panel)
    assert result is not None, panel.status_label.text()
    gpkg = tmp_path / f"{NAIP.stem}_think2seg.gpkg"
    assert gpkg.is_file()
    for vector in result.layers():
        assert vector.providerType() == "ogr" and str(gpkg) in vector.source()
    assert str(gpkg) in panel.status_label.text()


def test_cancel_adds_nothing(panel, iface, project):
    _prepare(panel, iface, project)
    outcomes = []
    panel.finished.connect(lambda outcome, result: outcomes.append((outcome, result)))
    task = panel.run()
    assert task is not None
    panel.cancel()
    assert wait_until(lambda: outcomes, timeout=60)
    outcome, result = outcomes[0]
    assert result is None and outcome.cancelled
    assert "cancelled" in panel.status_label.text()
    assert project.layerTreeRoot().findGroup(QUERY) is None
    assert panel.run_button.isEnabled()


def test_a_raster_without_crs_is_refused_in_the_panel(panel, iface, project, tmp_path):
    from osgeo import gdal

    path = tmp_path / "no_crs.tif"
    memory = gdal.Translate("", str(LANDSAT), format="MEM")
    memory.SetProjection("")
    gdal.GetDriverByName("GTiff").CreateCopy(str(path), memory)
    memory = None
    layer = load_raster(path)
    layer.setCrs(QgsCoordinateReferenceSystem())
    choose_layer(panel, project, layer, QUERY)
    assert panel.run() is None
    assert "no coordinate reference system" in panel.status_label.text()


def test_a_layer_drawn_by_qgis_is_rendered_in_the_task(panel, iface, project, tmp_path):
    """Layers GDAL cannot hand over as RGB (here one band; WMS/XYZ alike) are drawn off the main thread."""
    from osgeo import gdal

    path = tmp_path / "nir.tif"
    gdal.Translate(str(path), str(NAIP), bandList=[4])
    _prepare(panel, iface, project, path=path)
    outcome, result = run_panel(panel)
    assert outcome.error is None, outcome.error
    assert outcome.exported.mode == "rendered"
    assert result is not None and result.masks.crs().authid() == "EPSG:26914"


@pytest.mark.slow
def test_a_large_area_is_tiled_by_the_backend_from_the_panel(panel, iface, project):
    """README's promise: the panel sends an area larger than its bound at full resolution, as a tiled job."""
    layer = _prepare(panel, iface, project)
    panel.run_settings.tiled_max_size = 8192
    panel.max_size_spin.setValue(768)  # NAIP is 934 x 723 px: larger than the bound, so the backend tiles it
    outcome, result = run_panel(panel, timeout=300)
    assert outcome.error is None, outcome.error
    assert outcome.tiled and (outcome.exported.width, outcome.exported.height) == (934, 723)  # full resolution
    assert (outcome.answer.get("read") or {}).get("mode") == "tiled", outcome.answer.get("read")
    if result is not None:
        for feature in result.masks.getFeatures():
            assert feature["area_m2"] > 0 and feature["query"] == QUERY
    assert layer.isValid()

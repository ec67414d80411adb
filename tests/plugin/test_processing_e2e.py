"""think2seg:segment from processing.run, in a batch over two rasters, in a model, with cancel."""

from __future__ import annotations

import processing
import pytest
from plugin_testing import LANDSAT, NAIP, load_raster
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)

from think2seg_qgis import classFactory
from think2seg_qgis.settings import load_run_settings, save_run_settings

QUERY = "the wetlands that hold water all year"


@pytest.fixture()
def provider(qgis_app, use_service):
    plugin = classFactory(None)
    plugin.initProcessing()
    yield
    plugin.unload()


def test_processing_run_gives_three_outputs(provider):
    result = processing.run(
        "think2seg:segment",
        {
            "INPUT": str(NAIP),
            "QUERY": QUERY,
            "SAM_MODEL": 0,
            "MAX_REASONING_TOKENS": 256,
            "OUTPUT": "memory:",
            "OUTPUT_POINTS": "memory:",
            "OUTPUT_BOXES": "memory:",
        },
    )
    masks, points, boxes = result["OUTPUT"], result["OUTPUT_POINTS"], result["OUTPUT_BOXES"]
    raster = load_raster(NAIP)
    extent = QgsRectangle(raster.extent())
    extent.grow(10)
    assert masks.featureCount() > 0 and points.featureCount() > 0 and boxes.featureCount() > 0
    for layer in (masks, points, boxes):
        assert layer.crs().authid() == "EPSG:26914"
        assert extent.contains(layer.extent())
    feature = next(masks.getFeatures())
    assert feature["query"] == QUERY and feature["source_layer"] == NAIP.stem
    assert feature["area"] > 0


def test_extent_parameter_limits_the_area(provider, tmp_path):
    raster = load_raster(NAIP)
    e = raster.extent()
    window = QgsRectangle(e.xMinimum(), e.yMinimum(), e.center().x(), e.center().y())
    out = str(tmp_path / "masks.gpkg")
    result = processing.run(
        "think2seg:segment",
        {
            "INPUT": str(NAIP),
            "QUERY": QUERY,
            "EXTENT": f"{window.xMinimum()},{window.xMaximum()},{window.yMinimum()},{window.yMaximum()} [EPSG:26914]",
            "OUTPUT": out,
        },
    )
    assert "OUTPUT_POINTS" not in result  # optional outputs are not created unless asked for
    layer = QgsVectorLayer(result["OUTPUT"], "masks", "ogr")
    assert layer.isValid()
    grown = QgsRectangle(window)
    grown.grow(10)
    for feature in layer.getFeatures():
        assert grown.contains(feature.geometry().boundingBox())


@pytest.mark.slow
def test_batch_over_two_rasters(provider, tmp_path):
    """What the batch dialog does: one run per row, sharing a context and a feedback."""
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = QgsProcessingFeedback()
    outputs = {}
    for path, epsg in ((NAIP, "EPSG:26914"), (LANDSAT, "EPSG:32618")):
        out = str(tmp_path / f"{path.stem}_masks.gpkg")
        result = processing.run(
            "think2seg:segment",
            {
                "INPUT": str(path),
                "QUERY": QUERY,
                "OUTPUT": out,
                "OUTPUT_BOXES": str(tmp_path / f"{path.stem}_boxes.gpkg"),
            },
            context=context,
            feedback=feedback,
        )
        masks = QgsVectorLayer(result["OUTPUT"], "m", "ogr")
        boxes = QgsVectorLayer(result["OUTPUT_BOXES"], "b", "ogr")
        assert masks.isValid() and boxes.isValid()
        assert masks.crs().authid() == epsg
        outputs[path.name] = masks.featureCount()
    assert outputs[NAIP.name] > 0  # the tiny reasoner answers one known instance on the sample
    assert set(outputs) == {NAIP.name, LANDSAT.name}


def test_in_a_model(provider, tmp_path):
    model = QgsProcessingModelAlgorithm("segment twice", "think2seg tests")
    model.addModelParameter(
        QgsProcessingParameterRasterLayer("raster", "Raster"), QgsProcessingModelParameter("raster")
    )
    model.addModelParameter(
        QgsProcessingParameterString("query", "Query"), QgsProcessingModelParameter("query")
    )
    child = QgsProcessingModelChildAlgorithm("think2seg:segment")
    child.setChildId("segment")
    child.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("raster")])
    child.addParameterSources("QUERY", [QgsProcessingModelChildParameterSource.fromModelParameter("query")])
    child.addParameterSources("SAM_MODEL", [QgsProcessingModelChildParameterSource.fromStaticValue(1)])
    child.addParameterSources(
        "MAX_REASONING_TOKENS", [QgsProcessingModelChildParameterSource.fromStaticValue(512)]
    )
    output = QgsProcessingModelOutput("masks", "Masks")
    output.setChildOutputName("OUTPUT")
    child.setModelOutputs({"masks": output})
    model.addChildAlgorithm(child)
    assert model.validate()[0] if hasattr(model, "validate") else True
    result = processing.run(
        model, {"raster": str(NAIP), "query": QUERY, "segment:masks": str(tmp_path / "m.gpkg")}
    )
    layer = QgsVectorLayer(result["segment:masks"], "m", "ogr")
    assert layer.isValid() and layer.featureCount() > 0


def test_cancel_through_the_feedback(provider):
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda value: feedback.cancel() if value >= 5 else None)
    result = processing.run(
        "think2seg:segment", {"INPUT": str(NAIP), "QUERY": QUERY, "OUTPUT": "memory:"}, feedback=feedback
    )
    assert result.get("OUTPUT") is None
    assert feedback.isCanceled()


@pytest.mark.slow
def test_larger_than_the_bound_goes_through_the_jobs_api(provider, qgis_app):
    run = load_run_settings()
    saved = run.export_max_size
    run.export_max_size = 768  # NAIP is 934 x 723 px: two 768 px tiles in the backend
    save_run_settings(run)
    messages = []

    class Feedback(QgsProcessingFeedback):
        def pushInfo(self, info):  # noqa: N802
            messages.append(info)
            super().pushInfo(info)

    try:
        result = processing.run(
            "think2seg:segment",
            {"INPUT": str(NAIP), "QUERY": QUERY, "OUTPUT": "memory:", "OUTPUT_POINTS": "memory:"},
            feedback=Feedback(),
        )
    finally:
        run.export_max_size = saved
        save_run_settings(run)
    assert any("tiled by the backend in 768 px tiles" in m for m in messages), messages
    assert result["OUTPUT"].crs().authid() == "EPSG:26914"

"""think2seg:segment from processing.run, in a batch over two rasters, in a model, with cancel."""

from __future__ import annotations

import processing
import pytest
from plugin_testing import LANDSAT, NAIP, choose_layer, load_raster, open_panel, run_panel
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
from qgis.PyQt.QtCore import QCoreApplication, Qt

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
    assert feature["area_m2"] > 0
    assert result["REASONING"]  # the model's reasoning, as a string output


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
    child.addParameterSources("SAM_MODEL", [QgsProcessingModelChildParameterSource.fromStaticValue(0)])  # tiny: the size the test service has
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
    assert any("read the area in tiles" in m for m in messages), messages
    assert result["OUTPUT"].crs().authid() == "EPSG:26914"


def test_outputs_are_named_styled_and_grouped_after_the_query(provider, tmp_path):
    """What the toolbox dialog does with "Open output file after running": names, styles, one group."""
    from qgis.core import QgsLayerTreeModel
    from qgis.gui import QgsLayerTreeView

    project = QgsProject.instance()
    project.clear()
    # The layers panel as QGIS shows it: a view of the project's tree that selects each layer added to it
    # (QgisApp::autoSelectAddedLayer), which lays the tree out between the algorithm's steps.
    model = QgsLayerTreeModel(project.layerTreeRoot())  # kept: the view does not own it
    view = QgsLayerTreeView()
    view.setModel(model)
    view.show()

    def select_added(layers):
        view.setCurrentLayer(layers[0])

    bridge = project.layerTreeRegistryBridge()
    bridge.addedLayersToLayerTree.connect(select_added)
    context = QgsProcessingContext()
    context.setProject(project)
    feedback = QgsProcessingFeedback()
    try:
        result = processing.runAndLoadResults(
            "think2seg:segment",
            {"INPUT": str(NAIP), "QUERY": QUERY, "OUTPUT": "memory:", "OUTPUT_BOXES": "memory:"},
            context=context,
            feedback=feedback,
        )
    finally:
        bridge.addedLayersToLayerTree.disconnect(select_added)
    group = project.layerTreeRoot().findGroup(QUERY)
    assert group is not None, [n.name() for n in project.layerTreeRoot().children()]
    QCoreApplication.processEvents()
    assert view.isExpanded(view.node2index(group)), "the result group shows collapsed in the layers panel"
    layers = {node.layer().name(): node.layer() for node in group.findLayers()}
    assert set(layers) == {f"{QUERY} — masks", f"{QUERY} — prompt boxes"}
    masks = layers[f"{QUERY} — masks"]
    symbol = masks.renderer().symbol()
    assert 0 < symbol.color().alpha() < 255 or symbol.opacity() < 1  # the panel's see-through style
    boxes = layers[f"{QUERY} — prompt boxes"]
    box_fill = boxes.renderer().symbol().symbolLayer(0)
    assert box_fill.brushStyle() == Qt.BrushStyle.NoBrush or box_fill.color().alpha() == 0  # the raster shows
    assert result["REASONING"]
    project.clear()


def test_help_labels_and_advanced_parameters(provider):
    from qgis.core import QgsApplication, QgsProcessingParameterDefinition

    algorithm = QgsApplication.processingRegistry().algorithmById("think2seg:segment")
    sam = algorithm.parameterDefinition("SAM_MODEL")
    assert sam.options() == [
        "Tiny (fastest, coarsest)", "Small", "Base+ (finer)", "Large (finest, most memory)",
        "As the backend started (default)",
    ]  # fmt: skip
    assert sam.defaultValue() == 4
    for name in ("BACKEND_URL", "MAX_IMAGE_SIZE", "MAX_REASONING_TOKENS"):
        flags = algorithm.parameterDefinition(name).flags()
        assert flags & QgsProcessingParameterDefinition.Flag.FlagAdvanced, name
    for definition in algorithm.parameterDefinitions():
        if not definition.isDestination():
            assert definition.help(), definition.name()
    assert "REASONING" in [o.name() for o in algorithm.outputDefinitions()]
    assert "area_m2" in algorithm.shortHelpString()


def test_panel_and_processing_give_the_same_layers_and_attributes(provider, iface, tmp_path):
    """One run path: the same area, query and options give the same features from the panel and the toolbox."""
    processed = processing.run(
        "think2seg:segment",
        {"INPUT": str(NAIP), "QUERY": QUERY, "MAX_REASONING_TOKENS": 256, "OUTPUT": "memory:"},
    )["OUTPUT"]
    project = QgsProject.instance()
    project.clear()
    try:
        with open_panel(iface) as panel:
            choose_layer(panel, project, load_raster(NAIP), QUERY)
            panel.budget_spin.setValue(256)
            outcome, result = run_panel(panel, timeout=180)
            assert outcome.error is None, outcome.error
            panel_masks = result.masks
            assert panel_masks.fields().names() == processed.fields().names()

            def rows(layer):
                return sorted(
                    (f["instance"], round(f["area_m2"], 3), f["sam_size"], f["segmenter"], f["query"])
                    for f in layer.getFeatures()
                )

            assert rows(panel_masks) == rows(processed)
    finally:
        project.clear()

"""think2seg:segment from processing.run, in a batch over two rasters, in a modeler-made model, with cancel, and
through qgis_process (the plugin from its zip, in a fresh profile: the algorithm and the model)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import processing
import pytest
from plugin_testing import LANDSAT, NAIP, ROOT, choose_layer, load_raster, open_panel, run_panel
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingModelAlgorithm,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication, Qt

from think2seg_qgis import classFactory
from think2seg_qgis.settings import load_run_settings, save_run_settings

QUERY = "the wetlands that hold water all year"
MODEL = Path(__file__).parent / "data" / "think2seg_segment.model3"
URL = "https://example.net/think2seg"


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


def load_model() -> QgsProcessingModelAlgorithm:
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL)), MODEL
    return model


def masks_parameter(model: QgsProcessingModelAlgorithm) -> str:
    """The model's one destination parameter: "segment:masks" on QGIS 3.22, "masks" on later versions."""
    names = [d.name() for d in model.destinationParameterDefinitions()]
    assert len(names) == 1 and names[0] in ("masks", "segment:masks"), names
    return names[0]


def test_in_a_model(provider, tmp_path):
    """A model saved from the graphical modeler (tests/plugin/data, scripts/make_test_model.py) runs the algorithm."""
    model = load_model()
    assert model.childAlgorithm("segment").algorithmId() == "think2seg:segment"
    ok, errors = model.validate()
    assert ok, errors
    name = masks_parameter(model)
    result = processing.run(model, {"raster": str(NAIP), "query": QUERY, name: str(tmp_path / "m.gpkg")})
    layer = QgsVectorLayer(result[name], "m", "ogr")
    assert layer.isValid() and layer.featureCount() > 0
    assert layer.crs().authid() == "EPSG:26914"
    assert next(layer.getFeatures())["query"] == QUERY


# -- qgis_process: the plugin from its zip, in a fresh profile ---------------------------------------------
def qgis_process() -> str:
    # Debian 12's /usr/bin/qgis_process wrapper passes QGIS_OPTS from /etc/default/qgis (--noversioncheck), which
    # QGIS 3.22's qgis_process rejects ("Command --noversioncheck not known!"); the binary it wraps does not.
    for name in ("qgis_process.bin", "qgis_process"):
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else "")
        if found:
            return found
    pytest.fail("qgis_process is not installed (Debian: package qgis)")


@pytest.fixture()
def fresh_profile(use_service, tmp_path):
    """An environment whose QGIS profile is new and holds the plugin unzipped from `plugin_package.py`'s zip."""
    home = tmp_path / "home"
    env = dict(
        os.environ, HOME=str(home), XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "config"),
        XDG_RUNTIME_DIR=str(home / "run"), QT_QPA_PLATFORM="offscreen",
    )  # fmt: skip
    for folder in ("data", "config", "run"):
        (home / folder).mkdir(parents=True)
    (home / "run").chmod(0o700)
    zip_path = tmp_path / "think2seg_qgis.zip"
    meta = [f"--meta={k}={v}" for k, v in (("author", "t"), ("email", "t@example.net"), ("repository", URL),
                                           ("homepage", URL), ("tracker", URL))]  # fmt: skip
    built = subprocess.run([sys.executable, str(ROOT / "scripts" / "plugin_package.py"), str(zip_path), *meta],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert built.returncode == 0, built.stderr
    plugins = home / "data" / "QGIS" / "QGIS3" / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(plugins)
    run = subprocess.run([qgis_process(), "plugins", "enable", "think2seg_qgis"], env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return env


def run_qgis_process(env, *args) -> dict:
    done = subprocess.run([qgis_process(), "--json", "run", *args], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout[done.stdout.index("{") :])


@pytest.mark.slow
def test_qgis_process_runs_the_algorithm_from_the_zip_in_a_fresh_profile(fresh_profile, tmp_path):
    out = tmp_path / "masks.gpkg"
    report = run_qgis_process(
        fresh_profile, "think2seg:segment", "--", f"INPUT={NAIP}", f"QUERY={QUERY}", "SAM_MODEL=0",
        "MAX_REASONING_TOKENS=256", f"OUTPUT={out}",
    )  # fmt: skip
    assert report["results"]["REASONING"]
    layer = QgsVectorLayer(str(out), "masks", "ogr")
    assert layer.isValid() and layer.featureCount() > 0
    assert layer.crs().authid() == "EPSG:26914"
    # What a user gets for an input that is no raster: a sentence, not a traceback.
    bad = subprocess.run(
        [qgis_process(), "run", "think2seg:segment", "--", f"INPUT={ROOT / 'README.md'}", f"QUERY={QUERY}",
         f"OUTPUT={tmp_path / 'bad.gpkg'}"], env=fresh_profile, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "INPUT" in bad.stdout + bad.stderr and "Traceback" not in bad.stdout + bad.stderr


@pytest.mark.slow
def test_qgis_process_runs_the_modelers_model(provider, fresh_profile, tmp_path):
    name = masks_parameter(load_model())
    out = tmp_path / "model_masks.gpkg"
    run_qgis_process(fresh_profile, str(MODEL), "--", f"raster={NAIP}", f"query={QUERY}", f"{name}={out}")
    layer = QgsVectorLayer(str(out), "masks", "ogr")
    assert layer.isValid() and layer.featureCount() > 0
    assert layer.crs().authid() == "EPSG:26914"


def test_cancel_through_the_feedback(provider):
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda value: feedback.cancel() if value >= 5 else None)
    result = processing.run(
        "think2seg:segment", {"INPUT": str(NAIP), "QUERY": QUERY, "OUTPUT": "memory:"}, feedback=feedback
    )
    assert result.get("OUTPUT") is None
    assert feedback.isCanceled()


class RecordingFeedback(QgsProcessingFeedback):
    """A feedback that keeps what the algorithm reports (its log lines)."""

    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def pushInfo(self, info):  # noqa: N802
        self.messages.append(info)
        super().pushInfo(info)


def test_the_strict_answer_option_reaches_the_backend(provider):
    """The panel's Strict answer format as a toolbox parameter: sent as the panel sends it (constrain_answer), and
    the backend's answer records that it held the answer to its grammar."""
    runs = {}
    for strict in (False, True):
        feedback = RecordingFeedback()
        processing.run(
            "think2seg:segment",
            {"INPUT": str(NAIP), "QUERY": QUERY, "MAX_REASONING_TOKENS": 64, "CONSTRAIN_ANSWER": strict,
             "OUTPUT": "memory:"},
            feedback=feedback,
        )  # fmt: skip
        runs[strict] = feedback.messages
    said = "Strict answer format: the backend held the answer to its expected shape."
    assert said in runs[True], runs[True]
    assert said not in runs[False]


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

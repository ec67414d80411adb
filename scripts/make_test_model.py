"""Write tests/plugin/data/think2seg_segment.model3: the model a user draws in QGIS's graphical modeler.

Usage (QGIS's Python, offscreen): QT_QPA_PLATFORM=offscreen .venv-qgis/bin/python scripts/make_test_model.py [OUT]

Built as the modeler builds one and saved with ``toFile`` (what its Save button calls): two inputs (a raster
layer, a query string), one think2seg:segment child whose other parameters hold the values its dialog shows
(the tiny SAM2 size and a small reasoning budget, which the test service needs), and its masks as the model's
output "masks". Saved by the oldest QGIS the plugin supports (3.22), so every later version loads it; note that
QGIS 3.22 names the model's destination parameter "segment:masks" and later versions name it "masks".
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append("/usr/share/qgis/python/plugins")

from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QPointF  # noqa: E402

STATIC = {"SAM_MODEL": 0, "MAX_REASONING_TOKENS": 512}


def build() -> QgsProcessingModelAlgorithm:
    from think2seg_qgis import classFactory

    plugin = classFactory(None)
    plugin.initProcessing()
    algorithm = QgsApplication.processingRegistry().algorithmById("think2seg:segment")
    model = QgsProcessingModelAlgorithm("Segment a raster by a query", "Think2Seg tests")
    for index, definition in enumerate(
        (QgsProcessingParameterRasterLayer("raster", "Raster"), QgsProcessingParameterString("query", "Query"))
    ):
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(QPointF(120, 60 + 90 * index))
        component.setDescription(definition.description())
        model.addModelParameter(definition, component)
    child = QgsProcessingModelChildAlgorithm("think2seg:segment")
    child.setChildId("segment")
    child.setDescription(algorithm.displayName())
    child.setPosition(QPointF(420, 120))
    child.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("raster")])
    child.addParameterSources("QUERY", [QgsProcessingModelChildParameterSource.fromModelParameter("query")])
    for name, value in STATIC.items():
        assert algorithm.parameterDefinition(name) is not None, name
        child.addParameterSources(name, [QgsProcessingModelChildParameterSource.fromStaticValue(value)])
    output = QgsProcessingModelOutput("masks", "Masks")
    output.setChildId("segment")
    output.setChildOutputName("OUTPUT")
    output.setPosition(QPointF(620, 180))
    child.setModelOutputs({"masks": output})
    model.addChildAlgorithm(child)
    plugin.unload()
    return model


def main(argv: list[str]) -> int:
    target = Path(argv[1]) if len(argv) > 1 else ROOT / "tests" / "plugin" / "data" / "think2seg_segment.model3"
    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    model = build()
    target.parent.mkdir(parents=True, exist_ok=True)
    if not model.toFile(str(target)):
        print(f"could not write {target}", file=sys.stderr)
        return 1
    print(f"{target}: {[d.name() for d in model.parameterDefinitions()]}")
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Render a raster with a Think2Seg GeoPackage on top, through QGIS itself, to a PNG (a look at a result).

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/render_result_png.py RASTER RESULT.gpkg OUT.png
Uses QGIS's Python (PyQGIS), not the backend venv; styled with the plugin's QML styles in resources/styles/.
"""

import sys
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

STYLES = Path(__file__).resolve().parents[1] / "resources" / "styles"


def main(raster: str, gpkg: str, out: str) -> int:
    app = QgsApplication([], False)
    app.initQgis()
    base = QgsRasterLayer(raster, "raster")
    layers = []
    for name in ("prompt_points", "prompt_boxes", "mask"):
        lyr = QgsVectorLayer(f"{gpkg}|layername={name}", name, "ogr")
        if not lyr.isValid():
            print(f"cannot open layer {name} of {gpkg}", file=sys.stderr)
            return 1
        qml = (
            STYLES
            / {
                "mask": "think2seg_masks.qml",
                "prompt_points": "think2seg_points.qml",
                "prompt_boxes": "think2seg_boxes.qml",
            }[name]
        )
        if qml.exists():
            lyr.loadNamedStyle(str(qml))
        print(f"{name}: {lyr.featureCount()} features, CRS {lyr.crs().authid()}")
        layers.append(lyr)
    settings = QgsMapSettings()
    settings.setLayers(layers + [base])
    settings.setDestinationCrs(base.crs() if base.crs().isValid() else QgsCoordinateReferenceSystem("EPSG:3857"))
    settings.setExtent(base.extent())
    settings.setOutputSize(QSize(1000, int(1000 * base.height() / max(1, base.width()))))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    job.renderedImage().save(out)
    print(f"wrote {out}")
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))

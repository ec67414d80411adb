"""Write resources/styles/*.qml with QGIS itself, so that the files are in the format QGIS 3.22 reads.

Run once after changing a style: QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/qgis_make_styles.py
"""

from __future__ import annotations

import os
import sys

from qgis.core import (
    QgsApplication,
    QgsFillSymbol,
    QgsMapLayer,
    QgsMarkerSymbol,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STYLES = os.path.join(ROOT, "resources", "styles")


def main() -> int:
    app = QgsApplication([], False)
    app.initQgis()
    os.makedirs(STYLES, exist_ok=True)
    masks = QgsVectorLayer("MultiPolygon?crs=EPSG:4326", "m", "memory")
    masks.setRenderer(
        QgsSingleSymbolRenderer(
            QgsFillSymbol.createSimple(
                {
                    "color": "255,214,0,90",
                    "outline_color": "255,214,0,255",
                    "outline_width": "0.4",
                    "outline_width_unit": "MM",
                    "joinstyle": "round",
                }
            )
        )
    )
    points = QgsVectorLayer("Point?crs=EPSG:4326", "p", "memory")
    points.setRenderer(
        QgsSingleSymbolRenderer(
            QgsMarkerSymbol.createSimple(
                {
                    "name": "circle",
                    "color": "230,25,75,255",
                    "outline_color": "255,255,255,255",
                    "outline_width": "0.5",
                    "size": "3",
                }
            )
        )
    )
    boxes = QgsVectorLayer("Polygon?crs=EPSG:4326", "b", "memory")
    boxes.setRenderer(
        QgsSingleSymbolRenderer(
            QgsFillSymbol.createSimple(
                {
                    "style": "no",
                    "outline_color": "0,229,255,255",
                    "outline_style": "dash",
                    "outline_width": "0.6",
                    "outline_width_unit": "MM",
                }
            )
        )
    )
    categories = QgsMapLayer.Symbology
    for layer, name in ((masks, "think2seg_masks"), (points, "think2seg_points"), (boxes, "think2seg_boxes")):
        message, ok = layer.saveNamedStyle(os.path.join(STYLES, f"{name}.qml"), categories)
        print(name, ok, message)
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())

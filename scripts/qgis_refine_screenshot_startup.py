"""QGIS start-up code for the refine screenshot: a query through the panel, then the refine tool in use.

    THINK2SEG_SCREENSHOT_STARTUP=scripts/qgis_refine_screenshot_startup.py scripts/qgis_screenshot.sh

Runs the query, turns the refine tool on for the answer, clicks a positive point, a negative point and
drags a new box on the canvas (real mouse events), waits for each refine, and saves
THINK2SEG_SCREENSHOT_DIR/refine.png (the whole window: panel, map, user and model prompts). Like
qgis_screenshot_startup.py it also saves panel.png (the run) so the shell's checks hold.
"""

from qgis.core import QgsPointXY
from qgis.PyQt.QtCore import QPoint, Qt, QTimer
from qgis.PyQt.QtTest import QTest
from qgis.utils import iface
from qgis_screenshot_common import QUERY, grab, log, quit_qgis, schedule, show_panel

TIMEOUT_MS = 300_000
state = {"done": False, "step": 0}


def start() -> None:
    panel = show_panel()
    if panel is None:
        return
    panel.set_query(QUERY)
    panel.area_combo.setCurrentIndex(panel.area_combo.findData("layer"))
    panel.finished.connect(lambda outcome, result: QTimer.singleShot(2000, lambda: refine(panel, result)))
    QTimer.singleShot(3000, lambda: panel.run() or log(f"ERROR: no run: {panel.status_label.text()}"))


def screen(canvas, xy: QgsPointXY) -> QPoint:
    p = canvas.getCoordinateTransform().transform(canvas.mapSettings().layerToMapCoordinates(iface.activeLayer(), xy))
    return QPoint(int(round(p.x())), int(round(p.y())))


def refine(panel, result) -> None:
    if result is None:
        log(f"ERROR: no result: {panel.status_label.text()}")
        quit_qgis(1)
        return
    grab("panel.png")
    iface.setActiveLayer(result.masks)
    panel.refine.action.setChecked(True)
    tool = panel.refine.tool
    canvas = iface.mapCanvas()
    box = next(f for f in result.boxes.getFeatures() if f["instance"] == 0).geometry().boundingBox()
    canvas.setExtent(canvas.mapSettings().layerExtentToOutputExtent(result.masks, box.buffered(box.width() * 0.1)))
    canvas.refresh()
    viewport = canvas.viewport()
    w, h, x0, y0 = box.width(), box.height(), box.xMinimum(), box.yMinimum()
    steps = [
        lambda: QTest.mouseClick(
            viewport, Qt.LeftButton, Qt.NoModifier, screen(canvas, QgsPointXY(x0 + w * 0.3, y0 + h * 0.7))
        ),
        lambda: QTest.mouseClick(
            viewport, Qt.RightButton, Qt.NoModifier, screen(canvas, QgsPointXY(x0 + w * 0.6, y0 + h * 0.45))
        ),
        lambda: drag(
            viewport,
            screen(canvas, QgsPointXY(x0 + w * 0.15, y0 + h * 0.1)),
            screen(canvas, QgsPointXY(x0 + w * 0.9, y0 + h * 0.85)),
        ),
    ]

    def next_step(*_args) -> None:
        if state["step"] < len(steps):
            state["step"] += 1
            QTimer.singleShot(800, steps[state["step"] - 1])
        else:
            log(f"refine: {panel.refine.status.text()}")
            canvas.refresh()
            QTimer.singleShot(2500, finish)

    tool.refined.connect(next_step)
    tool.failed.connect(lambda sentence: (log(f"ERROR: refine failed: {sentence}"), quit_qgis(1)))
    QTimer.singleShot(2500, next_step)


def drag(viewport, a: QPoint, b: QPoint) -> None:
    QTest.mousePress(viewport, Qt.LeftButton, Qt.NoModifier, a)
    QTest.mouseMove(viewport, b)
    QTest.mouseRelease(viewport, Qt.LeftButton, Qt.NoModifier, b)


def finish() -> None:
    if state["done"]:
        return
    state["done"] = True
    iface.mapCanvas().waitWhileRendering()
    grab("refine.png")
    quit_qgis(0)


def give_up() -> None:
    if not state["done"]:
        log("ERROR: no refine in time")
        grab("refine.png")
        quit_qgis(1)


schedule(start, give_up, TIMEOUT_MS)

"""QGIS start-up code for the refine screenshot: a query through the panel, then the refine tool in use.

    THINK2SEG_SCREENSHOT_STARTUP=scripts/qgis_refine_screenshot_startup.py scripts/qgis_screenshot.sh

Runs the query, turns the refine tool on for the answer, clicks a positive point, a negative point and
drags a new box on the canvas (real mouse events), waits for each refine, and saves
THINK2SEG_SCREENSHOT_DIR/refine.png (the whole window: panel, map, user and model prompts). Like
qgis_screenshot_startup.py it also saves panel.png (the run) so the shell's checks hold.
"""

import os
import subprocess

from qgis.core import QgsPointXY, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QPoint, Qt, QTimer
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QApplication
from qgis.utils import iface, plugins

OUT = os.environ.get("THINK2SEG_SCREENSHOT_DIR", "docs/screenshots")
QUERY = os.environ.get("THINK2SEG_SCREENSHOT_QUERY", "the wetlands that hold water all year")
STATUS = os.environ.get("THINK2SEG_SCREENSHOT_STATUS", "")
TIMEOUT_MS = 300_000
state = {"done": False, "step": 0}


def log(text: str) -> None:
    print(f"[screenshot] {text}", flush=True)
    if STATUS:
        with open(STATUS, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")


def grab(name: str) -> None:
    QApplication.processEvents()
    path = os.path.join(OUT, name)
    subprocess.run(["import", "-window", "root", path], check=False)
    log(f"saved {path}")


def start() -> None:
    plugin = plugins.get("think2seg_qgis")
    if plugin is None:
        log("ERROR: the plugin is not loaded")
        quit_qgis(1)
        return
    iface.mainWindow().setGeometry(QApplication.primaryScreen().availableGeometry())
    rasters = [layer for layer in QgsProject.instance().mapLayers().values() if isinstance(layer, QgsRasterLayer)]
    if rasters:
        iface.setActiveLayer(rasters[0])
    panel = plugin.show_panel()
    panel.set_query(QUERY)
    panel.area_combo.setCurrentIndex(panel.area_combo.findData("layer"))
    panel.finished.connect(lambda outcome, result: QTimer.singleShot(2000, lambda: refine(panel, result)))
    QTimer.singleShot(3000, lambda: panel.run() or log(f"ERROR: no run: {panel.status_label.text()}"))


def screen(canvas, xy: QgsPointXY) -> QPoint:
    p = canvas.getCoordinateTransform().transform(canvas.mapSettings().layerToMapCoordinates(
        iface.activeLayer(), xy))
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
        lambda: QTest.mouseClick(viewport, Qt.LeftButton, Qt.NoModifier, screen(canvas, QgsPointXY(x0 + w * 0.3, y0 + h * 0.7))),
        lambda: QTest.mouseClick(viewport, Qt.RightButton, Qt.NoModifier, screen(canvas, QgsPointXY(x0 + w * 0.6, y0 + h * 0.45))),
        lambda: drag(viewport, screen(canvas, QgsPointXY(x0 + w * 0.15, y0 + h * 0.1)),
                     screen(canvas, QgsPointXY(x0 + w * 0.9, y0 + h * 0.85))),
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


def quit_qgis(code: int) -> None:
    log(f"exit {code}")
    QgsProject.instance().setDirty(False)
    QTimer.singleShot(5000, lambda: os._exit(code))
    os._exit(code) if code else iface.actionExit().trigger()


def give_up() -> None:
    if not state["done"]:
        log("ERROR: no refine in time")
        grab("refine.png")
        quit_qgis(1)


os.makedirs(OUT, exist_ok=True)
QTimer.singleShot(2000, start)
QTimer.singleShot(TIMEOUT_MS, give_up)

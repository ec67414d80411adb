"""QGIS start-up code for `make screenshot`: the first run, a query through the panel, one through Processing.

Pictures: first_run.png (a profile with nothing configured: the panel and its "Set up backend" dialog),
running.png (the panel while the reasoner writes: its token count), panel.png and result.png (a query through
the panel), processing_dialog.png (the algorithm's dialog as the
toolbox opens it, with its defaults), processing.png (think2seg:segment with its outputs loaded). Then QGIS quits.

Reads THINK2SEG_SCREENSHOT_DIR (where the PNGs go), THINK2SEG_SCREENSHOT_QUERY and
THINK2SEG_SCREENSHOT_STATUS (a file that receives what the panel said, for the shell to print).
"""

import os

from qgis.core import QgsProject, QgsSettings
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface
from qgis_screenshot_common import OUT, QUERY, grab, log, quit_qgis, schedule, show_panel

PROCESSING_QUERY = os.environ.get("THINK2SEG_SCREENSHOT_PROCESSING_QUERY", "the ponds")
TIMEOUT_MS = 420_000
state = {"done": False}
# The first-run picture needs a QGIS that knows no backend: the backend's address comes back afterwards.
BACKEND_ENV = {
    k: os.environ.pop(k)
    for k in ("THINK2SEG_BACKEND_URL", "THINK2SEG_BACKEND_PYTHON", "THINK2SEG_TOKEN_FILE")
    if k in os.environ
}


def start() -> None:
    QgsSettings().remove("think2seg")
    panel = show_panel()
    if panel is None:
        return
    panel.backend_box.settings_box.setCollapsed(True)
    QTimer.singleShot(4000, lambda: first_run(panel))


def first_run(panel) -> None:
    log(f"first run: {panel.backend_box.status_label.toolTip()}")
    dialog = panel.open_setup()
    window = iface.mainWindow().geometry()
    dialog.move(window.center().x() - dialog.width() // 2 - 200, window.center().y() - dialog.height() // 2)
    QTimer.singleShot(1500, lambda: grab_first_run(panel, dialog))


def grab_first_run(panel, dialog) -> None:
    grab("first_run.png")
    dialog.close()
    os.environ.update(BACKEND_ENV)
    panel.backend_box.check()
    panel.set_query(QUERY)
    panel.area_combo.setCurrentIndex(panel.area_combo.findData("layer"))
    panel.finished.connect(lambda outcome, result: QTimer.singleShot(3000, lambda: finish(panel, result)))
    QTimer.singleShot(4000, lambda: run(panel))


def run(panel) -> None:
    log(f"backend: {panel.backend_box.status_label.toolTip()}")
    if panel.run() is None:
        log(f"ERROR: the run did not start: {panel.status_label.text()}")
        QTimer.singleShot(1000, lambda: finish(panel, None))
        return
    watch = QTimer(panel)  # the panel's status while the run goes: grabbed once it counts the reasoner's tokens

    def look() -> None:
        if "tokens written" in panel.status_label.text():
            watch.stop()
            grab("running.png")
        elif panel.task is None:
            watch.stop()
            log("no token count was shown before the run ended: no running.png")

    watch.timeout.connect(look)
    watch.start(50)


def finish(panel, result) -> None:
    if state["done"]:
        return
    state["done"] = True
    log(f"panel: {panel.status_label.text()}")
    canvas = iface.mapCanvas()
    canvas.waitWhileRendering()
    grab("panel.png")
    if result is not None:
        # The answer over the whole raster, map only.
        raster = panel.layer_combo.currentLayer()
        canvas.setExtent(canvas.mapSettings().layerExtentToOutputExtent(raster, raster.extent()))
        canvas.refresh()
        QTimer.singleShot(2500, lambda: save_map(canvas))
    else:
        QTimer.singleShot(500, lambda: quit_qgis(0 if result is not None else 1))


def save_map(canvas) -> None:
    canvas.waitWhileRendering()
    path = os.path.join(OUT, "result.png")
    canvas.saveAsImage(path)
    world_file = path[:-4] + ".pgw"  # saveAsImage georeferences the picture; docs do not need that
    if os.path.exists(world_file):
        os.remove(world_file)
    log(f"saved {path}")
    QTimer.singleShot(500, processing_dialog)


def processing_dialog() -> None:
    """The toolbox's dialog as a user opens it: the defaults (raster, outputs created) are the algorithm's own."""
    import processing

    try:
        dialog = processing.createAlgorithmDialog("think2seg:segment", {"QUERY": PROCESSING_QUERY})
    except Exception as error:  # noqa: BLE001 - say it in the status file, go on with the run
        log(f"ERROR: processing dialog: {error}")
        QTimer.singleShot(500, run_processing)
        return
    dialog.resize(900, 720)
    window = iface.mainWindow().geometry()
    dialog.move(window.center().x() - dialog.width() // 2, window.center().y() - dialog.height() // 2)
    dialog.show()

    def take() -> None:
        grab("processing_dialog.png")
        dialog.close()
        QTimer.singleShot(500, run_processing)

    QTimer.singleShot(2000, take)


def run_processing() -> None:
    import processing

    raster = iface.activeLayer()
    try:
        processing.runAndLoadResults(
            "think2seg:segment",
            {"INPUT": raster, "QUERY": PROCESSING_QUERY, "OUTPUT": "TEMPORARY_OUTPUT",
             "OUTPUT_POINTS": "TEMPORARY_OUTPUT", "OUTPUT_BOXES": "TEMPORARY_OUTPUT"},
        )  # fmt: skip
    except Exception as error:  # noqa: BLE001 - say it in the status file, still take the picture
        log(f"ERROR: processing: {error}")
    group = QgsProject.instance().layerTreeRoot().findGroup(PROCESSING_QUERY)
    log(f"processing group: {[n.name() for n in group.children()] if group else None}")
    QTimer.singleShot(3000, lambda: (iface.mapCanvas().waitWhileRendering(), grab("processing.png"), quit_qgis(0)))


def give_up() -> None:
    if not state["done"]:
        log("ERROR: no answer in time")
        grab("panel.png")
        quit_qgis(1)


schedule(start, give_up, TIMEOUT_MS)

"""What the QGIS start-up scripts for screenshots share (qgis_screenshot_startup.py, qgis_refine_screenshot_startup.py).

They run inside QGIS (`qgis --code FILE`, started by qgis_screenshot.sh, which puts this folder on PYTHONPATH):
the environment they read, the status file the shell prints, taking a picture of the screen, finding the panel,
and quitting QGIS with an exit code the shell checks.
"""

import os
import subprocess

from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication
from qgis.utils import iface, plugins

OUT = os.environ.get("THINK2SEG_SCREENSHOT_DIR", "docs/screenshots")
QUERY = os.environ.get("THINK2SEG_SCREENSHOT_QUERY", "the wetlands that hold water all year")
STATUS = os.environ.get("THINK2SEG_SCREENSHOT_STATUS", "")


def log(text: str) -> None:
    """To QGIS's output and to the status file the shell prints."""
    print(f"[screenshot] {text}", flush=True)
    if STATUS:
        with open(STATUS, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")


def grab(name: str) -> None:
    """The whole screen (window, docks, dialogs) as OUT/name."""
    QApplication.processEvents()
    path = os.path.join(OUT, name)
    subprocess.run(["import", "-window", "root", path], check=False)
    log(f"saved {path}")


def show_panel():
    """The Think2Seg panel over a full-screen window with the first raster active; None (and QGIS quits with 1)
    when the plugin is not loaded."""
    plugin = plugins.get("think2seg_qgis")
    if plugin is None:
        log("ERROR: the plugin is not loaded")
        quit_qgis(1)
        return None
    # No window manager under Xvfb: give the window the whole screen by hand.
    iface.mainWindow().setGeometry(QApplication.primaryScreen().availableGeometry())
    rasters = [layer for layer in QgsProject.instance().mapLayers().values() if isinstance(layer, QgsRasterLayer)]
    if rasters:
        iface.setActiveLayer(rasters[0])
    return plugin.show_panel()


def quit_qgis(code: int) -> None:
    log(f"exit {code}")
    QgsProject.instance().setDirty(False)
    QTimer.singleShot(5000, lambda: os._exit(code))  # if a dialog blocks the normal exit
    os._exit(code) if code else iface.actionExit().trigger()


def schedule(start, give_up, timeout_ms: int) -> None:
    """`start` once QGIS has settled; `give_up` when the pictures are not taken in `timeout_ms`."""
    os.makedirs(OUT, exist_ok=True)
    QTimer.singleShot(2000, start)
    QTimer.singleShot(timeout_ms, give_up)

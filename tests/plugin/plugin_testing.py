"""Helpers shared by the plugin tests (QGIS is started by conftest.py before these are used)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qgis.core import QgsRasterLayer
from qgis.PyQt.QtCore import QCoreApplication

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ROOT / "resources"
NAIP = RESOURCES / "naip_prairie_potholes_2020.tif"
LANDSAT = RESOURCES / "landsat_rgb_byte.tif"


def load_raster(path: Path, name: str | None = None) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), name or path.stem, "gdal")
    assert layer.isValid(), path
    return layer


def wait_until(predicate, timeout: float = 120.0, step: float = 0.05) -> bool:
    """Spin the Qt event loop until ``predicate()`` or the timeout (QgsTask results arrive through it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        if predicate():
            return True
        time.sleep(step)
    QCoreApplication.processEvents()
    return bool(predicate())


@contextmanager
def open_panel(iface) -> Iterator:
    """The plugin loaded into ``iface`` with its panel shown; unloaded at the end."""
    from think2seg_qgis import classFactory

    plugin = classFactory(iface)
    plugin.initGui()
    try:
        yield plugin.show_panel()
    finally:
        plugin.unload()


def choose_layer(panel, project, layer: QgsRasterLayer, query: str) -> None:
    """Add ``layer`` to the project and set the panel to read all of it for ``query``."""
    project.addMapLayer(layer)
    panel.layer_combo.setLayer(layer)
    panel.area_combo.setCurrentIndex(panel.area_combo.findData("layer"))
    panel.set_query(query)


def run_panel(panel, timeout: float = 120.0) -> tuple:
    """Press Run and wait for the panel's ``finished``: (outcome, result layers or None)."""
    outcomes = []
    panel.finished.connect(lambda outcome, result: outcomes.append((outcome, result)))
    task = panel.run()
    assert task is not None, panel.status_label.text()
    assert wait_until(lambda: outcomes, timeout=timeout), "the run did not finish"
    return outcomes[0]

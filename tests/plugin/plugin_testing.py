"""Helpers shared by the plugin tests (QGIS is started by conftest.py before these are used)."""

from __future__ import annotations

import time
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

"""Helpers shared by the plugin tests (QGIS is started by conftest.py before these are used)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from qgis.core import QgsRasterLayer
from qgis.PyQt.QtCore import QCoreApplication

from think2seg_qgis.backend_setup import base_python

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ROOT / "resources"
NAIP = RESOURCES / "naip_prairie_potholes_2020.tif"
LANDSAT = RESOURCES / "landsat_rgb_byte.tif"
TINY = ROOT / ".cache" / "tiny-models"


def tiny_backend_settings(python: str, folder: Path, **changes):
    """The panel's settings for a local backend on the tiny models (CPU), on a free port, its token in ``folder``."""
    from think2seg.testing.live_service import free_port

    from think2seg_qgis.settings import BackendSettings

    values = dict(
        python=str(python),
        port=free_port(),
        token_file=str(Path(folder) / "token"),
        model=str(TINY / "reasoner"),
        sam_checkpoint=str(TINY / "sam2.1_hiera_t.pt"),
        device="cpu",
    )
    values.update(changes)
    return BackendSettings(**values)


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


# -- where a set-up in a test takes torch & co. from (test_first_run, test_child_env) --------------------------
BACKEND_PYTHON = ROOT / ".venv" / "bin" / "python"


WHEELHOUSE = "THINK2SEG_SETUP_WHEELHOUSE"
VERSION = "import sys; print('%d.%d' % sys.version_info[:2])"


def python_version(python: str) -> str:
    return subprocess.run([python, "-c", VERSION], capture_output=True, text=True, check=True).stdout.strip()


def package_source(monkeypatch) -> tuple[str, str]:
    """Where the set-up takes torch & co. from: ("reuse", site-packages) or ("wheels", folder); skips otherwise."""
    setup_version, backend_version = python_version(base_python()), python_version(str(BACKEND_PYTHON))
    if setup_version == backend_version:
        return "reuse", backend_site_packages()
    wheels = os.environ.get(WHEELHOUSE, "").strip()
    if wheels and list(Path(wheels).glob(f"torch-*-cp{setup_version.replace('.', '')}-*.whl")):
        monkeypatch.setenv("PIP_NO_INDEX", "1")
        monkeypatch.setenv("PIP_FIND_LINKS", wheels)
        return "wheels", wheels
    pytest.skip(
        f"the set-up makes its venv with Python {setup_version} ({base_python()}), the backend venv has "
        f"{backend_version}: its packages cannot be reused, and no wheels for {setup_version} are given "
        f"(${WHEELHOUSE}, a folder with torch, torchvision, sam2 and think2seg's dependencies built for it); "
        "installing them needs the registry, which tests do not reach"
    )


def backend_site_packages() -> str:
    return subprocess.run(
        [str(BACKEND_PYTHON), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip

"""Real QGIS, offscreen, started once; a minimal iface; a real Think2Seg service on the tiny models.

The service fixture starts ``think2seg serve`` from the backend venv (or $THINK2SEG_BACKEND_PYTHON) through
``think2seg.testing.live_service`` (the backend suite's way too), and stops it at the end of the session.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / ".cache" / "tiny-models"

# Before Qt starts: no display, and QgsSettings written to a throw-away folder, never the user's profile.
# QGIS keeps its profile (and QgsSettings' .ini) under the data folder, so both XDG folders are redirected:
# with only XDG_CONFIG_HOME, settings saved by one run (a panel test's bound) leaked into every later run.
os.environ["QT_QPA_PLATFORM"] = "offscreen"
# The service the tests start inherits this: OpenMP threads that wait asleep (tests/backend/conftest.py says why).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_CONFIG = tempfile.mkdtemp(prefix="think2seg_qgis_config_")
atexit.register(shutil.rmtree, _CONFIG, True)  # registered first, so it runs after QGIS has exited
os.environ["XDG_CONFIG_HOME"] = _CONFIG
os.environ["XDG_DATA_HOME"] = _CONFIG
os.environ.setdefault("XDG_RUNTIME_DIR", _CONFIG)
for _name in ("THINK2SEG_BACKEND_URL", "THINK2SEG_TOKEN_FILE"):
    os.environ.pop(_name, None)
# Backends the plugin starts get no PYTHONPATH (think2seg_qgis.child_env): this one gives them this checkout's code.
os.environ.setdefault("THINK2SEG_CHILD_PYTHONPATH", os.environ.get("PYTHONPATH") or str(ROOT / "backend"))
sys.path.insert(0, str(ROOT))
if "/usr/share/qgis/python/plugins" not in sys.path:
    sys.path.append("/usr/share/qgis/python/plugins")

import pytest  # noqa: E402
from qgis.core import QgsApplication, QgsMapLayer, QgsProject  # noqa: E402
from qgis.gui import QgsMapCanvas, QgsMessageBar  # noqa: E402
from qgis.PyQt.QtCore import QObject, pyqtSignal  # noqa: E402
from qgis.PyQt.QtWidgets import QMainWindow  # noqa: E402

_APP = QgsApplication([], True)
_APP.setOrganizationName("Think2SegTests")
_APP.setApplicationName("Think2SegTests")
_APP.initQgis()
# As qgis.testing.start_app does: QGIS shut down before Python tears the interpreter down. Left to the
# garbage collector, the application and its providers went in any order, and a run whose tests all passed
# exited once with SIGSEGV (rc 139).
atexit.register(_APP.exitQgis)

from processing.core.Processing import Processing  # noqa: E402

Processing.initialize()

# The one way the test suites start a live service (standard library only: QGIS's Python can import it).
sys.path.insert(0, str(ROOT / "backend"))
from think2seg.testing.live_service import LiveService, live_service  # noqa: E402


# -- a minimal iface ---------------------------------------------------------------------------------------
class RecordingMessageBar(QgsMessageBar):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.messages: list[tuple[str, str, int]] = []  # (title, the bar's line, level)
        self.details: list[str] = []  # what each message keeps behind "Show more" ("" for none)

    def pushMessage(self, title, text=None, *args, **kwargs):  # noqa: N802 - Qt naming
        # QgsMessageBar's overloads: (title, text, level, duration) and (title, text, showMore, level, duration)
        more = args[0] if args and isinstance(args[0], str) else kwargs.get("showMore", "")
        rest = list(args[1:] if args and isinstance(args[0], str) else args)
        level = kwargs.get("level", rest[0] if rest else 0)
        duration = kwargs.get("duration", rest[1] if len(rest) > 1 else -1)
        self.messages.append((title, text, int(level)))
        self.details.append(more or "")
        if more:
            return super().pushMessage(title, text, more, level, duration)
        return super().pushMessage(title, text, level, duration)


class FakeIface(QObject):
    """What the plugin uses of QgisInterface, backed by real widgets."""

    currentLayerChanged = pyqtSignal(QgsMapLayer)  # noqa: N815 - QGIS naming

    def __init__(self):
        super().__init__()
        self._window = QMainWindow()
        self._window.resize(1200, 800)
        self._canvas = QgsMapCanvas(self._window)
        self._canvas.resize(800, 600)
        self._window.setCentralWidget(self._canvas)
        self._bar = RecordingMessageBar(self._window)
        self._toolbar = self._window.addToolBar("Plugins")
        self._active = None
        self.menus: dict[str, list] = {}
        self.docks: list = []
        self._window.show()

    def mainWindow(self):  # noqa: N802
        return self._window

    def mapCanvas(self):  # noqa: N802
        return self._canvas

    def messageBar(self):  # noqa: N802
        return self._bar

    def activeLayer(self):  # noqa: N802
        return self._active

    def setActiveLayer(self, layer):  # noqa: N802
        self._active = layer
        self.currentLayerChanged.emit(layer)
        return True

    def addToolBarIcon(self, action):  # noqa: N802
        self._toolbar.addAction(action)

    def removeToolBarIcon(self, action):  # noqa: N802
        self._toolbar.removeAction(action)

    def toolbar_actions(self) -> list:
        return list(self._toolbar.actions())

    def addPluginToRasterMenu(self, menu, action):  # noqa: N802
        self.menus.setdefault(menu, []).append(action)

    def removePluginRasterMenu(self, menu, action):  # noqa: N802
        if action in self.menus.get(menu, []):
            self.menus[menu].remove(action)

    def addDockWidget(self, area, dock):  # noqa: N802
        self.docks.append(dock)
        self._window.addDockWidget(area, dock)

    def removeDockWidget(self, dock):  # noqa: N802
        if dock in self.docks:
            self.docks.remove(dock)
        self._window.removeDockWidget(dock)


@pytest.fixture(scope="session")
def qgis_app():
    return _APP


@pytest.fixture(autouse=True)
def fresh_plugin_settings():
    """Every test starts from the plugin's defaults: what one test saves (the panel saves its bounds on Run)
    must not change what the next one sends."""
    from qgis.core import QgsSettings

    QgsSettings().remove("think2seg")
    yield


@pytest.fixture()
def iface(qgis_app):
    fake = FakeIface()
    yield fake
    fake.deleteLater()


@pytest.fixture()
def project(qgis_app):
    QgsProject.instance().clear()
    yield QgsProject.instance()
    QgsProject.instance().clear()


# -- the real service ------------------------------------------------------------------------------------
def backend_python() -> str:
    custom = os.environ.get("THINK2SEG_BACKEND_PYTHON", "").strip()
    return custom or str(ROOT / ".venv" / "bin" / "python")


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> LiveService:
    reasoner, sam = TINY / "reasoner", TINY / "sam2.1_hiera_t.pt"
    if not reasoner.is_dir() or not sam.is_file():
        pytest.fail(f"The tiny models are missing ({TINY}): run `make tiny-models` first.")
    args = ["--model", str(reasoner), "--sam", str(sam), "--device", "cpu"]
    try:
        with live_service(args, tmp_path_factory.mktemp("service"), python=backend_python()) as svc:
            yield svc
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture()
def use_service(service, monkeypatch) -> LiveService:
    """Point the plugin (panel and Processing) at the session's service through the environment."""
    monkeypatch.setenv("THINK2SEG_BACKEND_URL", service.url)
    monkeypatch.setenv("THINK2SEG_TOKEN_FILE", str(service.token_file))
    return service

"""A ZIP install with nothing configured is led to a working backend through the panel ("Set up backend").

The set-up runs its real steps (venv, pip, the project's own wheel, the check) on this machine, with the Python
the plugin finds (QGIS's). To stay cheap and offline it takes the heavy packages from one of two places, and the
test's output says which:
- the backend venv's site-packages (SetupPlan.reuse_site_packages), only when that venv's Python has the same
  version as the one the set-up uses: compiled packages (pydantic_core, torch) load only in their own version;
- else a folder of wheels built for that Python ($THINK2SEG_SETUP_WHEELHOUSE), which pip installs from with no
  index (PIP_NO_INDEX, PIP_FIND_LINKS);
- else the test is skipped with the reason: installing torch & co. for another Python needs the registry (PyTorch's
  CPU index and PyPI), and tests reach only 127.0.0.1.
The think2seg package itself is always installed from the wheel into the new venv. Then the panel starts that
environment's backend on the tiny models.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from plugin_testing import BACKEND_PYTHON, ROOT, package_source, wait_until
from qgis.core import QgsSettings
from think2seg.testing.live_service import free_port

from think2seg_qgis.backend_launcher import STATE_READY
from think2seg_qgis.errors import NOT_CONFIGURED

TINY = ROOT / ".cache" / "tiny-models"


@pytest.fixture(scope="module")
def backend_wheel(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [str(BACKEND_PYTHON), "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(folder),
         str(ROOT / "backend")],
        check=True, timeout=300,
    )  # fmt: skip
    return next(folder.glob("think2seg-*.whl"))


@pytest.mark.slow
def test_a_fresh_profile_gets_a_ready_backend_through_the_panel(iface, project, tmp_path, monkeypatch, backend_wheel):
    from think2seg_qgis import classFactory

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # logs and token under a throw-away home
    monkeypatch.delenv("THINK2SEG_BACKEND_PYTHON", raising=False)
    QgsSettings().remove("think2seg")  # a fresh profile: nothing configured
    source, where = package_source(monkeypatch)
    print(f"set-up packages: {source} from {where}")
    plugin = classFactory(iface)
    plugin.initGui()
    try:
        panel = plugin.show_panel()
        box = panel.backend_box
        assert not box.is_configured()
        assert box.setup_button.isVisibleTo(panel)  # the way forward is offered
        assert not box.start_button.isEnabled()  # nothing to start yet
        box.start_local()
        assert "Set up backend" in box.status_label.text()
        assert panel.launcher.process is None

        # Models for the tiny test run (a user keeps the published defaults).
        box.model_edit.setText(str(TINY / "reasoner"))
        box.sam_widget.setFilePath(str(TINY / "sam2.1_hiera_t.pt"))
        box.device_combo.setCurrentText("cpu")
        box.port_spin.setValue(free_port())
        box.token_file_widget.setFilePath(str(tmp_path / "token"))
        box.save()

        dialog = panel.open_setup()
        dialog.wheel = str(backend_wheel)
        dialog.reuse_site_packages = where if source == "reuse" else ""
        venv = tmp_path / "backend-venv"
        dialog.folder_widget.setFilePath(str(venv))
        dialog.go_button.click()
        assert dialog.setup is not None, dialog.status_label.text()
        assert wait_until(lambda: dialog.setup.ok is not None, timeout=600), dialog.log_view.toPlainText()[-3000:]
        assert dialog.setup.ok, dialog.status_label.text() + "\n" + dialog.log_view.toPlainText()[-3000:]
        installed = list((venv / "lib").glob("python3*/site-packages/think2seg/__init__.py"))
        assert installed, "the wheel was installed into the new environment"
        assert "Step" not in dialog.status_label.text() and "installed in" in dialog.status_label.text()

        assert wait_until(lambda: panel.launcher.state == STATE_READY, timeout=300), panel.launcher.log_tail()
        assert panel.launcher.process is None or panel.launcher.process.args[0] == str(venv / "bin" / "python")
        assert wait_until(lambda: box.kind == "ok", timeout=30), box.status_label.text()
        assert box.is_configured() and not box.setup_button.isVisibleTo(panel)
        assert QgsSettings().value("think2seg/backend/python") == str(venv)
    finally:
        plugin.unload()


def test_start_without_a_backend_names_the_setup(iface, project, tmp_path, monkeypatch):
    from think2seg_qgis.backend_launcher import BackendLauncher
    from think2seg_qgis.errors import Think2SegError
    from think2seg_qgis.settings import BackendSettings

    monkeypatch.delenv("THINK2SEG_BACKEND_PYTHON", raising=False)
    with pytest.raises(Think2SegError) as info:
        BackendLauncher(log_file=str(tmp_path / "log")).start(BackendSettings(python=str(tmp_path)))
    assert info.value.code == NOT_CONFIGURED

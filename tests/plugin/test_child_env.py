"""Every process the plugin starts gets one environment (think2seg_qgis.child_env): QGIS's PYTHONHOME,
PYTHONPATH, PROJ_LIB... dropped, the user's network settings kept, QGIS's proxy added. With hostile values in
this (QGIS's) process, the set-up's steps and Start still end in a working backend."""

from __future__ import annotations

import os
import sys

import pytest
from plugin_testing import ROOT, package_source, tiny_backend_settings, wait_until
from qgis.core import QgsSettings

from think2seg_qgis.backend_launcher import STATE_READY, BackendLauncher
from think2seg_qgis.backend_setup import BackendSetup, SetupPlan, SetupStep
from think2seg_qgis.child_env import DROPPED, NETWORK, child_environment, qgis_proxy_settings, qgis_python_folders

BACKEND_PYTHON = str(ROOT / ".venv" / "bin" / "python")
#: What the backend interpreter must do: its own numpy, and rasterio's PROJ finding its own proj.db.
CHECK = (
    "import os, numpy, rasterio.crs; assert 'PYTHONPATH' not in os.environ; "
    "print('EPSG ok', rasterio.crs.CRS.from_epsg(32633).to_epsg())"
)


@pytest.fixture()
def hostile(tmp_path, monkeypatch):
    """QGIS's environment at its worst: a PYTHONPATH whose numpy raises on import, PROJ_LIB/PROJ_DATA in an
    empty folder, GDAL_DATA elsewhere, PYTHONSTARTUP that raises, QGIS's Python first on PATH."""
    bad = tmp_path / "qgis-python"
    (bad / "numpy").mkdir(parents=True)
    (bad / "numpy" / "__init__.py").write_text("raise ImportError('this numpy is QGIS\\'s, not the backend\\'s')\n")
    startup = tmp_path / "startup.py"
    startup.write_text("raise SystemExit('PYTHONSTARTUP of QGIS ran in the backend')\n")
    empty = tmp_path / "empty-proj"
    empty.mkdir()
    for name, value in {
        "PYTHONPATH": str(bad),
        "PROJ_LIB": str(empty),
        "PROJ_DATA": str(empty),
        "GDAL_DATA": str(empty),
        "PYTHONSTARTUP": str(startup),
        "HTTPS_PROXY": "http://proxy.example:3128",
        "REQUESTS_CA_BUNDLE": "/etc/corp-ca.pem",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", os.path.join(sys.prefix, "bin") + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("THINK2SEG_CHILD_PYTHONPATH", raising=False)
    return bad


def test_the_child_environment_drops_qgis_and_keeps_the_network(hostile):
    env = child_environment(proxy={})
    for name in DROPPED:
        assert name not in env, name
    assert env["HTTPS_PROXY"] == "http://proxy.example:3128" and env["REQUESTS_CA_BUNDLE"] == "/etc/corp-ca.pem"
    assert env["PIP_INDEX_URL"] == "http://127.0.0.1:9/simple"
    assert "127.0.0.1" in env["NO_PROXY"].split(",")  # the backend on loopback is never proxied
    own = {os.path.join(f, "bin") for f in qgis_python_folders()}  # QGIS's own Python (none for a system Python)
    assert not own & set(env["PATH"].split(os.pathsep))
    assert "/usr/bin" in env["PATH"].split(os.pathsep) or "/usr/bin" not in os.environ["PATH"]
    assert set(NETWORK) >= {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE", "PIP_CERT"}


def test_qgis_proxy_settings_are_added_when_the_environment_has_none(qgis_app, monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    s = QgsSettings()
    try:
        for key, value in {
            "proxy/proxyEnabled": True,
            "proxy/proxyType": "HttpProxy",
            "proxy/proxyHost": "corp",
            "proxy/proxyPort": "8080",
            "proxy/proxyUser": "me",
            "proxy/proxyPassword": "p@ss",
            "proxy/proxyExcludedUrls": "intranet.local",
        }.items():
            s.setValue(key, value)
        proxy = qgis_proxy_settings()
        assert proxy["HTTPS_PROXY"] == "http://me:p%40ss@corp:8080"
        env = child_environment()
        assert env["HTTP_PROXY"] == env["HTTPS_PROXY"] == "http://me:p%40ss@corp:8080"
        assert env["NO_PROXY"].split(",")[:2] == ["intranet.local", "127.0.0.1"]
        s.setValue("proxy/proxyType", "DefaultProxy")  # "use the system's proxy": the environment has it
        assert qgis_proxy_settings() == {}
    finally:
        s.remove("proxy")
    assert qgis_proxy_settings() == {}


def test_a_set_up_step_runs_clean_in_a_hostile_qgis(qgis_app, hostile, tmp_path):
    wheel = tmp_path / "think2seg-0-py3-none-any.whl"
    wheel.write_bytes(b"")
    setup = BackendSetup(SetupPlan(venv_dir=str(tmp_path / "venv"), wheel=str(wheel)), str(tmp_path / "setup.log"))
    setup.steps = [SetupStep("Checking the installation", [BACKEND_PYTHON, "-c", CHECK])]
    out = []
    setup.output.connect(out.append)
    setup.start()
    assert wait_until(lambda: setup.ok is not None, timeout=120), "".join(out)
    assert setup.ok, "".join(out)
    assert "EPSG ok 32633" in "".join(out)


def test_start_ends_in_a_working_backend_in_a_hostile_qgis(qgis_app, hostile, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONHOME", str(tmp_path / "qgis-home"))  # fatal to any other interpreter
    launcher = BackendLauncher(log_file=str(tmp_path / "backend.log"))
    launcher.start(tiny_backend_settings(BACKEND_PYTHON, tmp_path))
    try:
        assert wait_until(lambda: launcher.state == STATE_READY, timeout=240), launcher.log_tail()
    finally:
        launcher.stop()


@pytest.mark.slow
def test_the_whole_set_up_then_start_in_a_hostile_qgis(qgis_app, hostile, tmp_path, monkeypatch):
    """Set up backend's real steps (venv, pip, the project's wheel, the check; torch and the rest reused from the
    backend venv as in test_first_run, so nothing is downloaded), then Start, all with QGIS's worst environment."""
    import subprocess

    for name in ("HTTPS_PROXY", "REQUESTS_CA_BUNDLE", "PIP_INDEX_URL"):  # kept on purpose: here they would be wrong
        monkeypatch.delenv(name)
    how, source = package_source(monkeypatch)  # reuse the backend venv's packages only for the same Python
    reuse = source if how == "reuse" else ""
    monkeypatch.setenv("PYTHONHOME", str(tmp_path / "qgis-home"))
    wheel_dir = tmp_path / "wheel"
    clean = child_environment(proxy={})
    subprocess.run(
        [
            BACKEND_PYTHON,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheel_dir),
            str(ROOT / "backend"),
        ],
        check=True,
        timeout=300,
        env=clean,
    )
    wheel = next(wheel_dir.glob("think2seg-*.whl"))
    venv = tmp_path / "venv"
    setup = BackendSetup(
        SetupPlan(venv_dir=str(venv), wheel=str(wheel), reuse_site_packages=reuse), str(tmp_path / "setup.log")
    )
    out = []
    setup.output.connect(out.append)
    setup.start()
    assert wait_until(lambda: setup.ok is not None, timeout=600), "".join(out)[-3000:]
    assert setup.ok, "".join(out)[-3000:]
    launcher = BackendLauncher(log_file=str(tmp_path / "backend.log"))
    launcher.start(tiny_backend_settings(venv, tmp_path))
    try:
        assert wait_until(lambda: launcher.state == STATE_READY, timeout=300), launcher.log_tail()
    finally:
        launcher.stop()

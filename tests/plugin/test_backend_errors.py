"""A stopped, silent or mistrusting backend gives a sentence quickly, never a hang."""

from __future__ import annotations

import os
import socket
import time

import pytest
from plugin_testing import NAIP, choose_layer, load_raster, open_panel, run_panel, tiny_backend_settings, wait_until
from qgis.core import QgsProcessingException
from think2seg.testing.live_service import free_port

from think2seg_qgis.backend_launcher import (
    STATE_CRASHED,
    STATE_FAILED,
    STATE_READY,
    BackendLauncher,
    download_sentence,
    resolve_interpreter,
    serve_command,
)
from think2seg_qgis.client import BackendClient
from think2seg_qgis.errors import (
    IN_PROCESSING,
    NOT_CONFIGURED,
    TIMEOUT,
    UNAUTHORIZED,
    UNREACHABLE,
    WEIGHTS_UNAVAILABLE,
    Think2SegError,
    backend_sentence,
)
from think2seg_qgis.settings import BackendSettings


def test_a_stopped_backend_is_unreachable_at_once(qgis_app):
    client = BackendClient(f"http://127.0.0.1:{free_port()}", "token", timeout=2)
    started = time.monotonic()
    with pytest.raises(Think2SegError) as info:
        client.health()
    assert time.monotonic() - started < 2
    assert info.value.code == UNREACHABLE
    assert "not reachable" in info.value.message


def test_a_silent_backend_times_out(qgis_app):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)  # accepts connections, never answers
        client = BackendClient(f"http://127.0.0.1:{server.getsockname()[1]}", "token", timeout=1)
        started = time.monotonic()
        with pytest.raises(Think2SegError) as info:
            client.health()
        assert time.monotonic() - started < 5
    assert info.value.code == TIMEOUT
    assert "did not answer in time" in info.value.message


def test_a_missing_token_is_named(use_service):
    with pytest.raises(Think2SegError) as info:
        BackendClient(use_service.url, "").health()
    assert info.value.code == "no_token"
    assert "token file is missing" in info.value.message


def test_the_panel_says_the_backend_is_not_reachable(iface, project, monkeypatch):
    monkeypatch.setenv("THINK2SEG_BACKEND_URL", f"http://127.0.0.1:{free_port()}")
    with open_panel(iface) as panel:
        choose_layer(panel, project, load_raster(NAIP), "the wetlands")
        started = time.monotonic()
        outcome, result = run_panel(panel, timeout=30)
        assert time.monotonic() - started < 30
        assert result is None and outcome.error is not None
        assert outcome.error.code == UNREACHABLE
        assert "not reachable" in panel.status_label.text()
        assert any("not reachable" in (text or "") for _, text, _ in iface.messageBar().messages)
        assert len(project.mapLayers()) == 1  # no junk layers
        assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()
        # The backend status line says it too.
        panel.backend_box.check()
        assert wait_until(lambda: "not reachable" in panel.backend_box.status_label.text(), timeout=10)


def test_processing_with_a_stopped_backend_raises_a_sentence(qgis_app, monkeypatch):
    import processing

    from think2seg_qgis import classFactory

    monkeypatch.setenv("THINK2SEG_BACKEND_URL", f"http://127.0.0.1:{free_port()}")
    plugin = classFactory(None)
    plugin.initProcessing()
    try:
        started = time.monotonic()
        with pytest.raises(QgsProcessingException) as info:
            processing.run("think2seg:segment", {"INPUT": str(NAIP), "QUERY": "the wetlands", "OUTPUT": "memory:"})
        assert time.monotonic() - started < 10
        assert "not reachable" in str(info.value)
    finally:
        plugin.unload()


def test_a_wrong_token_is_named(use_service):
    client = BackendClient(use_service.url, "not-the-token", timeout=5)
    with pytest.raises(Think2SegError) as info:
        client.health()
    assert info.value.code == UNAUTHORIZED
    assert "refused the token" in info.value.message


def test_launcher_needs_an_interpreter(qgis_app, monkeypatch):
    monkeypatch.delenv("THINK2SEG_BACKEND_PYTHON", raising=False)
    launcher = BackendLauncher()
    with pytest.raises(Think2SegError) as info:
        launcher.start(BackendSettings(python=""))
    assert info.value.code == NOT_CONFIGURED
    assert "Set up backend" in info.value.message  # the panel's own button, not a CLI step


def test_serve_command(qgis_app, tmp_path):
    settings = BackendSettings(port=9100, token_file=str(tmp_path / "t"), model="/m", device="cpu")
    command = serve_command(settings, "/venv/bin/python", "small")
    assert command[:4] == ["/venv/bin/python", "-m", "think2seg", "serve"]
    assert command[command.index("--port") + 1] == "9100"
    assert command[command.index("--sam") + 1] == "small"
    assert command[command.index("--model") + 1] == "/m"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    # The service watches QGIS's pid and stops when QGIS dies without stopping it.
    assert command[command.index("--parent-pid") + 1] == str(os.getpid())


def test_the_picker_accepts_a_venv_or_a_project_folder(tmp_path):
    python = tmp_path / "checkout" / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert resolve_interpreter(str(tmp_path / "checkout")) == str(python)  # the project folder
    assert resolve_interpreter(str(tmp_path / "checkout" / ".venv")) == str(python)  # the venv itself
    assert resolve_interpreter(str(python)) == str(python)  # the interpreter
    assert resolve_interpreter(str(tmp_path)) == ""  # nothing there


def test_backend_advice_is_in_the_panels_terms():
    cli = (
        "The reasoner weights 'RicardoString/Think2Seg-RS-3B' are not on this machine and the Hugging Face hub "
        "cannot be reached. On a machine with internet, fetch ... copy DIR here and pass --model DIR."
    )
    sentence = backend_sentence(WEIGHTS_UNAVAILABLE, cli)
    assert "--model" not in sentence and "“Reasoning model” in the panel's Backend settings" in sentence
    assert "Start" in backend_sentence(UNREACHABLE, "", "http://x")
    headless = backend_sentence(UNREACHABLE, "", "http://x", where=IN_PROCESSING)
    assert "Backend URL" in headless and "panel's Backend section" not in headless


def test_download_progress_reads_in_mb_and_percent():
    assert download_sentence({"what": "reasoner R", "done_mb": 812.4, "total_mb": 7512.0, "fraction": 0.108}) == (
        "Downloading the reasoner R weights: 812 of 7,512 MB (11 %)…"
    )
    assert "so far" in download_sentence({"what": "SAM2.1 small", "done_mb": 3.0, "total_mb": None})


@pytest.mark.slow
def test_missing_weights_are_a_failure_not_loading(qgis_app, tmp_path, monkeypatch):
    """The real service, offline, asked for weights it does not have: red, persistent, in the panel's words."""
    from conftest import backend_python

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub is unreachable: the backend must say so, not spin
    launcher = BackendLauncher(log_file=str(tmp_path / "backend.log"))
    states = []
    launcher.state_changed.connect(lambda state, sentence: states.append((state, sentence)))
    settings = tiny_backend_settings(backend_python(), tmp_path, model="RicardoString/Think2Seg-RS-3B")
    launcher.start(settings)
    try:
        assert wait_until(lambda: launcher.state == STATE_FAILED, timeout=180), (states, launcher.log_tail())
    finally:
        launcher.stop()
    sentence = [t for s, t in states if s == STATE_FAILED][-1]
    assert "cannot load" in sentence and "not on this machine" in sentence
    assert "“Reasoning model” in the panel's Backend settings" in sentence and "--model" not in sentence
    assert launcher.state == STATE_FAILED  # stop() keeps the failure on screen, it does not say "stopped"
    assert not launcher.is_running()


def test_launcher_reports_a_crash_with_the_log_tail(qgis_app, tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'CUDA error: no kernel image is available' >&2\nexit 3\n")
    fake.chmod(0o755)
    launcher = BackendLauncher(log_file=str(tmp_path / "backend.log"))
    states = []
    launcher.state_changed.connect(lambda state, sentence: states.append((state, sentence)))
    launcher.start(BackendSettings(python=str(fake), port=free_port(), token_file=str(tmp_path / "tok")))
    assert wait_until(lambda: any(s == STATE_CRASHED for s, _ in states), timeout=10)
    sentence = [t for s, t in states if s == STATE_CRASHED][0]
    assert "exited (code 3)" in sentence and "no kernel image" in sentence
    assert not launcher.is_running()


@pytest.mark.slow
def test_launcher_starts_and_stops_the_real_backend(qgis_app, tmp_path, service):
    """The panel's Start button path: the real service from the backend venv, on the tiny models."""
    from conftest import backend_python

    python = backend_python()
    launcher = BackendLauncher(log_file=str(tmp_path / "backend.log"))
    states = []
    launcher.state_changed.connect(lambda state, sentence: states.append((state, sentence)))
    settings = tiny_backend_settings(python, tmp_path)
    launcher.start(settings)
    try:
        assert wait_until(lambda: launcher.state == STATE_READY, timeout=180), (states, launcher.log_tail())
        assert (tmp_path / "token").stat().st_mode & 0o777 == 0o600
        assert "Backend ready on CPU" in states[-1][1]
    finally:
        launcher.stop()
    assert not launcher.is_running()


class _ErrorServer:
    """A loopback HTTP server that answers every request with one canned error (status, JSON body)."""

    def __init__(self, status: int, body: dict):
        import http.server
        import json
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _answer  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ("status", "code", "words"),
    [
        (507, "out_of_memory", "ran out of memory"),
        (503, "models_loading", "still loading its models"),
        (422, "not_a_raster", "not a raster GDAL can read"),
        (500, "internal", "The backend failed"),
    ],
)
def test_backend_errors_become_sentences(qgis_app, tmp_path, status, code, words):
    messages = {
        "out_of_memory": "The GPU ran out of memory.",
        "models_loading": "The models are still loading.",
        "not_a_raster": "The uploaded file is not a raster GDAL can read.",
        "internal": "The backend failed: RuntimeError: boom",
    }
    server = _ErrorServer(status, {"error": {"code": code, "message": messages[code]}})
    image = tmp_path / "a.tif"
    image.write_bytes(b"II*\x00")
    try:
        with pytest.raises(Think2SegError) as info:
            BackendClient(server.url, "token").segment(str(image), "the wetlands")
    finally:
        server.close()
    assert info.value.code == code and info.value.status == status
    assert words in info.value.message


def test_remote_requests_go_through_qgis_network_stack(use_service):
    """The transport a remote backend gets (QgsBlockingNetworkRequest: QGIS's proxy and SSL settings), checked
    against the real service, from a worker thread as in a QgsTask or Processing."""
    import threading

    from think2seg_qgis.client import qgis_send

    url = use_service.url
    answers = {}

    def ask():
        answers["ok"] = qgis_send("GET", f"{url}/v1/health", {"Authorization": f"Bearer {use_service.token}"}, None, 10)
        answers["refused"] = qgis_send("GET", f"{url}/v1/health", {"Authorization": "Bearer wrong"}, None, 10)
        answers["gone"] = qgis_send("GET", f"http://127.0.0.1:{free_port()}/v1/health", {}, None, 5)

    worker = threading.Thread(target=ask)
    worker.start()
    worker.join(60)
    status, payload, error = answers["ok"]
    assert error is None and status == 200 and b'"status"' in payload
    _, _, refused = answers["refused"]
    assert refused.code == UNAUTHORIZED and "refused the token" in refused.message
    _, _, gone = answers["gone"]
    assert gone.code == UNREACHABLE


def test_the_plugins_error_codes_are_the_backends():
    """Issue 13's typed contract, plugin side: the codes the plugin switches on are the ones the backend sends."""
    from think2seg.errors import ERROR_CODES

    from think2seg_qgis.errors import BACKEND_HTTP_CODES, HTTP_STATUS_CODES

    assert set(BACKEND_HTTP_CODES) <= set(ERROR_CODES), set(BACKEND_HTTP_CODES) - set(ERROR_CODES)
    for status, code in HTTP_STATUS_CODES.items():
        if code in ERROR_CODES:
            assert ERROR_CODES[code] == status, (code, status)

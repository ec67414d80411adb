"""What a newcomer met on QGIS 3.40 (issue 23), each driven as a user would: focus, keys, clicks, the wheel.

The backend here is a loopback HTTP server that answers ``/v1/health`` as the service does (healthy, a 401 for a
token it does not hold, or nothing at all), so each test controls what the panel sees and when.
"""

from __future__ import annotations

import http.server
import json
import threading

import pytest
from plugin_testing import NAIP, choose_layer, load_raster, open_panel, run_panel, wait_until
from qgis.core import QgsSettings
from qgis.gui import QgsMapToolPan
from qgis.PyQt.QtCore import QPoint, QPointF, Qt
from qgis.PyQt.QtGui import QWheelEvent
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QApplication, QWidget

HEALTHY = {
    "status": "ok",
    "device": "cpu",
    "device_detail": "CPU",
    "models": {"reasoner": "tiny-reasoner", "segmenter": "sam2.1_hiera_t", "loaded": True},
    "queue": {"running": 0, "waiting": 0},
}
REFUSED = {"error": {"code": "unauthorized", "message": "Missing or wrong bearer token."}}


class HealthServer:
    """Answers every GET with ``self.answer`` (status, JSON body); counts the health checks it got."""

    def __init__(self, status: int = 200, body: dict | None = None):
        self.answer = (status, body if body is not None else HEALTHY)
        self.checks = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.checks += 1
                self._answer()

            def do_POST(self):  # noqa: N802 - a run: read the upload, answer as health does
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer()

            def _answer(self):
                status, body = server.answer
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def health_server():
    server = HealthServer()
    yield server
    server.close()


def remote_panel_settings(url: str, token_file) -> None:
    s = QgsSettings()
    s.setValue("think2seg/backend/mode", "remote")
    s.setValue("think2seg/backend/url", url)
    s.setValue("think2seg/backend/token_file", str(token_file))


def checked(box, before: int, server: HealthServer) -> None:
    """Press Check and wait until the answer is on screen."""
    assert wait_until(lambda: not box.probe._busy, timeout=10)  # a check already on its way answers first
    before = server.checks
    box.check()  # what the 15 s timer calls
    assert wait_until(lambda: server.checks > before and not box.probe._busy, timeout=10)
    for _ in range(3):
        QApplication.processEvents()


# -- 1: the settings stay put -------------------------------------------------------------------------------
def test_health_checks_never_collapse_the_settings_under_the_users_hands(iface, health_server, tmp_path):
    token = tmp_path / "token"
    token.write_text("secret")
    remote_panel_settings(health_server.url, token)
    with open_panel(iface) as panel:
        box = panel.backend_box
        assert wait_until(lambda: box.kind == "ok", timeout=10), box.status_label.text()
        # The user opens the settings and starts typing a token: checks every 15 s must leave the box open.
        box.settings_box.setCollapsed(False)
        iface.mainWindow().activateWindow()
        box.token_edit.setFocus()
        QTest.keyClicks(box.token_edit, "new-tok")
        for _ in range(3):
            checked(box, health_server.checks, health_server)
            assert not box.settings_box.isCollapsed(), "a health check collapsed the settings while typing"
        assert box.token_edit.text() == "new-tok"
        # Focus elsewhere, still healthy: no state change, so the box stays as the user left it.
        panel.query_combo.setFocus()
        checked(box, health_server.checks, health_server)
        assert not box.settings_box.isCollapsed()
        # Unhealthy, then healthy again: that change (and only that) folds the settings away.
        health_server.answer = (503, {"error": {"code": "models_loading", "message": "loading"}})
        checked(box, health_server.checks, health_server)
        assert box.kind == "busy"
        health_server.answer = (200, HEALTHY)
        checked(box, health_server.checks, health_server)
        assert box.kind == "ok" and box.settings_box.isCollapsed()


# -- 8: URL mode hides the local fields, also after re-expanding -------------------------------------------
def test_url_mode_keeps_the_local_fields_hidden_after_re_expanding(iface, health_server, tmp_path):
    remote_panel_settings(health_server.url, tmp_path / "token")
    with open_panel(iface) as panel:
        box = panel.backend_box
        assert wait_until(lambda: box.kind == "ok", timeout=10)  # that first answer folds the settings once
        box.settings_box.setCollapsed(False)
        QApplication.processEvents()
        assert box.remote_widget.isVisible() and not box.local_widget.isVisible()
        box.settings_box.setCollapsed(True)
        QApplication.processEvents()
        box.settings_box.setCollapsed(False)
        QApplication.processEvents()
        assert box.remote_widget.isVisible()
        assert not box.local_widget.isVisible(), "environment, model, device, port shown in URL mode"
        assert not box.start_button.isVisible()
        # And back in local mode after a collapse and expand: the local fields, not the URL.
        box.local_radio.click()
        box.settings_box.setCollapsed(True)
        box.settings_box.setCollapsed(False)
        QApplication.processEvents()
        assert box.local_widget.isVisible() and not box.remote_widget.isVisible()


# -- 7: advice matches the buttons -----------------------------------------------------------------------
def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_not_reachable_advice_matches_what_the_panel_offers(iface, tmp_path, monkeypatch):
    # URL mode: there is no Start button, so no "press Start".
    remote_panel_settings(f"http://127.0.0.1:{closed_port()}", tmp_path / "token")
    with open_panel(iface) as panel:
        box = panel.backend_box
        assert wait_until(lambda: "not reachable" in box.status_label.text(), timeout=10), box.status_label.text()
        assert not box.start_button.isVisible()
        assert "Start" not in box.status_label.toolTip(), box.status_label.toolTip()
        assert box.kind == "bad"
    # Local mode with an environment set up but nothing started: a normal state (grey), and Start is there.
    QgsSettings().remove("think2seg")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\n")
    s = QgsSettings()
    s.setValue("think2seg/backend/python", str(venv))
    s.setValue("think2seg/backend/port", closed_port())
    with open_panel(iface) as panel:
        box = panel.backend_box
        assert wait_until(lambda: "not started" in box.status_label.toolTip(), timeout=10), box.status_label.text()
        assert box.kind == "unknown", "a backend that is not started yet is not an error"
        assert "Start" in box.status_label.toolTip()
        assert box.start_button.isVisible() and box.start_button.isEnabled()
    # Nothing set up: Start is disabled, so the advice is the set-up.
    QgsSettings().remove("think2seg")
    monkeypatch.delenv("THINK2SEG_BACKEND_PYTHON", raising=False)
    with open_panel(iface) as panel:
        box = panel.backend_box
        assert wait_until(lambda: "Set up backend" in box.status_label.toolTip(), timeout=10)
        assert "press Start" not in box.status_label.toolTip()
        assert not box.start_button.isEnabled()


# -- 4: a shortcut QGIS does not use, registered so users can rebind it -----------------------------------
def test_refine_has_a_free_shortcut_registered_with_qgis(iface, project):
    from qgis.gui import QgsGui
    from qgis.PyQt.QtGui import QKeySequence
    from qgis.PyQt.QtWidgets import QAction

    manager = QgsGui.shortcutsManager()
    with open_panel(iface) as panel:
        action = panel.refine.action
        assert action in manager.listActions()
        assert action.shortcut() != QKeySequence("Ctrl+Alt+R"), "QGIS's Processing Results Viewer has Ctrl+Alt+R"
        assert action.shortcut() == QKeySequence("Ctrl+Alt+E")
        assert manager.defaultKeySequence(action) == "Ctrl+Alt+E"
        assert "Ctrl+Alt+E" in action.toolTip()
        manager.setKeySequence(action, "Ctrl+Alt+Y")  # Settings > Keyboard Shortcuts
    assert not [a for a in manager.listActions() if a.objectName() == "think2segRefine"], "unload leaves no dead action"
    # The user's choice survives a restart of the panel.
    try:
        with open_panel(iface) as panel:
            assert panel.refine.action.shortcut() == QKeySequence("Ctrl+Alt+Y")
    finally:
        for key in ("shortcuts/think2segRefine", "shortcuts/Refine"):  # by name from 3.30 on, by text before
            QgsSettings().remove(key)  # back to the default, for this test and the next ones
    # Another action (QGIS's or a plugin's) already holds the default: the next free candidate.
    other = QAction("someone else's", iface.mainWindow())
    other.setObjectName("someoneElse")
    manager.registerAction(other, "Ctrl+Alt+E")
    try:
        with open_panel(iface) as panel:
            assert panel.refine.action.shortcut() == QKeySequence("Ctrl+Shift+Alt+E"), (
                panel.refine.action.shortcut().toString()
            )
    finally:
        manager.unregisterAction(other)


# -- 5: Done gives the previous map tool back -------------------------------------------------------------
def test_done_and_escape_restore_the_previous_map_tool(iface, project):
    from test_layers import canned_answer, context

    from think2seg_qgis.layers import add_to_project, build_result_layers

    answer = canned_answer()
    answer["view_id"] = "0123456789abcdef"
    result = build_result_layers(answer, context())
    add_to_project(result, project)
    canvas = iface.mapCanvas()
    pan = QgsMapToolPan(canvas)
    canvas.setMapTool(pan)
    with open_panel(iface) as panel:
        panel.last_result = result
        iface.setActiveLayer(result.masks)
        refine = panel.refine
        button = refine.findChild(__import__("qgis.PyQt.QtWidgets", fromlist=["QToolButton"]).QToolButton)
        QTest.mouseClick(button, Qt.MouseButton.LeftButton)
        assert refine.tool is not None and canvas.mapTool() is refine.tool
        QTest.mouseClick(refine.done_button, Qt.MouseButton.LeftButton)
        assert canvas.mapTool() is pan, "after Done the map must pan again"
        # Escape on the map leaves the tool too, and gives the pan back.
        QTest.mouseClick(button, Qt.MouseButton.LeftButton)
        assert canvas.mapTool() is refine.tool
        QTest.keyClick(canvas, Qt.Key.Key_Escape)
        assert wait_until(lambda: canvas.mapTool() is pan, timeout=2), canvas.mapTool()
        assert not refine.action.isChecked()
        # The user picks another tool while refining: that one stays.
        QTest.mouseClick(button, Qt.MouseButton.LeftButton)
        other = QgsMapToolPan(canvas)
        canvas.setMapTool(other)
        assert wait_until(lambda: not refine.action.isChecked(), timeout=2)
        assert canvas.mapTool() is other


# -- 12: the wheel scrolls the dock, not the value under the pointer ----------------------------------------
def wheel(widget, steps: int = 1) -> None:
    pos = QPointF(widget.rect().center())
    event = QWheelEvent(
        pos,
        QPointF(widget.mapToGlobal(widget.rect().center())),
        QPoint(0, 0),
        QPoint(0, 120 * steps),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)


def test_the_wheel_does_not_change_fields_it_passes_over(iface, project):
    with open_panel(iface) as panel:
        panel.options_box.setCollapsed(False)
        panel.backend_box.settings_box.setCollapsed(False)
        iface.mainWindow().activateWindow()
        panel.query_combo.setFocus()
        QApplication.processEvents()
        spin = panel.max_size_spin
        spin.setValue(2048)
        for widget in (spin, spin.lineEdit()):
            wheel(widget, -3)
        assert spin.value() == 2048, "Image size at most changed under a passing wheel"
        assert not spin.hasFocus(), "the wheel must not take the focus"
        sam = panel.sam_combo.currentIndex()
        wheel(panel.sam_combo, -1)
        assert panel.sam_combo.currentIndex() == sam
        port = panel.backend_box.port_spin.value()
        wheel(panel.backend_box.port_spin, 2)
        assert panel.backend_box.port_spin.value() == port
        # Clicked into (focused), the wheel changes it as in any Qt form.
        spin.setFocus()
        QApplication.processEvents()
        assert spin.hasFocus()
        wheel(spin, 1)
        assert spin.value() == 2048 + 256


# -- 13: stale messages go once the backend answers -------------------------------------------------------
def test_backend_problems_are_cleared_when_it_answers_again(iface, project, health_server, tmp_path):
    token = tmp_path / "token"
    token.write_text("not-the-servers")
    health_server.answer = (401, REFUSED)
    remote_panel_settings(health_server.url, token)
    with open_panel(iface) as panel:
        choose_layer(panel, project, load_raster(NAIP), "the wetlands")
        outcome, result = run_panel(panel, timeout=60)
        assert result is None and outcome.error.code == "unauthorized"
        assert "refused the token" in panel.status_label.text()
        bar = iface.messageBar()
        assert any("refused the token" in item.text() for item in bar.items() if hasattr(item, "text"))
        health_server.answer = (200, HEALTHY)  # the user fixed the token file on the server's side
        checked(panel.backend_box, health_server.checks, health_server)
        assert panel.backend_box.kind == "ok"
        assert "refused the token" not in panel.status_label.text()
        assert not any("refused the token" in item.text() for item in bar.items() if hasattr(item, "text"))


# -- 6: a refused token is not "Starting…" forever ------------------------------------------------------
REFUSING_BACKEND = r"""
import http.server, json, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"error": {"code": "unauthorized", "message": "Missing or wrong bearer token."}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def test_a_token_mismatch_is_named_not_starting_forever(iface, tmp_path):
    """The launcher's process answers, but refuses the token the panel reads: say so, and how to get out."""
    import sys

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    script = tmp_path / "refusing_backend.py"
    script.write_text(REFUSING_BACKEND)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$@"\n')
    python.chmod(0o755)
    (tmp_path / "token").write_text("the-panels-token")
    s = QgsSettings()
    s.setValue("think2seg/backend/python", str(venv))
    s.setValue("think2seg/backend/port", closed_port())
    s.setValue("think2seg/backend/token_file", str(tmp_path / "token"))
    with open_panel(iface) as panel:
        box = panel.backend_box
        QTest.mouseClick(box.start_button, Qt.MouseButton.LeftButton)
        launcher = panel.launcher
        try:
            assert wait_until(lambda: launcher.state == "unauthorized", timeout=20), (
                launcher.state,
                launcher.log_tail(),
            )
            assert wait_until(lambda: "refuses the token" in box.status_label.toolTip(), timeout=5)
            assert "Starting" not in box.status_label.text()
            assert box.kind == "bad"
            # The way out is on screen: Stop is enabled and the sentence names it.
            assert "Stop" in box.status_label.toolTip() and box.stop_button.isEnabled()
            QTest.mouseClick(box.stop_button, Qt.MouseButton.LeftButton)
            assert not launcher.is_running() and box.start_button.isEnabled()
        finally:
            launcher.stop()


# -- 2: one token story, and a refused token during an upload named as such --------------------------------
class RefusingUploadServer:
    """Answers 401 at once, before reading an upload (as the service does for a wrong token), and closes: the
    client's upload then breaks (broken pipe, reset). Records the Authorization headers it saw."""

    def __init__(self, token: str = "the-servers-token"):
        self.headers: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                seen = self.headers.get("Authorization") or ""
                outer.headers.append(seen)
                ok = seen == f"Bearer {token}" and self.command == "GET"
                payload = json.dumps(HEALTHY if ok else REFUSED).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)
                self.close_connection = True

            do_GET = do_POST = _answer  # noqa: N815

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_refused_token_during_an_upload_is_not_not_reachable(qgis_app, tmp_path):
    from think2seg_qgis.client import BackendClient

    server = RefusingUploadServer()
    image = tmp_path / "big.tif"
    image.write_bytes(b"II*\x00" + bytes(20 * 1024 * 1024))  # 20 MB: the upload breaks every time
    try:
        for _ in range(3):
            with pytest.raises(Exception) as info:
                BackendClient(server.url, "a-wrong-token").segment(str(image), "the wetlands")
            assert getattr(info.value, "code", None) == "unauthorized", info.value
            assert "refused the token" in str(info.value)
    finally:
        server.close()


def test_a_typed_token_goes_to_the_token_file_that_processing_reads_too(iface, tmp_path):
    """Typing a token: no master-password dialog (the auth DB is opt-in), saved to the token file (0600), and the
    toolbox sends the very token the panel sends."""
    import processing
    from qgis.core import QgsApplication, QgsProcessingException

    server = RefusingUploadServer(token="typed-in-the-panel")
    token_file = tmp_path / "config" / "token"
    remote_panel_settings(server.url, token_file)
    configs_before = set(QgsApplication.authManager().configIds())
    try:
        with open_panel(iface) as panel:
            box = panel.backend_box
            box.settings_box.setCollapsed(False)
            assert not box.authdb_check.isChecked(), "the token file is the default"
            assert "master password" in box.authdb_check.text()
            iface.mainWindow().activateWindow()
            box.token_edit.setFocus()
            QTest.keyClicks(box.token_edit, "typed-in-the-panel")
            QTest.keyClick(box.token_edit, Qt.Key.Key_Return)
            assert token_file.read_text().strip() == "typed-in-the-panel"
            assert token_file.stat().st_mode & 0o777 == 0o600
            assert set(QgsApplication.authManager().configIds()) == configs_before, "the auth DB was touched"
            assert box.token_edit.text() == "" and "token file" in box.token_edit.placeholderText()
            assert wait_until(lambda: box.kind == "ok", timeout=10), box.status_label.text()
            server.headers.clear()
            with pytest.raises(QgsProcessingException):  # the tiny server refuses uploads: only the header counts
                processing.run(
                    "think2seg:segment",
                    {
                        "INPUT": str(NAIP),
                        "QUERY": "the wetlands",
                        "OUTPUT": "memory:",
                    },
                )
            assert "Bearer typed-in-the-panel" in server.headers, server.headers
    finally:
        server.close()


# -- 17: the summary follows a refine ---------------------------------------------------------------------
class RefineServer(HealthServer):
    """Healthy, and answers a refine with a 200 m x 200 m square (4 ha) at the answer's first instance."""

    def __init__(self, x0: float, y0: float):
        super().__init__()
        square = [[x0, y0], [x0 + 200, y0], [x0 + 200, y0 + 200], [x0, y0 + 200], [x0, y0]]
        self.refine_answer = {"geometry": {"type": "Polygon", "coordinates": [square]}, "score": 0.93}
        server = self
        handler = self.httpd.RequestHandlerClass

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            server.answer = (200, server.refine_answer)
            self._answer()
            server.answer = (200, HEALTHY)

        handler.do_POST = do_POST


def test_the_summary_is_updated_after_a_refine(iface, project, tmp_path):
    from test_layers import X0, Y0, canned_answer, context

    from think2seg_qgis.layers import add_to_project, build_result_layers

    server = RefineServer(X0, Y0)
    (tmp_path / "token").write_text("t")
    remote_panel_settings(server.url, tmp_path / "token")
    answer = canned_answer()
    answer["view_id"] = "0123456789abcdef"
    result = build_result_layers(answer, context())
    add_to_project(result, project)
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(result.masks.crs())
    try:
        with open_panel(iface) as panel:
            canvas.setExtent(result.masks.extent().buffered(50))
            canvas.refresh()
            panel.last_result = result
            iface.setActiveLayer(result.masks)
            panel.status_label.setText("2 features found, 0.96 ha in all.")
            panel.refine.action.trigger()
            tool = panel.refine.tool
            assert tool is not None
            point = canvas.getCoordinateTransform().transform(X0 + 50, Y0 + 40)
            QTest.mouseClick(
                canvas.viewport(),
                Qt.MouseButton.LeftButton,
                Qt.KeyboardModifier.NoModifier,
                QPoint(int(point.x()), int(point.y())),
            )
            assert wait_until(lambda: "after your edits" in panel.status_label.text(), timeout=20), (
                panel.status_label.text(),
                panel.refine.status.text(),
            )
            # 4 ha (the refined instance 0) + 1,600 m² (instance 1), with the separators people read
            assert "2 features, 4.16 ha in all" in panel.status_label.text(), panel.status_label.text()
            panel.refine.action.setChecked(False)
    finally:
        server.close()


def test_areas_read_with_thousands_separators():
    from think2seg_qgis.layers import area_text

    assert area_text(14_964_700.0) == "1,496.47 ha"
    assert area_text(950.4) == "950 m²"


# -- 20: the Backend log tab without download bars and sam2's chatter ----------------------------------------
def test_the_backend_log_tab_drops_progress_bars_and_chatter(iface, tmp_path):
    log = tmp_path / "backend.log"
    log.write_text(
        "--- 2026-01-01 10:00:00 QGIS starts: python -m think2seg serve\n"
        "model.safetensors:  45%|████▌     | 9.0M/20.0M [00:01<00:02, 4.5MB/s]\r"
        "model.safetensors: 100%|██████████| 20.0M/20.0M [00:02<00:00, 9.1MB/s]\n"
        "Loaded checkpoint sucessfully\n"
        "think2seg: listening on http://127.0.0.1:8765\n"
    )
    with open_panel(iface) as panel:
        panel.launcher.log_file = str(log)
        QTest.mouseClick(panel.backend_box.log_button, Qt.MouseButton.LeftButton)
        text = panel.log_view.toPlainText()
        assert panel.tabs.currentWidget() is panel.log_view
        assert "listening on http://127.0.0.1:8765" in text and "QGIS starts" in text
        assert "%|" not in text and "sucessfully" not in text, text


# -- 19: numbers as people read them ----------------------------------------------------------------------
def test_tile_codes_instance_numbers_and_the_size_tooltip_read_as_people_count(iface, project):
    from test_layers import canned_answer, context

    from think2seg_qgis.dock.panel import readable_reasoning
    from think2seg_qgis.layers import add_to_project, build_result_layers

    assert readable_reasoning("[r0c0] Water in the north.\n\n[r1c2] A pond.") == (
        "Tile row 1, column 1: Water in the north.\n\nTile row 2, column 3: A pond."
    )
    answer = canned_answer()
    answer["view_id"] = "0123456789abcdef"
    result = build_result_layers(answer, context())
    add_to_project(result, project)
    with open_panel(iface) as panel:
        assert "resampled" not in panel.max_size_spin.toolTip()
        assert "tiles" in panel.max_size_spin.toolTip()
        panel.last_result = result
        iface.setActiveLayer(result.masks)
        panel.refine.action.trigger()
        combo = panel.refine.instance_combo
        assert [combo.itemText(i) for i in range(combo.count())] == ["Feature 1", "Feature 2", "New feature"]
        assert combo.currentData() == 0  # the data stays the layers' instance id
        panel.refine.action.setChecked(False)


# -- 9: no internal upload names in the status ----------------------------------------------------------
def test_job_messages_name_no_temporary_files():
    from think2seg_qgis.segmentation import job_sentence

    assert job_sentence("tmp__6rwvhb.upload: 4 tiles") == "Reading the area in 4 tiles…"
    assert job_sentence("tmp__6rwvhb.upload: tile 3 of 20") == "Tile 3 of 20 done…"
    assert "upload" not in job_sentence("tmp__x.upload: 2 of 4 tiles already done")
    assert job_sentence("waiting for the GPU").startswith("Waiting for the backend")
    # the reasoner's tokens as it writes them (minutes on a CPU), with the locale's separators
    assert job_sentence("reasoning: 1234 tokens of at most 1280") == "Reasoning… tokens written: 1,234 (at most 1,280)"
    assert job_sentence("reasoning: 1 token of at most 1280") == "Reasoning… tokens written: 1 (at most 1,280)"
    assert (
        job_sentence("tmp__x.upload: reasoning on tiles 5-8 of 12, 57 tokens")
        == "Reasoning on tiles 5–8 of 12… tokens written: 57"
    )


# -- 21: the first-run panel offers the one thing to do ----------------------------------------------------
def test_the_first_run_panel_offers_set_up_and_nothing_that_cannot_work(iface, project, monkeypatch):
    monkeypatch.delenv("THINK2SEG_BACKEND_PYTHON", raising=False)
    with open_panel(iface) as panel:
        box = panel.backend_box
        assert box.setup_button.isVisible()
        assert box.settings_box.isCollapsed(), "the whole form buries “Set up backend…”"
        assert not panel.run_button.isEnabled() and "Set up" in panel.run_button.toolTip()
        assert not box.check_button.isEnabled()
        assert not panel.refine.action.isEnabled(), "nothing to refine yet"
        assert not panel.progress.isVisible(), "an idle 0 % bar"
        assert wait_until(lambda: "existing environment under Settings" in box.status_label.toolTip(), timeout=10)


def test_with_a_result_refine_is_offered(iface, project):
    from test_layers import canned_answer, context

    from think2seg_qgis.layers import add_to_project, build_result_layers

    answer = canned_answer()
    answer["view_id"] = "0123456789abcdef"
    result = build_result_layers(answer, context())
    add_to_project(result, project)
    with open_panel(iface) as panel:
        assert not panel.refine.action.isEnabled()
        iface.setActiveLayer(result.masks)
        assert panel.refine.action.isEnabled()


# -- 22: the status names the model, and what a CPU means ------------------------------------------------------
def test_the_ready_status_names_the_model_and_what_a_cpu_means(iface, health_server, tmp_path):
    remote_panel_settings(health_server.url, tmp_path / "token")
    with open_panel(iface) as panel:
        box = panel.backend_box
        assert wait_until(lambda: box.kind == "ok", timeout=10)
        sentence = box.status_label.toolTip()
        assert "tiny-reasoner" in sentence and "minutes" in sentence, sentence
        assert panel.run_button.isEnabled() and box.check_button.isEnabled()


def test_a_backend_that_has_not_found_its_device_yet_reads_as_starting():
    """/v1/health names no device until the backend has imported torch (docs/api.md): no "on :" in the status."""
    from think2seg_qgis.client import BackendHealth

    loading = {**HEALTHY, "status": "loading", "device": "", "device_detail": "", "models": {"loaded": False}}
    assert BackendHealth.from_json(loading).sentence() == "Backend starting: loading the models…"
    named = {**loading, "device": "cpu", "device_detail": "CPU (2 threads)"}
    assert BackendHealth.from_json(named).sentence() == "Backend starting on CPU (2 threads): loading the models…"


# -- 23: the dock comes back after a restart; the area picker without our prompt boxes ------------------------
def test_the_panel_reopens_after_a_restart_when_it_was_open(iface):
    from think2seg_qgis import classFactory

    plugin = classFactory(iface)
    plugin.initGui()
    plugin.show_panel()
    plugin.unload()  # QGIS quits with the panel open
    again = classFactory(iface)
    again.initGui()
    try:
        assert wait_until(lambda: again.panel is not None and again.panel.isVisible(), timeout=2)
        assert again.action.isChecked()
        again.panel.close()  # the user closes it: next time it stays closed
    finally:
        again.unload()
    third = classFactory(iface)
    third.initGui()
    try:
        wait_until(lambda: False, timeout=0.3)
        assert third.panel is None
    finally:
        third.unload()


def test_the_area_picker_does_not_offer_prompt_boxes(iface, project):
    from test_layers import canned_answer, context

    from think2seg_qgis.layers import add_to_project, build_result_layers

    with open_panel(iface) as panel:
        result = build_result_layers(canned_answer(), context())
        add_to_project(result, project)
        combo = panel.selection_combo
        names = [combo.itemText(i) for i in range(combo.count())]
        assert result.boxes.name() not in names, names
        assert result.masks.name() in names  # searching inside an earlier answer stays possible


# -- 15: no DeprecationWarning for the layer abstract ---------------------------------------------------
def test_the_abstract_is_set_without_deprecation_warnings(qgis_app):
    import warnings

    from qgis.core import Qgis
    from test_layers import canned_answer, context

    from think2seg_qgis.layers import build_result_layers

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        result = build_result_layers(canned_answer(), context())
    abstract = result.masks.serverProperties().abstract() if Qgis.QGIS_VERSION_INT >= 33800 else result.masks.abstract()
    assert "Dark, smooth patches" in abstract
    assert "Dark, smooth patches" in result.masks.metadata().abstract()


# -- 11: a broken environment says why, and offers the installer again ----------------------------------------
def test_an_environment_without_the_backend_says_so_and_offers_set_up(iface, tmp_path):
    import shutil

    system_python = shutil.which("python3")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {system_python} -I "$@"\n')  # -I: a Python where think2seg is not installed
    python.chmod(0o755)
    s = QgsSettings()
    s.setValue("think2seg/backend/python", str(venv))
    s.setValue("think2seg/backend/port", closed_port())
    s.setValue("think2seg/backend/token_file", str(tmp_path / "token"))
    with open_panel(iface) as panel:
        box = panel.backend_box
        panel.launcher.log_file = str(tmp_path / "backend.log")
        QTest.mouseClick(box.start_button, Qt.MouseButton.LeftButton)
        assert wait_until(lambda: panel.launcher.state == "crashed", timeout=20), panel.launcher.log_tail()
        sentence = box.status_label.toolTip()
        assert "No module named" in sentence and not sentence.rstrip().endswith(":"), sentence
        assert box.setup_button.isVisible(), "the way back to the installer"
        assert box.start_button.isEnabled()


# -- 10: the set-up dialog: one at a time, Cancel, an existing environment, the GPU found ------------------
def test_the_set_up_dialog_cancels_finds_the_gpu_and_takes_an_existing_environment(iface, tmp_path, monkeypatch):
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0000)'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("THINK2SEG_BACKEND_PYTHON", raising=False)
    with open_panel(iface) as panel:
        QTest.mouseClick(panel.backend_box.setup_button, Qt.MouseButton.LeftButton)
        dialog = panel.setup_dialog
        QTest.mouseClick(panel.backend_box.setup_button, Qt.MouseButton.LeftButton)
        assert panel.setup_dialog is dialog, "each click opened another dialog"
        assert dialog.torch_combo.currentData() == "cuda" and "H200" in dialog.gpu_label.text()
        assert "GB" in dialog.size_label.text()
        # as a newcomer sees it (QGIS 3.44 under Xvfb): rows not squashed into each other, no idle bar or empty log
        QApplication.processEvents()
        folder, compute = dialog.folder_widget.geometry(), dialog.torch_combo.geometry()
        assert folder.bottom() < compute.top(), "the install form's rows overlap"
        assert compute.height() >= dialog.torch_combo.minimumSizeHint().height()
        assert not dialog.progress.isVisible() and not dialog.log_view.isVisible()
        # Install, then Cancel: pip (here the venv step) is stopped, and the dialog says so.
        wheel = tmp_path / "think2seg-0.1.0-py3-none-any.whl"
        wheel.write_bytes(b"not really a wheel")
        dialog.wheel = str(wheel)
        dialog.folder_widget.setFilePath(str(tmp_path / "env"))
        dialog.setup_log = str(tmp_path / "setup.log")
        QTest.mouseClick(dialog.go_button, Qt.MouseButton.LeftButton)
        assert dialog.running() and dialog.close_button.text() == "Cancel"
        QTest.mouseClick(dialog.close_button, Qt.MouseButton.LeftButton)
        assert wait_until(lambda: not dialog.running(), timeout=30)
        assert "cancelled" in dialog.status_label.text()
        assert dialog.close_button.text() == "Close" and dialog.isVisible()
        # An existing environment: the folder is taken as the backend's.
        venv = tmp_path / "existing"
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")
        (venv / "bin" / "python").chmod(0o755)
        dialog.existing_radio.click()
        dialog.existing_widget_path.setFilePath(str(venv))
        QTest.mouseClick(dialog.go_button, Qt.MouseButton.LeftButton)
        assert panel.backend_box.settings().python == str(venv)
        panel.launcher.stop()
        dialog.close()


# -- 16: a result from before a backend restart: a sentence, not a hex view id ----------------------------
def test_refining_a_result_the_backend_forgot_says_what_to_do(iface, project, tmp_path):
    from test_layers import X0, Y0, canned_answer, context

    from think2seg_qgis.layers import add_to_project, build_result_layers

    server = RefineServer(X0, Y0)
    view_id = "0123456789abcdef0123456789abcdef"
    server.refine_answer = None
    handler = server.httpd.RequestHandlerClass

    def do_POST(self):  # noqa: N802 - as the service answers for a view it does not hold
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server.answer = (404, {"error": {"code": "view_not_found", "message": f"No view {view_id} here."}})
        self._answer()
        server.answer = (200, HEALTHY)

    handler.do_POST = do_POST
    (tmp_path / "token").write_text("t")
    remote_panel_settings(server.url, tmp_path / "token")
    answer = canned_answer()
    answer["view_id"] = view_id
    result = build_result_layers(answer, context())
    add_to_project(result, project)
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(result.masks.crs())
    try:
        with open_panel(iface) as panel:
            canvas.setExtent(result.masks.extent().buffered(50))
            canvas.refresh()
            iface.setActiveLayer(result.masks)
            panel.refine.action.trigger()
            point = canvas.getCoordinateTransform().transform(X0 + 50, Y0 + 40)
            QTest.mouseClick(
                canvas.viewport(),
                Qt.MouseButton.LeftButton,
                Qt.KeyboardModifier.NoModifier,
                QPoint(int(point.x()), int(point.y())),
            )
            assert wait_until(lambda: "run the query again" in panel.status_label.text(), timeout=20), (
                panel.status_label.text()
            )
            assert view_id not in panel.status_label.text()
            panel.refine.action.setChecked(False)
    finally:
        server.close()


# -- 18: results survive a restart by default -----------------------------------------------------------------
def test_results_go_to_a_geopackage_in_the_project_folder_by_default(iface, project, use_service, tmp_path):
    from test_panel_e2e import _prepare

    with open_panel(iface) as panel:
        assert panel.destination_combo.currentData() == "project"
        _prepare(panel, iface, project)
        panel.sam_combo.setCurrentText("tiny")
        # Not saved yet: temporary layers, and the panel says how to keep the next ones.
        outcome, result = run_panel(panel, timeout=300)
        assert result is not None, panel.status_label.text()
        assert result.masks.providerType() == "memory"
        assert "save the project" in panel.status_label.text()
        # Saved: the next result goes to a GeoPackage beside the project file, reasoning and all.
        assert project.write(str(tmp_path / "survey.qgz"))
        outcome, result = run_panel(panel, timeout=300)
        assert result is not None, panel.status_label.text()
        gpkg = tmp_path / "think2seg_results.gpkg"
        assert result.masks.providerType() == "ogr" and str(gpkg) in result.masks.source()
        assert gpkg.is_file()


# -- 14: the toolbox help speaks of the panel, not of environment variables --------------------------------
def test_the_toolbox_help_names_no_environment_variables(qgis_app):
    from think2seg_qgis.processing.segment_algorithm import SegmentAlgorithm

    text = SegmentAlgorithm().shortHelpString()
    assert "$THINK2SEG" not in text and "`" not in text, text
    assert "panel" in text


def test_the_toolbox_help_is_html_and_opens_the_readme_section(qgis_app, monkeypatch):
    import re

    from plugin_testing import ROOT

    from think2seg_qgis.processing import segment_algorithm
    from think2seg_qgis.processing.segment_algorithm import README_SECTION, SegmentAlgorithm

    text = SegmentAlgorithm().shortHelpString()
    assert text.startswith("<p>") and "\n" not in text, text  # QGIS shows it as HTML: paragraphs, no Markdown
    # Help opens the README's section on the algorithm, on the repository's page (make package fills the address).
    monkeypatch.setattr(segment_algorithm, "plugin_metadata", {"repository": "https://github.com/o/r"}.get)
    assert SegmentAlgorithm().helpUrl() == f"https://github.com/o/r#{README_SECTION}"
    headings = re.findall(r"^#+ (.+)$", (ROOT / "README.md").read_text(encoding="utf-8"), re.MULTILINE)
    slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}  # GitHub's anchors
    assert README_SECTION in slugs


def test_the_toolbox_dialog_starts_with_the_raster_and_creates_the_prompt_layers(qgis_app, project, iface, monkeypatch):
    import qgis.utils
    from plugin_testing import LANDSAT
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingParameterDefinition
    from qgis.gui import QgsGui, QgsProcessingGui, QgsProcessingParameterWidgetContext

    from think2seg_qgis import classFactory

    def dialog_value(algorithm, name: str):
        """What the algorithm dialog's widget for ``name`` holds when it opens (QGIS's own widget wrapper)."""
        parameter = algorithm.parameterDefinition(name)
        wrapper = QgsGui.processingGuiRegistry().createParameterWidgetWrapper(
            parameter, QgsProcessingGui.WidgetType.Standard
        )
        widget_context = QgsProcessingParameterWidgetContext()
        widget_context.setProject(project)
        wrapper.setWidgetContext(widget_context)
        widget = wrapper.createWrappedWidget(QgsProcessingContext())  # kept: the wrapper reads this widget
        wrapper.setParameterValue(parameter.defaultValue(), QgsProcessingContext())
        value = wrapper.parameterValue()
        widget.deleteLater()
        return value

    monkeypatch.setattr(qgis.utils, "iface", iface)
    plugin = classFactory(None)
    plugin.initProcessing()
    try:
        registry = QgsApplication.processingRegistry()
        naip = load_raster(NAIP)
        project.addMapLayer(naip)
        algorithm = registry.createAlgorithmById("think2seg:segment")  # what opening the dialog does
        assert algorithm.parameterDefinition("INPUT").defaultValue() == naip.id()  # the project's only raster
        assert dialog_value(algorithm, "INPUT") == naip.id()
        landsat = load_raster(LANDSAT)
        project.addMapLayer(landsat)
        iface.setActiveLayer(landsat)  # two rasters: the active one
        again = registry.createAlgorithmById("think2seg:segment")
        assert again.parameterDefinition("INPUT").defaultValue() == landsat.id()
        assert dialog_value(again, "INPUT") == landsat.id()
        for name in ("OUTPUT_POINTS", "OUTPUT_BOXES"):  # created beside the masks unless the user skips them
            definition = algorithm.parameterDefinition(name)
            assert definition.createByDefault(), name
            assert definition.flags() & QgsProcessingParameterDefinition.Flag.FlagOptional  # scripts may omit them
        strict = algorithm.parameterDefinition("CONSTRAIN_ANSWER")
        assert strict.description() == "Strict answer format" and strict.defaultValue() is False
        assert strict.help() == panel_strict_tooltip(iface)
    finally:
        plugin.unload()


def panel_strict_tooltip(iface) -> str:
    with open_panel(iface) as panel:
        assert panel.constrain_check.text() == "Strict answer format"
        return panel.constrain_check.toolTip()


# -- 19: one word for the parts of a result, numbers in the locale, pixels rounded, long messages whole --------
def test_a_result_reads_in_features_with_the_locales_separators(qgis_app):
    from qgis.PyQt.QtCore import QLocale
    from test_layers import canned_answer, context

    from think2seg_qgis.layers import area_text, build_result_layers, summary_sentence

    answer = canned_answer()
    answer["message"] = "2 instances found, 0.96 ha in all."  # the backend's words: not what the user reads
    result = build_result_layers(answer, context())
    assert result.message == "2 features found, 9,600 m² in all.", result.message
    assert summary_sentence(result.masks) == "2 features, 9,600 m² in all."
    before = QLocale()
    try:
        QLocale.setDefault(QLocale(QLocale.Language.German, QLocale.Country.Germany))  # QGIS sets its language's
        assert area_text(14_964_700.0) == "1.496,47 ha"
    finally:
        QLocale.setDefault(before)
    assert area_text(14_964_700.0) == "1,496.47 ha"


def test_pixel_coordinates_of_a_resampled_read_are_rounded(qgis_app):
    from test_layers import canned_answer, context

    from think2seg_qgis.layers import build_result_layers

    answer = canned_answer()
    answer["instances"][0]["points_pixel"] = [[289.20000000000005, 14.123456789], [12.0, 9.0]]
    answer["instances"][0]["box_pixel"] = [0.30000000000000004, 0, 20.123456, 16]
    result = build_result_layers(answer, context())
    first = next(f for f in result.points.getFeatures() if f["instance"] == 0 and f["point"] == 0)
    assert (first["x_pixel"], first["y_pixel"]) == (289.2, 14.12)
    assert result.points.fields().field("x_pixel").precision() == 2  # what the attribute table shows
    box = next(f for f in result.boxes.getFeatures() if f["instance"] == 0)
    assert box["box_pixel"] == "0.3,0,20.12,16"
    from think2seg_qgis.dock.panel import _raw_answer_text

    answer["timings"] = {"reasoner": 1.2345678901, "read": 0.30000000000000004}
    answer["read"] = {"mode": "full", "window": [289.20000000000005, 0.0, 934.0, 723.0]}
    shown = _raw_answer_text(answer)  # the Answer tab
    assert "289.2," in shown and "1.23," in shown and "0000000" not in shown, shown


def test_a_long_message_keeps_its_whole_text_behind_show_more(iface, project):
    from qgis.core import Qgis

    from think2seg_qgis.dock.panel import BAR_SENTENCE_MAX

    bar = iface.messageBar()
    long = (
        "3 features found, 1,496.47 ha in all for “the wetlands that hold water all year” in “naip_prairie_potholes"
        "_2020” (saved in /home/someone/projects/prairie/think2seg_results.gpkg). These are temporary layers (QGIS "
        "drops them on quit): save the project, and the next results go to a GeoPackage in its folder."
    )
    with open_panel(iface) as panel:
        panel._say("Backend ready.", Qgis.MessageLevel.Info)
        assert bar.messages[-1][1] == "Backend ready." and bar.details[-1] == ""
        panel._say(long, Qgis.MessageLevel.Success)
        line = bar.messages[-1][1]
        assert len(line) <= BAR_SENTENCE_MAX and line.endswith("…"), line
        assert line.startswith("3 features found, 1,496.47 ha in all")
        assert bar.details[-1] == long  # behind QGIS's own "more" button
        item = bar.currentItem()
        buttons = [b for b in item.findChildren(QWidget) if hasattr(b, "text") and "more" in str(b.text()).lower()]
        assert buttons, [type(c).__name__ for c in item.findChildren(QWidget)]
        assert panel.status_label.text() == long  # the panel shows it whole


# -- 23: a cancel that breaks the request in flight is a cancel, not a failure ------------------------------
def test_a_cancel_during_the_upload_ends_cancelled_not_failed(iface, project, tmp_path):
    import time

    from qgis.core import Qgis, QgsApplication, QgsTask

    server = HealthServer()
    release = threading.Event()

    def do_POST(self):  # noqa: N802 - the upload is read, then held until the user has cancelled; then it breaks
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        release.wait(20)
        self.send_response(500)
        payload = json.dumps({"error": {"code": "internal", "message": "connection dropped"}}).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    server.httpd.RequestHandlerClass.do_POST = do_POST
    (tmp_path / "token").write_text("t")
    remote_panel_settings(server.url, tmp_path / "token")
    logged = []

    def log(message, tag, level):
        if tag == "Think2Seg":
            logged.append((message, int(level)))

    QgsApplication.messageLog().messageReceived.connect(log)
    try:
        with open_panel(iface) as panel:
            assert wait_until(lambda: panel.backend_box.kind == "ok", timeout=10)
            choose_layer(panel, project, load_raster(NAIP), "the ponds")
            outcomes = []
            panel.finished.connect(lambda outcome, result: outcomes.append(outcome))
            task = panel.run()
            assert wait_until(lambda: "Uploading" in panel.status_label.text() or release.is_set(), timeout=20)
            time.sleep(0.3)
            panel.cancel()
            release.set()
            assert wait_until(lambda: outcomes, timeout=30)
            assert outcomes[0].cancelled, outcomes[0].error
            assert task.status() == QgsTask.TaskStatus.Terminated  # QgsTask's state for a stopped task
            assert "cancelled" in panel.status_label.text()
            ours = [(m, level) for m, level in logged if "cancelled" in m]
            assert ours and all(level == int(Qgis.MessageLevel.Info) for _, level in ours), logged
            assert not any(level == int(Qgis.MessageLevel.Critical) for _, level in logged), logged
    finally:
        QgsApplication.messageLog().messageReceived.disconnect(log)
        release.set()
        server.close()


# -- 24: the About says what it needs and where to start; README's menu paths are QGIS's -----------------------
def test_the_about_names_disk_gpu_and_the_first_step():
    import configparser

    from plugin_testing import ROOT

    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "metadata.txt", encoding="utf-8")
    about = parser["general"]["about"]
    assert "Set up backend…" in about and about.index("Set up backend…") < about.index("GB")  # the first step first
    assert "7.5 GB" in about and "16 GB" in about and "NVIDIA" in about and "8 GB" in about
    assert "CPU" in about and "minutes" in about
    assert "Refine" in about and "Strict answer format" in about


def test_readmes_menu_paths_are_the_ones_the_plugin_registers(iface):
    import re

    from plugin_testing import ROOT
    from qgis.core import QgsApplication

    from think2seg_qgis import classFactory

    plugin = classFactory(iface)
    plugin.initGui()
    try:
        # What QGIS shows: the Raster menu, a submenu named as registered (without its & accelerator), the action.
        (menu, actions), *others = [(m, a) for m, a in iface.menus.items() if a]
        assert not others and len(actions) == 1
        panel_path = " > ".join(("Raster", menu.replace("&", ""), actions[0].text()))
        algorithm = QgsApplication.processingRegistry().algorithmById("think2seg:segment")
        toolbox_path = " > ".join(
            ("Processing Toolbox", algorithm.provider().name(), algorithm.group(), algorithm.displayName())
        )
    finally:
        plugin.unload()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"*{panel_path}*" in readme, panel_path
    assert f"*{toolbox_path}*" in readme, toolbox_path
    # Every menu path of ours in the README is one of these two (or starts one of them).
    ours = {p for p in re.findall(r"\*([^*\n]+ > [^*\n]+)\*", readme) if "Think2Seg" in p}
    assert ours and all(panel_path.startswith(p) or toolbox_path.startswith(p) for p in ours), ours

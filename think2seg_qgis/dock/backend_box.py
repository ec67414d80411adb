"""The panel's backend section: is it reachable, on what device; start/stop a local one or connect to a URL."""

from __future__ import annotations

import os

from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget
from qgis.PyQt.QtCore import QTimer, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QApplication,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..backend_launcher import (
    STATE_CRASHED,
    STATE_ERROR,
    STATE_FAILED,
    STATE_READY,
    STATE_STARTING,
    STATE_UNAUTHORIZED,
    BackendLauncher,
    HealthProbe,
    download_sentence,
    resolve_interpreter,
)
from ..client import BackendHealth
from ..errors import MODELS_LOADING, NO_TOKEN, UNAUTHORIZED, UNREACHABLE, Think2SegError
from ..i18n import tr
from ..settings import (
    MODE_LOCAL,
    MODE_REMOTE,
    TOKEN_IN_AUTHDB,
    TOKEN_IN_FILE,
    BackendSettings,
    load_backend_settings,
    save_backend_settings,
)

COLOURS = {"ok": "#2e7d32", "busy": "#ef6c00", "bad": "#c62828", "unknown": "#757575"}


class BackendBox(QgsCollapsibleGroupBox):
    """Emits ``status_changed(kind, sentence, log_tail)``; kind is ok, busy, bad or unknown."""

    status_changed = pyqtSignal(str, str, str)
    log_requested = pyqtSignal()
    setup_requested = pyqtSignal()
    #: whether there is a backend to send a run to (configured, or one answering); the panel enables Run with it
    configured_changed = pyqtSignal(bool)

    def __init__(self, launcher: BackendLauncher, parent: QWidget | None = None):
        super().__init__("Backend", parent)
        self.setObjectName("think2segBackendBox")
        self.launcher = launcher
        self.health: BackendHealth | None = None
        self.kind = "unknown"
        self.sam_size = ""  # the panel's SAM2 size: used when no checkpoint file is set
        self._build()
        self._load(load_backend_settings())
        self.probe = HealthProbe(self)
        self.probe.answered.connect(self._on_health)
        self.launcher.state_changed.connect(self._on_launcher_state)
        self.timer = QTimer(self)
        self.timer.setInterval(15000)
        self.timer.timeout.connect(self.check)

    # -- widgets --------------------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        self.status_label = QLabel(tr("Backend: not checked yet"))
        self.status_label.setWordWrap(True)
        self.status_label.setObjectName("think2segBackendStatus")
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout.addWidget(self.status_label)

        buttons = QHBoxLayout()
        self.start_button = QPushButton(tr("Start"))
        self.start_button.setObjectName("think2segStartBackend")
        self.start_button.setToolTip(tr("Start a local backend with the interpreter and models set below"))
        self.stop_button = QPushButton(tr("Stop"))
        self.stop_button.setObjectName("think2segStopBackend")
        self.stop_button.setToolTip(tr("Stop the local backend this panel started"))
        self.check_button = QPushButton(tr("Check"))
        self.check_button.setToolTip(tr("Ask the backend whether it is reachable and on what device it runs"))
        self.start_button.clicked.connect(self.start_local)
        self.stop_button.clicked.connect(self.stop_local)
        self.check_button.clicked.connect(self.check)
        self.log_button = QPushButton(tr("Log"))
        self.log_button.setObjectName("think2segBackendLog")
        self.log_button.setToolTip(tr("Show the backend's log in the panel"))
        self.log_button.clicked.connect(self.log_requested)
        self.setup_button = QPushButton(tr("Set up backend…"))
        self.setup_button.setObjectName("think2segSetupBackend")
        self.setup_button.setToolTip(
            tr("Install the backend into an environment of its own (or connect to a running one)")
        )
        self.setup_button.clicked.connect(self.setup_requested)
        # Its own row: on a first run it is the one thing to do, and five buttons would not fit the dock's width.
        layout.addWidget(self.setup_button)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.check_button)
        buttons.addWidget(self.log_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)

        self.settings_box = QgsCollapsibleGroupBox(tr("Settings"))
        self.settings_box.setObjectName("think2segBackendSettings")
        self.settings_box.setSaveCollapsedState(False)
        settings_layout = QVBoxLayout(self.settings_box)
        layout.addWidget(self.settings_box)

        mode_row = QVBoxLayout()  # stacked: side by side they are wider than the dock's minimum width
        self.local_radio = QRadioButton(tr("Local backend"))
        self.remote_radio = QRadioButton(tr("Connect to a URL"))
        self.mode_group = QButtonGroup(self)
        self.mode_group.addButton(self.local_radio)
        self.mode_group.addButton(self.remote_radio)
        mode_row.addWidget(self.local_radio)
        mode_row.addWidget(self.remote_radio)
        settings_layout.addLayout(mode_row)

        self.local_widget = QWidget()
        local_form = QFormLayout(self.local_widget)
        local_form.setContentsMargins(0, 0, 0, 0)
        self.python_widget = QgsFileWidget()
        # A folder: the venv, or a checkout that has a .venv (a typed interpreter path works too).
        self.python_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.python_widget.setToolTip(
            tr(
                "The backend's environment: the venv folder “Set up backend” made, a project folder that has a "
                ".venv, or the path of a Python interpreter where the think2seg package is installed"
            )
        )
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText(tr("default: the published Think2Seg weights"))
        self.sam_widget = QgsFileWidget()
        self.sam_widget.setStorageMode(QgsFileWidget.StorageMode.GetFile)
        self.sam_widget.lineEdit().setPlaceholderText(tr("default: the SAM2 size chosen under Options"))
        self.sam_widget.setToolTip(
            tr("A SAM2.1 checkpoint file (.pt); empty: the published one of the size under Options")
        )
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cuda", "cpu", "mps"])
        self.port_spin = QSpinBox()
        self.port_spin.setRange(1024, 65535)
        local_form.addRow(tr("Backend environment"), self.python_widget)
        local_form.addRow(tr("Reasoning model"), self.model_edit)
        local_form.addRow(tr("SAM2 checkpoint"), self.sam_widget)
        local_form.addRow(tr("Device"), self.device_combo)
        local_form.addRow(tr("Port"), self.port_spin)
        settings_layout.addWidget(self.local_widget)

        self.remote_widget = QWidget()
        remote_form = QFormLayout(self.remote_widget)
        remote_form.setContentsMargins(0, 0, 0, 0)
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText(tr("http://gpu-server:8765"))
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText(tr("or leave empty to read the token file"))
        self.authdb_check = QCheckBox(tr("Keep it in QGIS's password store (QGIS asks for its master password)"))
        self.authdb_check.setObjectName("think2segTokenInAuthDb")
        self.authdb_check.setToolTip(
            tr(
                "Off (default): a typed token is saved in the token file below, readable by you only; the panel and "
                "the Processing toolbox both read it. On: QGIS's authentication database keeps it encrypted with "
                "its master password, which QGIS asks you to set (first time) or to type (once a session)."
            )
        )
        remote_form.addRow(tr("URL"), self.url_edit)
        remote_form.addRow(tr("Token"), self.token_edit)
        remote_form.addRow(self.authdb_check)
        settings_layout.addWidget(self.remote_widget)

        self.token_file_widget = QgsFileWidget()
        self.token_file_widget.setStorageMode(QgsFileWidget.StorageMode.GetFile)
        token_form = QFormLayout()
        token_form.setContentsMargins(0, 0, 0, 0)
        token_form.addRow(tr("Token file"), self.token_file_widget)
        settings_layout.addLayout(token_form)
        self.env_label = QLabel()
        self.env_label.setWordWrap(True)
        self.env_label.setStyleSheet("color: #555;")
        self.env_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        # Outside the collapsible settings: shown or hidden on its own, it would draw over a collapsed box.
        layout.insertWidget(layout.indexOf(self.settings_box), self.env_label)

        self.local_radio.toggled.connect(self._mode_changed)
        # Expanding a QgsCollapsibleGroupBox shows its children again (QGIS 3.40): hide the other mode's fields anew.
        self.settings_box.collapsedStateChanged.connect(self._show_mode_fields)
        for widget in (self.model_edit, self.url_edit, self.token_edit):
            widget.editingFinished.connect(self.save)
        for file_widget in (self.python_widget, self.sam_widget, self.token_file_widget):
            file_widget.fileChanged.connect(self.save)
        self.authdb_check.toggled.connect(self.save)
        self.device_combo.currentTextChanged.connect(self.save)
        self.port_spin.valueChanged.connect(self.save)

    def _load(self, settings: BackendSettings) -> None:
        self._loading = True
        (self.remote_radio if settings.mode == MODE_REMOTE else self.local_radio).setChecked(True)
        self.python_widget.setFilePath(settings.python)
        self.model_edit.setText(settings.model)
        self.sam_widget.setFilePath(settings.sam_checkpoint)
        index = self.device_combo.findText(settings.device)
        self.device_combo.setCurrentIndex(max(0, index))
        self.port_spin.setValue(int(settings.port))
        self.url_edit.setText(settings.url)
        self.token_edit.setText(settings.token)
        self.authdb_check.setChecked(settings.token_storage == TOKEN_IN_AUTHDB)
        self._show_token_storage(settings)
        self.token_file_widget.setFilePath(settings.token_file)
        self._loading = False
        self._mode_changed()
        # Folded at first: on a first run "Set up backend…" is the one thing to do (the whole form would bury it);
        # the status sentence names Settings for an existing environment.
        self.settings_box.setCollapsed(True)

    def settings(self) -> BackendSettings:
        current = load_backend_settings()
        current.mode = MODE_REMOTE if self.remote_radio.isChecked() else MODE_LOCAL
        current.python = self.python_widget.filePath().strip()
        current.model = self.model_edit.text().strip()
        current.sam_checkpoint = self.sam_widget.filePath().strip()
        current.device = self.device_combo.currentText()
        current.port = self.port_spin.value()
        current.url = self.url_edit.text().strip()
        current.token = self.token_edit.text().strip()
        current.token_storage = TOKEN_IN_AUTHDB if self.authdb_check.isChecked() else TOKEN_IN_FILE
        current.token_file = self.token_file_widget.filePath().strip() or current.token_file
        return current

    def save(self, *_args) -> None:
        if not getattr(self, "_loading", False):
            settings = self.settings()
            typed = bool(settings.token)
            save_backend_settings(settings)
            if typed and not settings.token:
                self.token_edit.clear()  # now in the token file (or the auth DB), not in this field
            if typed:
                self.check()  # a new token: ask again, so that "no token" or "refused" does not linger
            self._show_token_storage(settings)
            self._update_env_note()
            if getattr(self, "_checked_url", None) not in (None, settings.effective_url()):
                self.health = None  # another backend now: never show the old one's state under the new address
                self.check()

    def _show_token_storage(self, settings: BackendSettings) -> None:
        if settings.token_storage == TOKEN_IN_FILE:
            self.token_edit.setPlaceholderText(
                tr("saved in the token file; type to replace")
                if settings.mode == MODE_REMOTE and os.path.exists(settings.effective_token_file())
                else tr("or leave empty to read the token file")
            )
        elif settings.authcfg:
            self.token_edit.setPlaceholderText(
                tr("stored in QGIS's authentication database ({id}); type to replace").format(id=settings.authcfg)
            )
        else:
            self.token_edit.setPlaceholderText(tr("or leave empty to read the token file"))

    def _mode_changed(self, *_args) -> None:
        self._show_mode_fields()
        self.save()
        self._update_env_note()

    def _show_mode_fields(self, *_args) -> None:
        local = self.local_radio.isChecked()
        expanded = not self.settings_box.isCollapsed()
        self.local_widget.setVisible(local and expanded)
        self.remote_widget.setVisible(not local and expanded)
        self.start_button.setVisible(local)
        self.stop_button.setVisible(local)

    def _editing_settings(self) -> bool:
        """The user is typing or picking in the settings (focus inside them): never collapse under their hands."""
        focus = QApplication.focusWidget()
        return focus is not None and (focus is self.settings_box or self.settings_box.isAncestorOf(focus))

    def _update_env_note(self) -> None:
        settings = self.settings()
        notes = []
        if settings.url_from_environment():
            notes.append(tr("$THINK2SEG_BACKEND_URL sets the URL: {url}").format(url=settings.effective_url()))
        if os.environ.get("THINK2SEG_TOKEN_FILE"):
            notes.append(
                tr("$THINK2SEG_TOKEN_FILE sets the token file: {path}").format(path=settings.effective_token_file())
            )
        self.env_label.setText("\n".join(notes))
        self.env_label.setVisible(bool(notes))
        running = self.launcher.is_running()
        answering = self.health is not None and self.health.loaded
        # Nothing to start before a backend is set up: "Set up backend…" is the way, not a Start that fails.
        self.start_button.setEnabled(not running and not answering and self.is_configured(settings))
        self.stop_button.setEnabled(running)
        # First run: nothing to start and nothing answering. Offer the set-up instead of a Start that fails.
        # Also after a crash: a broken environment needs the installer again.
        self.setup_button.setVisible(
            not answering and not running and (not self.is_configured(settings) or self.launcher.state == STATE_CRASHED)
        )
        self.check_button.setEnabled(self.is_configured(settings) or answering)
        self.configured_changed.emit(self.is_configured(settings) or answering)

    def is_configured(self, settings: BackendSettings | None = None) -> bool:
        settings = settings or self.settings()
        return (
            settings.mode == MODE_REMOTE
            or settings.url_from_environment()
            or bool(resolve_interpreter(settings.python))
        )

    # -- status ---------------------------------------------------------------------------------------------
    def check(self) -> None:
        settings = self.settings()
        self._checked_url = settings.effective_url()
        asked = self.probe.probe(
            settings.effective_url(), settings.read_token(), timeout=min(3.0, settings.connect_timeout)
        )
        # A check already on its way was asked with the settings before this change: ask again after it.
        self._check_again = not asked

    def _on_health(self, result: object) -> None:
        url = self.settings().effective_url()
        if url != getattr(self, "_checked_url", url) or getattr(self, "_check_again", False):
            self.check()  # the answer is about the address (or token) before the user changed it: ask again
            return
        if isinstance(result, BackendHealth):
            was_healthy = self.health is not None and self.health.loaded and not self.health.error
            self.health = result
            if self.launcher.state == STATE_FAILED and not result.loaded:
                return  # the launcher's failure sentence stays until the user acts
            if result.error:
                # Its models cannot load: the backend will never answer a query. A failure, not "loading".
                kind = "bad"
                sentence = result.sentence()
            elif result.loaded:
                kind, sentence = "ok", result.sentence()
            else:
                kind = "busy"
                sentence = download_sentence(result.download) if result.download else result.sentence()
            self._show(kind, f"{sentence} — {url}", self.launcher.log_tail() if kind == "bad" else "")
            self._update_env_note()
            if result.loaded and not result.error and not was_healthy and not self._editing_settings():
                self.settings_box.setCollapsed(True)  # just became healthy: the settings did their job
        elif isinstance(result, Think2SegError):
            self.health = None
            self._update_env_note()
            if self.launcher.state in (STATE_STARTING, STATE_UNAUTHORIZED, STATE_ERROR):
                return  # the launcher reports the start-up (and what stops it) itself
            tail = self.launcher.log_tail() if self.launcher.state == STATE_CRASHED else ""
            kind = "busy" if result.code == MODELS_LOADING else "bad"
            sentence = result.message
            if result.code == UNREACHABLE:
                kind, sentence = self.unreachable_state()
            elif result.code in (UNAUTHORIZED, NO_TOKEN):
                sentence = f"{result.message} — {url}"
            self._show(kind, sentence, tail)

    def unreachable_state(self) -> tuple[str, str]:
        """(kind, sentence) when nothing answers: advice that matches the buttons the panel shows now."""
        settings = self.settings()
        url = settings.effective_url()
        if not self.is_configured(settings):
            # First run: nothing answers because nothing is set up; say what to do, not what failed.
            return "unknown", tr(
                "No backend is set up yet: press “Set up backend…” to install one or to connect to one (or choose an "
                "existing environment under Settings)."
            )
        if settings.mode == MODE_REMOTE or settings.url_from_environment():
            return "bad", tr(
                "The Think2Seg backend is not reachable at {url}: check that it runs there and the URL under "
                "Backend > Settings."
            ).format(url=url)
        if self.launcher.state == STATE_CRASHED:
            return "bad", tr("The local backend is not running (it exited; see its log): press Start to try again.")
        # Configured but not started: a normal state, not a failure.
        return "unknown", tr("The local backend is not started: press Start.")

    def _on_launcher_state(self, state: str, sentence: str) -> None:
        if state == STATE_READY:
            self.check()
        elif state == STATE_CRASHED:
            self._show("bad", self._crash_sentence(sentence), self.launcher.log_tail())
        elif state in (STATE_FAILED, STATE_UNAUTHORIZED, STATE_ERROR):
            self._show("bad", sentence.split("\n", 1)[0], self.launcher.log_tail())
        elif state == STATE_STARTING:
            self._show("busy", sentence, "")
        else:
            self._show("unknown", sentence, "")
        self._update_env_note()

    def _crash_sentence(self, sentence: str) -> str:
        """The launcher's "exited (code 1); see its log (…):" with the log's last line after the colon, and the way
        back to the installer when the environment has no backend in it."""
        first, _, tail = sentence.partition("\n")
        lines = [line.strip() for line in tail.splitlines() if line.strip() and not line.startswith("---")]
        last = lines[-1] if lines else ""
        if "No module named" in last and "think2seg" in last:
            return tr(
                "The environment {python} has no Think2Seg backend in it ({error}): press “Set up backend…” to "
                "install one, or choose another environment under Settings."
            ).format(python=self.settings().python or "?", error=last)
        return f"{first} {last}".strip() if last else first.rstrip(":") + "."

    def _show(self, kind: str, sentence: str, log_tail: str) -> None:
        self.kind = kind
        colour = COLOURS.get(kind, COLOURS["unknown"])
        self.status_label.setText(f'<span style="color:{colour}; font-size:14pt;">●</span> {_escape(sentence)}')
        self.status_label.setToolTip(sentence)
        self.status_changed.emit(kind, sentence, log_tail)

    # -- set-up -----------------------------------------------------------------------------------------------
    def use_local_environment(self, venv_dir: str) -> None:
        """After "Set up backend": local mode on that environment, saved, and started."""
        self.local_radio.setChecked(True)
        self.python_widget.setFilePath(venv_dir)
        self.save()
        self.start_local()

    def use_remote(self, url: str, token: str) -> None:
        self.remote_radio.setChecked(True)
        self.url_edit.setText(url)
        self.token_edit.setText(token)
        self.save()
        self.check()

    # -- local backend ----------------------------------------------------------------------------------------
    def start_local(self) -> None:
        self.save()
        if self.health is not None and self.health.loaded and not self.launcher.is_running():
            self._show(
                "ok",
                tr("A backend already answers at {url}; no need to start one.").format(
                    url=self.settings().effective_url()
                ),
                "",
            )
            return
        try:
            self.launcher.start(self.settings(), self.sam_size)
        except Think2SegError as error:
            self._show("bad", error.message, "")
        self._update_env_note()

    def stop_local(self) -> None:
        self.launcher.stop()
        self._update_env_note()
        self.check()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

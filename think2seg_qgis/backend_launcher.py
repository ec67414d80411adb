"""Start, watch and stop a local ``think2seg serve`` from a configured interpreter or venv.

The backend runs in its own process and its own Python (torch never enters QGIS). The launcher writes the
service's output to a log file, watches the process and its ``/v1/health`` without blocking the UI, and reads
the token file the service creates.
"""

from __future__ import annotations

import os
import shlex
import subprocess  # nosec B404  # the backend is a separate process by design; its command is built here, never a shell
import sys
import threading
import time
from pathlib import Path

from qgis.PyQt.QtCore import QObject, QTimer, pyqtSignal

from .child_env import child_environment
from .client import BackendClient, BackendHealth
from .errors import (
    INTERNAL,
    MODELS_LOADING,
    NO_TOKEN,
    NOT_CONFIGURED,
    NOT_STARTED,
    TIMEOUT,
    UNAUTHORIZED,
    UNREACHABLE,
    Think2SegError,
)
from .i18n import tr
from .settings import BackendSettings, default_log_file

ENV_BACKEND_PYTHON = "THINK2SEG_BACKEND_PYTHON"

STATE_STOPPED = "stopped"
STATE_STARTING = "starting"
STATE_READY = "ready"
STATE_CRASHED = "crashed"
STATE_FAILED = "failed"  # the process runs but its models cannot load: it will never answer a query
STATE_UNAUTHORIZED = "unauthorized"  # something answers on the port but refuses the token the panel holds
STATE_ERROR = "error"  # something answers on the port, but not as a Think2Seg backend would (see the sentence)


def download_sentence(download: dict) -> str:
    """“Downloading the reasoner … weights: 812 of 7,512 MB (11 %)…” from the backend's health ``download``."""
    what = str(download.get("what") or tr("model"))
    done = float(download.get("done_mb") or 0.0)
    total = download.get("total_mb")
    if total:
        fraction = float(download.get("fraction") or (done / float(total)))
        return tr("Downloading the {what} weights: {done:,.0f} of {total:,.0f} MB ({percent:.0f} %)…").format(
            what=what, done=done, total=float(total), percent=100 * fraction
        )
    return tr("Downloading the {what} weights: {done:,.0f} MB so far…").format(what=what, done=done)


def resolve_interpreter(configured: str) -> str:
    """The backend's Python: the setting, else $THINK2SEG_BACKEND_PYTHON.

    The setting may be an interpreter, a venv folder, or a project folder that holds a ``.venv`` (what the
    folder picker gives when the user picks the checkout).
    """
    value = (configured or os.environ.get(ENV_BACKEND_PYTHON, "")).strip()
    if not value:
        return ""
    path = Path(os.path.expanduser(value))
    if path.is_dir():
        for venv in (path, path / ".venv", path / "venv"):
            for candidate in (venv / "bin" / "python", venv / "Scripts" / "python.exe"):
                if candidate.exists():
                    return str(candidate)
        return ""
    return str(path)


def serve_command(settings: BackendSettings, interpreter: str, sam_size: str = "") -> list[str]:
    command = [
        interpreter,
        "-m",
        "think2seg",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(settings.launch_port()),
        "--token-file",
        settings.effective_token_file(),
        "--parent-pid",  # the service stops by itself if QGIS dies without stopping it
        str(os.getpid()),
    ]
    if settings.device and settings.device != "auto":
        command += ["--device", settings.device]
    if settings.model.strip():
        command += ["--model", os.path.expanduser(settings.model.strip())]
    if settings.sam_checkpoint.strip():
        command += ["--sam", os.path.expanduser(settings.sam_checkpoint.strip())]
    elif sam_size:
        command += ["--sam", sam_size]  # the published SAM2.1 checkpoint of that size
    if settings.extra_args.strip():
        command += shlex.split(settings.extra_args)
    return command


def read_log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class HealthProbe(QObject):
    """Asks ``/v1/health`` in a helper thread; ``answered`` carries a BackendHealth or a Think2SegError."""

    answered = pyqtSignal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._busy = False

    def probe(self, url: str, token: str, timeout: float = 3.0) -> bool:
        if self._busy:
            return False
        self._busy = True

        def ask() -> None:
            try:
                result: object = BackendClient(url, token, timeout=timeout).health(timeout=timeout)
            except Think2SegError as error:
                result = error
            except Exception as error:  # noqa: BLE001
                result = Think2SegError(INTERNAL, tr("Health check failed: {error}").format(error=error))
            self._busy = False
            try:
                self.answered.emit(result)
            except RuntimeError:  # the probe was deleted while the thread ran (plugin unloaded)
                pass

        threading.Thread(target=ask, name="think2seg-health", daemon=True).start()
        return True


class BackendLauncher(QObject):
    """Owns at most one backend process. ``state_changed(state, sentence)`` tells the panel what happens."""

    state_changed = pyqtSignal(str, str)

    def __init__(self, parent: QObject | None = None, log_file: str | None = None):
        super().__init__(parent)
        self.process: subprocess.Popen | None = None
        self.settings: BackendSettings | None = None
        self.log_file = log_file or default_log_file()
        self.state = STATE_STOPPED
        self.started_at = 0.0
        self._log_handle = None
        self._probe = HealthProbe(self)
        self._probe.answered.connect(self._on_health)
        self._timer = QTimer(self)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self._watch)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, settings: BackendSettings, sam_size: str = "") -> None:
        """Start the service; raise Think2SegError with a sentence when it cannot be started."""
        if self.is_running():
            return
        interpreter = resolve_interpreter(settings.python)
        if not interpreter or not os.path.exists(interpreter):
            raise Think2SegError(
                NOT_CONFIGURED,
                tr(
                    "No backend is set up yet: press “Set up backend…” to install one, or choose the folder of an "
                    "existing backend environment under Backend > Settings > “Backend environment”."
                ),
            )
        command = serve_command(settings, interpreter, sam_size)
        Path(self.log_file).parent.mkdir(parents=True, exist_ok=True)
        Path(settings.effective_token_file()).parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = open(self.log_file, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the child
        self._log_handle.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} QGIS starts: {shlex.join(command)}\n")
        self._log_handle.flush()
        env = child_environment(extra={"PYTHONUNBUFFERED": "1"})  # not QGIS's PYTHONHOME, PROJ_LIB...
        try:
            self.process = subprocess.Popen(  # nosec B603  # a list of arguments (no shell): the chosen Python and think2seg serve
                command,
                stdout=self._log_handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=(sys.platform != "win32"),
            )
        except OSError as error:
            self._close_log()
            raise Think2SegError(
                NOT_STARTED,
                tr("Could not start the backend ({python}): {error}").format(python=interpreter, error=error),
            ) from None
        self.settings = settings
        self.started_at = time.monotonic()
        self._set_state(STATE_STARTING, tr("Starting the local backend…"))
        self._timer.setInterval(1000)
        self._timer.start()

    def stop(self, wait: float = 5.0) -> None:
        self._timer.stop()
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                process.kill()
                try:
                    process.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    pass
        self._close_log()
        if self.state not in (STATE_STOPPED, STATE_FAILED):  # a failure stays on screen until read and acted on
            self._set_state(STATE_STOPPED, tr("The local backend is stopped."))

    def log_tail(self, lines: int = 15) -> str:
        return read_log_tail(self.log_file, lines)

    # -- watching ---------------------------------------------------------------------------------------------
    def _watch(self) -> None:
        if self.process is None:
            self._timer.stop()
            return
        code = self.process.poll()
        if code is not None:
            self._timer.stop()
            self.process = None
            self._close_log()
            self._set_state(
                STATE_CRASHED,
                tr("The local backend exited (code {code}); see its log ({log}):").format(code=code, log=self.log_file)
                + f"\n{self.log_tail()}",
            )
            return
        if self.settings is not None:
            self._probe.probe(self.settings.effective_url(), self.settings.read_token(), timeout=2.0)

    def _on_health(self, result: object) -> None:
        if self.process is None:
            return
        elapsed = time.monotonic() - self.started_at
        loading = tr("Backend loading its models ({seconds:.0f} s)…").format(seconds=elapsed)
        if isinstance(result, BackendHealth):
            if result.error:
                # The models cannot load: no point in waiting. Stop the process (it holds memory and would answer
                # every query with the same error) and keep the sentence until the user changes something.
                self._timer.stop()
                process, self.process = self.process, None
                process.terminate()
                self._close_log()
                self._set_state(STATE_FAILED, result.sentence())
            elif result.loaded:
                self._timer.setInterval(5000)  # ready: keep watching for a crash, less often
                self._set_state(STATE_READY, result.sentence())
            elif result.download:
                self._set_state(STATE_STARTING, download_sentence(result.download))
            else:
                self._set_state(STATE_STARTING, loading)
        elif isinstance(result, Think2SegError) and result.code == MODELS_LOADING:
            self._set_state(STATE_STARTING, loading)
        elif isinstance(result, Think2SegError) and result.code in (UNAUTHORIZED, NO_TOKEN):
            # An answer, but not to us: waiting will not change it (another backend on the port, or another
            # token file). Say so instead of "Starting…" forever.
            self._set_state(
                STATE_UNAUTHORIZED,
                tr(
                    "A backend answers at {url} but refuses the token in {path}: another backend may hold the port. "
                    "Press Stop, then change the Port or the Token file under Backend > Settings."
                ).format(url=self.settings.effective_url(), path=self.settings.effective_token_file()),
            )
        elif isinstance(result, Think2SegError) and result.code not in (UNREACHABLE, TIMEOUT):
            self._set_state(STATE_ERROR, result.message)
        elif self.state != STATE_READY:
            self._set_state(STATE_STARTING, tr("Starting the local backend ({seconds:.0f} s)…").format(seconds=elapsed))
        else:
            self._set_state(STATE_STARTING, tr("The local backend stopped answering: {error}").format(error=result))

    def _set_state(self, state: str, sentence: str) -> None:
        changed = (state, sentence) != (self.state, getattr(self, "_sentence", None))
        self.state = state
        self._sentence = sentence
        if changed:
            self.state_changed.emit(state, sentence)

    def _close_log(self) -> None:
        if self._log_handle is not None:
            try:
                self._log_handle.close()
            except OSError:
                pass
            self._log_handle = None

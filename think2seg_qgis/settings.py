"""The plugin's settings: stored in QgsSettings under ``think2seg/``; two environment variables win.

``THINK2SEG_BACKEND_URL`` and ``THINK2SEG_TOKEN_FILE``, when set, take precedence over what the panel stores:
they let a test, a script or an administrator point every QGIS on a machine at one backend.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from qgis.core import QgsApplication, QgsAuthMethodConfig, QgsSettings

from .client import BackendClient
from .i18n import tr

PREFIX = "think2seg"
ENV_URL = "THINK2SEG_BACKEND_URL"
ENV_TOKEN_FILE = "THINK2SEG_TOKEN_FILE"  # nosec B105  # the name of an environment variable, not a password

SAM_SIZES = ("tiny", "small", "base_plus", "large")
# No size in the request: the backend uses the SAM2 it was started with (a local checkpoint may be the only one it
# has). A size chosen explicitly is sent and the backend loads it on demand.
SAM_SIZE_BACKEND = ""
DEFAULT_SAM_SIZE = SAM_SIZE_BACKEND
DEFAULT_REASONING_TOKENS = 1024
DEFAULT_PORT = 8765
DEFAULT_EXPORT_MAX_SIZE = 2048
# Beyond the export bound, Processing sends the area at full resolution (up to this long side) and lets the
# backend tile it through the jobs API.
DEFAULT_TILED_MAX_SIZE = 8192
DEFAULT_TILE_SIZE = 1024
DEFAULT_TILE_OVERLAP = 128
HISTORY_LENGTH = 20

#: Where a token typed in the panel is kept. The token file is the default (no master password involved): the
#: panel, the toolbox and the local backend all read that one file. The authentication database is offered in the
#: panel with a sentence, because QGIS then asks for (or to set) its master password.
TOKEN_IN_FILE = "file"  # nosec B105  # where the token is kept, not a token
TOKEN_IN_AUTHDB = "authdb"  # nosec B105  # where the token is kept, not a token
# A typed token that could not be kept (a token file from $THINK2SEG_TOKEN_FILE is not ours to overwrite): held for
# this QGIS session, where the panel and Processing both find it (load_backend_settings).
_SESSION = {"token": ""}  # nosec B105  # empty until a typed token is held for the session

MODE_LOCAL = "local"
MODE_REMOTE = "remote"
DESTINATION_MEMORY = "memory"
DESTINATION_GEOPACKAGE = "geopackage"
#: The default: a GeoPackage in the project's folder, so results (reasoning and all) survive quitting QGIS; while
#: the project is not saved yet there is no such folder, and the results are temporary layers (the panel says so).
DESTINATION_PROJECT = "project"

AREA_CANVAS = "canvas"
AREA_LAYER = "layer"
AREA_SELECTION = "selection"


def default_token_file() -> str:
    return str(Path.home() / ".config" / "think2seg" / "token")


def default_log_file() -> str:
    return str(Path.home() / ".cache" / "think2seg" / "backend-qgis.log")


@dataclass
class BackendSettings:
    """Where the backend is and how to start one."""

    mode: str = MODE_LOCAL
    url: str = ""  # remote mode: the service's base URL
    token: str = ""  # remote mode: a token just typed in the panel; kept only in memory (see authcfg)
    authcfg: str = ""  # remote mode: the QGIS authentication config that holds the token (encrypted)
    token_storage: str = TOKEN_IN_FILE  # where a typed token goes: the token file, or the auth DB (authcfg)
    token_file: str = field(default_factory=default_token_file)
    python: str = ""  # local mode: an interpreter or a venv folder that has the `think2seg` package
    model: str = ""  # empty: the backend's default (the published weights)
    sam_checkpoint: str = ""
    device: str = "auto"
    port: int = DEFAULT_PORT
    extra_args: str = ""
    connect_timeout: float = 5.0
    request_timeout: float = 900.0

    def effective_url(self) -> str:
        env = os.environ.get(ENV_URL, "").strip()
        if env:
            return env.rstrip("/")
        if self.mode == MODE_REMOTE and self.url.strip():
            return self.url.strip().rstrip("/")
        return f"http://127.0.0.1:{self.port}"

    def launch_port(self) -> int:
        """The port a local backend listens on: the one in a loopback $THINK2SEG_BACKEND_URL, else the setting."""
        parts = urllib.parse.urlsplit(self.effective_url())
        if parts.hostname in ("127.0.0.1", "localhost") and parts.port:
            return int(parts.port)
        return int(self.port)

    def effective_token_file(self) -> str:
        env = os.environ.get(ENV_TOKEN_FILE, "").strip()
        return os.path.expanduser(env or self.token_file or default_token_file())

    def url_from_environment(self) -> bool:
        return bool(os.environ.get(ENV_URL, "").strip())

    def read_token(self) -> str:
        """The bearer token: a typed token (remote mode, no env override) or the token file's content."""
        if self.mode == MODE_REMOTE and not os.environ.get(ENV_TOKEN_FILE):
            if self.token.strip():
                return self.token.strip()
            if self.authcfg and self.token_storage == TOKEN_IN_AUTHDB:  # the user chose it (and its master password)
                return load_token(self.authcfg)
        path = self.effective_token_file()
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError:
            return ""

    def client(self) -> BackendClient:
        return BackendClient(self.effective_url(), self.read_token(), self.connect_timeout, self.request_timeout)


@dataclass
class RunSettings:
    """What the panel remembers between runs."""

    sam_size: str = DEFAULT_SAM_SIZE
    max_reasoning_tokens: int = DEFAULT_REASONING_TOKENS
    destination: str = DESTINATION_PROJECT
    area: str = AREA_CANVAS
    export_max_size: int = DEFAULT_EXPORT_MAX_SIZE
    tiled_max_size: int = DEFAULT_TILED_MAX_SIZE
    #: opt-in, off by default until measured with the published weights (README, --constrain-answer)
    constrain_answer: bool = False
    history: list[str] = field(default_factory=list)


AUTH_METHOD = "Basic"  # in every QGIS since 3.0; the token is its password, the user name says what it is
AUTH_USER = "think2seg-token"


def store_token(token: str, authcfg: str = "") -> str:
    """Keep ``token`` in QGIS's authentication database (encrypted with the master password); its config id.

    Raises RuntimeError when QGIS cannot store it (no master password set, database unavailable)."""
    manager = QgsApplication.authManager()
    config = QgsAuthMethodConfig(AUTH_METHOD)
    if authcfg:
        manager.loadAuthenticationConfig(authcfg, config, True)
        config.setMethod(AUTH_METHOD)
    config.setName(tr("Think2Seg backend token"))
    config.setConfig("username", AUTH_USER)
    config.setConfig("password", token)
    if config.id():
        stored = manager.updateAuthenticationConfig(config)
    else:
        stored = manager.storeAuthenticationConfig(config)
    if isinstance(stored, tuple):  # (ok, config) in some bindings
        stored, config = stored[0], stored[-1]
    if not stored or not config.id():
        raise RuntimeError(
            tr("QGIS could not store the token in its authentication database (is a master password set?)")
        )
    return config.id()


def load_token(authcfg: str) -> str:
    config = QgsAuthMethodConfig()
    manager = QgsApplication.authManager()
    loaded = manager.loadAuthenticationConfig(authcfg, config, True)
    if isinstance(loaded, tuple):
        loaded, config = loaded[0], loaded[-1]
    return str(config.config("password", "")) if loaded else ""


def _value(settings: QgsSettings, key: str, default, kind):
    raw = settings.value(f"{PREFIX}/{key}", default)
    if raw is None:
        return default
    try:
        if kind is bool:
            return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
        return kind(raw)
    except (TypeError, ValueError):
        return default


def backend_token(settings: BackendSettings | None = None) -> str:
    """The one credential: what the panel sends is what Processing sends (both call this)."""
    return (settings or load_backend_settings()).read_token()


def write_token_file(path: str, token: str) -> None:
    """``token`` in ``path``, readable by this user only (0600, in a 0700 folder), as the backend writes it."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)


def load_backend_settings() -> BackendSettings:
    s = QgsSettings()
    d = BackendSettings()
    authcfg = _value(s, "backend/authcfg", d.authcfg, str)
    # Before the token file was the default, a typed token went to the auth DB: keep reading it from there.
    storage = _value(s, "backend/token_storage", TOKEN_IN_AUTHDB if authcfg else TOKEN_IN_FILE, str)
    return BackendSettings(
        mode=_value(s, "backend/mode", d.mode, str),
        url=_value(s, "backend/url", d.url, str),
        # a token held for this session only, else a plain-text token from before authcfg
        token=_SESSION["token"] or _value(s, "backend/token", d.token, str),
        authcfg=authcfg,
        token_storage=storage if storage in (TOKEN_IN_FILE, TOKEN_IN_AUTHDB) else TOKEN_IN_FILE,
        token_file=_value(s, "backend/token_file", d.token_file, str) or d.token_file,
        python=_value(s, "backend/python", d.python, str),
        model=_value(s, "backend/model", d.model, str),
        sam_checkpoint=_value(s, "backend/sam_checkpoint", d.sam_checkpoint, str),
        device=_value(s, "backend/device", d.device, str) or d.device,
        port=_value(s, "backend/port", d.port, int),
        extra_args=_value(s, "backend/extra_args", d.extra_args, str),
        connect_timeout=_value(s, "backend/connect_timeout", d.connect_timeout, float),
        request_timeout=_value(s, "backend/request_timeout", d.request_timeout, float),
    )


def save_backend_settings(backend: BackendSettings) -> None:
    """Saves the settings; a typed token goes to the token file (or, when the user chose it, QGIS's authentication
    database), never to QGIS3.ini."""
    s = QgsSettings()
    token = backend.token.strip()
    if token and backend.token_storage == TOKEN_IN_AUTHDB:
        try:  # the user asked for it: QGIS may now ask for its master password
            backend.authcfg = store_token(token, backend.authcfg)
            backend.token = ""  # nosec B105  # clears the plain-text copy once the token is in QGIS's auth store
        except RuntimeError:
            pass  # kept in memory for this session only; the panel says so
    elif token and not os.environ.get(ENV_TOKEN_FILE, "").strip():
        try:
            write_token_file(backend.effective_token_file(), token)
            backend.token = ""  # nosec B105  # clears the plain-text copy once the token is in its file
        except OSError:
            pass  # kept in memory for this session only
    _SESSION["token"] = backend.token.strip()
    s.remove(f"{PREFIX}/backend/token")
    for key, value in (
        ("mode", backend.mode),
        ("url", backend.url),
        ("authcfg", backend.authcfg),
        ("token_storage", backend.token_storage),
        ("token_file", backend.token_file),
        ("python", backend.python),
        ("model", backend.model),
        ("sam_checkpoint", backend.sam_checkpoint),
        ("device", backend.device),
        ("port", int(backend.port)),
        ("extra_args", backend.extra_args),
        ("connect_timeout", float(backend.connect_timeout)),
        ("request_timeout", float(backend.request_timeout)),
    ):
        s.setValue(f"{PREFIX}/backend/{key}", value)


def load_run_settings() -> RunSettings:
    s = QgsSettings()
    d = RunSettings()
    history = s.value(f"{PREFIX}/run/history", [])
    if isinstance(history, str):
        history = [history] if history else []
    sam_size = _value(s, "run/sam_size", d.sam_size, str)
    return RunSettings(
        sam_size=sam_size if sam_size in SAM_SIZES + (SAM_SIZE_BACKEND,) else d.sam_size,
        max_reasoning_tokens=_value(s, "run/max_reasoning_tokens", d.max_reasoning_tokens, int),
        destination=_value(s, "run/destination", d.destination, str),
        area=_value(s, "run/area", d.area, str),
        export_max_size=max(64, _value(s, "run/export_max_size", d.export_max_size, int)),
        tiled_max_size=max(64, _value(s, "run/tiled_max_size", d.tiled_max_size, int)),
        constrain_answer=_value(s, "run/constrain_answer", d.constrain_answer, bool),
        history=[str(h) for h in (history or []) if str(h).strip()][:HISTORY_LENGTH],
    )


def save_run_settings(run: RunSettings) -> None:
    s = QgsSettings()
    s.setValue(f"{PREFIX}/run/sam_size", run.sam_size)
    s.setValue(f"{PREFIX}/run/max_reasoning_tokens", int(run.max_reasoning_tokens))
    s.setValue(f"{PREFIX}/run/destination", run.destination)
    s.setValue(f"{PREFIX}/run/area", run.area)
    s.setValue(f"{PREFIX}/run/export_max_size", int(run.export_max_size))
    s.setValue(f"{PREFIX}/run/tiled_max_size", int(run.tiled_max_size))
    s.setValue(f"{PREFIX}/run/constrain_answer", bool(run.constrain_answer))
    s.setValue(f"{PREFIX}/run/history", list(run.history[:HISTORY_LENGTH]))


def remember_query(run: RunSettings, query: str) -> None:
    """Put a query first in the history, without duplicates."""
    query = query.strip()
    if not query:
        return
    run.history = [query] + [q for q in run.history if q != query]
    del run.history[HISTORY_LENGTH:]

"""Errors with a stable code, turned into one sentence a user can act on at the edge (panel, message bar, log).

The codes are the backend's (docs/api.md) plus a few the plugin raises itself. Code that switches on a code uses
these constants, never a literal, so that a renamed code breaks in one place.
"""

from __future__ import annotations

from .i18n import tr

# -- the plugin's own codes ----------------------------------------------------------------------------------
UNREACHABLE = "unreachable"
TIMEOUT = "timeout"
NO_TOKEN = "no_token"  # nosec B105  # an error code the service sends, not a password
CRASHED = "backend_crashed"
NOT_STARTED = "backend_not_started"
NOT_CONFIGURED = "backend_not_configured"
SETUP_FAILED = "setup_failed"
NO_CRS = "no_crs"
EMPTY_AREA = "empty_area"
EXPORT_FAILED = "export_failed"
BAD_ANSWER = "bad_answer"
WRITE_FAILED = "write_failed"
JOB_FAILED = "job_failed"

# -- the backend's codes (docs/api.md), as its error answers carry them ---------------------------------------
INTERNAL = "internal"
UNAUTHORIZED = "unauthorized"
NOT_FOUND = "not_found"
JOB_NOT_FOUND = "job_not_found"
UPLOAD_TOO_LARGE = "upload_too_large"
MODELS_LOADING = "models_loading"
MODELS_FAILED = "models_failed"
OUT_OF_MEMORY = "out_of_memory"
CANCELLED = "cancelled"
WEIGHTS_UNAVAILABLE = "weights_unavailable"
BAD_MODEL = "bad_model"
BAD_SAM_CHECKPOINT = "bad_sam_checkpoint"
BAD_SAM_SIZE = "bad_sam_size"
BAD_REQUEST = "bad_request"
BAD_OPTIONS = "bad_options"
QUEUE_FULL = "queue_full"
WRONG_HOST = "wrong_host"
JOB_NOT_FINISHED = "job_not_finished"
VIEW_NOT_FOUND = "view_not_found"  # refine: the backend no longer holds the answer's view (restarted, or evicted)

# The backend's HTTP error codes the plugin names (tests/plugin/test_backend_errors.py checks them against the
# backend's own table, think2seg.errors.ERROR_CODES).
BACKEND_HTTP_CODES = (
    INTERNAL, UNAUTHORIZED, JOB_NOT_FOUND, JOB_NOT_FINISHED, UPLOAD_TOO_LARGE, MODELS_LOADING, MODELS_FAILED,
    OUT_OF_MEMORY, CANCELLED, WEIGHTS_UNAVAILABLE, BAD_REQUEST, BAD_OPTIONS, QUEUE_FULL, WRONG_HOST,
)  # fmt: skip

# The code an HTTP status stands for when an error answer has no body the client can read.
HTTP_STATUS_CODES = {
    400: BAD_REQUEST,
    401: UNAUTHORIZED,
    404: NOT_FOUND,
    413: UPLOAD_TOO_LARGE,
    421: WRONG_HOST,
    429: QUEUE_FULL,
    503: MODELS_LOADING,
    507: OUT_OF_MEMORY,
}

# Errors where the backend's log tail helps the user (and whoever they ask for help).
INTERNAL_CODES = frozenset({INTERNAL, OUT_OF_MEMORY, CRASHED, TIMEOUT, JOB_FAILED, MODELS_FAILED})
# The models cannot load: the backend runs but will never answer a query until its settings change.
MODEL_SETUP_CODES = frozenset({WEIGHTS_UNAVAILABLE, BAD_MODEL, BAD_SAM_CHECKPOINT, BAD_SAM_SIZE, MODELS_FAILED})

# Reaching the backend failed (not the query): Processing words these for a user who may have no panel open.
CONNECTION_CODES = frozenset({UNREACHABLE, TIMEOUT, UNAUTHORIZED, NO_TOKEN, MODELS_LOADING})

# Where the sentence is shown: the panel has buttons and fields to name; Processing may run with no panel at all.
IN_PANEL = "panel"
IN_PROCESSING = "processing"


class Think2SegError(Exception):
    """An error with a stable ``code`` and a ``message`` meant for the user."""

    def __init__(self, code: str, message: str, log_tail: str = "", status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.log_tail = log_tail
        self.status = status

    def __str__(self) -> str:  # the sentence, so f"{error}" reads well in a message bar
        return self.message


# The backend's sentences name its command-line options; in QGIS the same settings are fields of the panel.
_CLI_TO_PANEL = (
    ("pass --model DIR", tr("set “Reasoning model” in the panel's Backend settings to DIR")),
    ("pass --sam DIR/", tr("set “SAM2 checkpoint” in the panel's Backend settings to DIR/")),
    ("pass --sam-size", tr("name the size in the checkpoint's file name, e.g. sam2.1_hiera_small.pt:")),
    ("--model", tr("“Reasoning model” (Backend settings)")),
    ("--sam", tr("“SAM2 checkpoint” (Backend settings)")),
    ("--device", tr("“Device” (Backend settings)")),
)


def in_panel_terms(message: str) -> str:
    """A backend sentence with its CLI options replaced by the panel fields that set them."""
    for cli, panel in _CLI_TO_PANEL:
        message = message.replace(cli, panel)
    return message


def backend_sentence(code: str, message: str, url: str = "", where: str = IN_PANEL) -> str:
    """One sentence for an error the backend (or the connection to it) produced, worded for ``where``."""
    at = tr(" at {url}").format(url=url) if url else ""
    if code == UNREACHABLE:
        if where == IN_PROCESSING:
            return tr(
                "The Think2Seg backend is not reachable{at}: start one (the Think2Seg panel's Start button, or "
                "`think2seg serve` on that machine) and check the algorithm's “Backend URL” parameter."
            ).format(at=at)
        return tr(
            "The Think2Seg backend is not reachable{at}: press Start in the panel's Backend section, or check "
            "the URL in its settings."
        ).format(at=at)
    if code == TIMEOUT:
        return tr("The Think2Seg backend{at} did not answer in time; it may be busy or stuck (see its log).").format(
            at=at
        )
    if code == UNAUTHORIZED:
        return tr(
            "The backend refused the token: the token file or the stored token does not match the one the "
            "backend uses (see the panel's Backend settings)."
        )
    if code == NO_TOKEN:
        return tr("No token to talk to the backend: {message}").format(message=message)
    if code == MODELS_LOADING:
        return tr("The backend is starting and still loading its models; try again in a moment.")
    if code == OUT_OF_MEMORY:
        return message or tr(
            "The backend ran out of GPU memory: choose a smaller area, a lower reasoning budget or a smaller "
            "SAM2 size, or close other programs that use the GPU."
        )
    if code == CRASHED:
        return tr("The local backend stopped unexpectedly. {message}").format(message=message).strip()
    if code in MODEL_SETUP_CODES and where == IN_PANEL:
        return in_panel_terms(message)
    return message or tr("The backend answered with an error ({code}).").format(code=code)

"""Errors with a stable code, turned into one sentence a user can act on at the edge (panel, message bar, log)."""

from __future__ import annotations

# Codes raised by the plugin itself; the backend's codes (docs/api.md) pass through unchanged.
UNREACHABLE = "unreachable"
TIMEOUT = "timeout"
UNAUTHORIZED = "unauthorized"
NO_TOKEN = "no_token"
MODELS_LOADING = "models_loading"
OUT_OF_MEMORY = "out_of_memory"
CRASHED = "backend_crashed"
NOT_STARTED = "backend_not_started"
CANCELLED = "cancelled"
NO_CRS = "no_crs"
EMPTY_AREA = "empty_area"
EXPORT_FAILED = "export_failed"
BAD_ANSWER = "bad_answer"
WRITE_FAILED = "write_failed"
JOB_FAILED = "job_failed"
INTERNAL = "internal"

# Errors where the backend's log tail helps the user (and whoever they ask for help).
INTERNAL_CODES = frozenset({INTERNAL, OUT_OF_MEMORY, CRASHED, TIMEOUT, JOB_FAILED})


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


def backend_sentence(code: str, message: str, url: str = "") -> str:
    """One sentence for an error the backend (or the connection to it) produced."""
    where = f" at {url}" if url else ""
    if code == UNREACHABLE:
        return (
            f"The Think2Seg backend is not reachable{where}: start it from the panel (Backend > Start) "
            "or check the URL in the backend settings."
        )
    if code == TIMEOUT:
        return f"The Think2Seg backend{where} did not answer in time; it may be busy or stuck (see its log)."
    if code == UNAUTHORIZED:
        return (
            "The backend refused the token: the token file or the typed token does not match the one the "
            "backend uses (see Backend settings)."
        )
    if code == NO_TOKEN:
        return f"No token to talk to the backend: {message}"
    if code == MODELS_LOADING:
        return "The backend is starting and still loading its models; try again in a moment."
    if code == OUT_OF_MEMORY:
        return message or (
            "The backend ran out of GPU memory: choose a smaller area, a lower reasoning budget or a smaller "
            "SAM2 size, or close other programs that use the GPU."
        )
    if code == CRASHED:
        return f"The local backend stopped unexpectedly. {message}".strip()
    return message or f"The backend answered with an error ({code})."

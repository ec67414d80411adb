"""Errors with a stable code and a sentence a user can act on; the edges (CLI, HTTP) show the sentence.

Each class carries its HTTP status; the service answers `{"error": {"code", "message"}}` with that status
and never changes it after the error is made. `ERROR_CODES` lists every stable code with its status: the
plugin (think2seg_qgis/errors.py) and docs/api.md key on these, so a code is never renamed.
"""

from __future__ import annotations

import re


class Think2SegError(Exception):
    """Base error: `code` is stable (API clients switch on it), `message` is for people. HTTP 500: our fault."""

    code = "internal"
    http_status = 500

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers of the answer (Retry-After for a full queue)."""
        return {}


class BadInput(Think2SegError):
    """The user's input cannot be used (not a raster, no bands, empty query...): HTTP 422."""

    code = "bad_request"
    http_status = 422


class BadOptions(BadInput):
    """An option has the wrong type, is out of bounds or is unknown; the message names the field."""

    code = "bad_options"


class BadRequest(BadInput):
    """The request itself is malformed (a missing field, bad JSON): HTTP 400."""

    http_status = 400


class Unauthorized(Think2SegError):
    code = "unauthorized"
    http_status = 401


class NotFound(Think2SegError):
    code = "not_found"
    http_status = 404


class Conflict(Think2SegError):
    """The thing exists but is not in a state that allows the request (a job not finished yet)."""

    code = "conflict"
    http_status = 409


class Cancelled(Conflict):
    code = "cancelled"


class MethodNotAllowed(Think2SegError):
    code = "method_not_allowed"
    http_status = 405

    def __init__(self, message: str, allow: str = ""):
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": self.allow} if self.allow else {}


class RequestTimeout(Think2SegError):
    """The client stopped sending its request (headers or body) for longer than the backend waits."""

    code = "request_timeout"
    http_status = 408

    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}


class TooLarge(Think2SegError):
    """The request body is over the upload limit; the connection is closed at the cap (the rest is not read)."""

    code = "upload_too_large"
    http_status = 413

    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}


class WrongHost(Think2SegError):
    """The Host header names neither a loopback name nor the host the backend was started for."""

    code = "wrong_host"
    http_status = 421


class QueueFull(Think2SegError):
    """Too much work is waiting: HTTP 429 with Retry-After (seconds)."""

    code = "queue_full"
    http_status = 429

    def __init__(self, message: str, retry_after: int, code: str | None = None):
        super().__init__(message, code)
        self.retry_after = max(1, int(retry_after))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Unavailable(Think2SegError):
    """The backend cannot do the work now (models loading or failed to load): HTTP 503."""

    code = "unavailable"
    http_status = 503


class WeightsUnavailable(Unavailable):
    """Model weights are neither cached nor downloadable; the message says what to fetch and where."""

    code = "weights_unavailable"


class OutOfMemory(Think2SegError):
    code = "out_of_memory"
    http_status = 507


class DiskFull(Think2SegError):
    """A folder the backend writes to is full; the message names the folder."""

    code = "disk_full"
    http_status = 507


#: Every code the HTTP API answers, with its status (docs/api.md has the same table; a test compares them).
ERROR_CODES: dict[str, int] = {
    "bad_request": 400,
    "empty_query": 400,
    "query_too_long": 400,
    "unauthorized": 401,
    "not_found": 404,
    "job_not_found": 404,
    "job_lost": 404,
    "view_not_found": 404,
    "instance_not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "job_not_finished": 409,
    "cancelled": 409,
    "upload_too_large": 413,
    "wrong_host": 421,
    "bad_options": 422,
    "not_a_raster": 422,
    "no_bands": 422,
    "bad_bands": 422,
    "raster_too_large": 422,
    "too_many_tiles": 422,
    "read_failed": 422,
    "empty_window": 422,
    "bad_prompt": 422,
    "queue_full": 429,
    "internal": 500,
    "models_loading": 503,
    "models_failed": 503,
    "weights_unavailable": 503,
    "stopping": 503,
    "out_of_memory": 507,
    "disk_full": 507,
}


#: absolute paths in a message (an exception's text): never shown to a client
_PATH = re.compile(r"(?<![\w:/])/(?:[^\s'\"()\[\],:;]+/)+[^\s'\"()\[\],:;]*")


def scrub_paths(message: str) -> str:
    """`message` with every absolute path replaced (a server's paths are none of a client's business)."""
    return _PATH.sub("<a server path>", message)

"""Errors with a stable code and a sentence a user can act on; the edges (CLI, HTTP) show the sentence."""

from __future__ import annotations


class Think2SegError(Exception):
    """Base error: `code` is stable (API clients switch on it), `message` is for people."""

    code = "internal"
    http_status = 500

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


class BadInput(Think2SegError):
    """The user's input cannot be used (not a raster, no bands, empty query...)."""

    code = "bad_request"
    http_status = 422


class WeightsUnavailable(Think2SegError):
    """Model weights are neither cached nor downloadable; the message says what to fetch and where."""

    code = "weights_unavailable"
    http_status = 503


class Cancelled(Think2SegError):
    code = "cancelled"
    http_status = 409


class BadRequest(BadInput):
    """The request itself is malformed (a missing field, bad JSON): HTTP 400."""

    http_status = 400

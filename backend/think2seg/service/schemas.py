"""The OpenAPI description of what the service answers (docs/api.md in machine form).

The answers are built as dicts by the pipeline; these models only describe them (they are passed as
`responses=`, not `response_model=`, so nothing is filtered), and the schemathesis test checks that the
live answers conform.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..errors import ERROR_CODES
from ..options import SegmentOptions


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "loading", "error"]
    device: str
    device_detail: str
    models: dict[str, Any]
    queue: dict[str, int]
    versions: dict[str, str]
    limits: dict[str, int]
    error: ErrorDetail | None = None


class JobAccepted(BaseModel):
    job_id: str
    status: str


class JobStatus(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: float
    message: str
    error: ErrorDetail | None


class SegmentAnswer(BaseModel):
    """The answer of /v1/segment and of a job's result (docs/api.md has every field)."""

    model_config = ConfigDict(extra="allow")
    query: str | None = None
    status: str
    message: str


class RefineAnswer(BaseModel):
    """The answer of POST /v1/views/{view_id}/refine (docs/api.md has every field)."""

    model_config = ConfigDict(extra="allow")
    view_id: str
    instance: int | None
    edited: bool
    geometry: dict | None
    score: float
    area: float
    area_unit: str
    area_m2: float | None
    labels: list[int]
    reembedded: bool
    timings: dict[str, float]


def form_body(options: type[SegmentOptions]) -> dict:
    """The multipart form (parsed by hand, to bound the upload while it streams), for OpenAPI."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["image", "query"],
                        "properties": {
                            "image": {
                                "type": "string",
                                "format": "binary",
                                "description": "GeoTIFF/COG, PNG, JPEG, JPEG2000, WebP, GIF or BMP (VRT is refused)",
                            },
                            "query": {"type": "string", "minLength": 1, "maxLength": 2000},
                            "options": {
                                "type": "string",
                                "description": "JSON text of an object with any of: "
                                + ", ".join(options.model_fields)
                                + " (docs/api.md gives types and bounds)",
                            },
                        },
                    }
                }
            },
        }
    }


def errors(*statuses: int) -> dict[int | str, dict]:
    """`responses=` entries for these error statuses, each listing its codes."""
    out: dict[int | str, dict] = {}
    for status in statuses:
        codes = ", ".join(c for c, s in ERROR_CODES.items() if s == status)
        out[status] = {"model": ErrorBody, "description": f"codes: {codes}"}
    return out


#: errors every route can answer (the Host and token checks run first; 500 is our own fault)
COMMON = (401, 421, 500)
SUBMIT = (400, 413, 422, 429, 503)

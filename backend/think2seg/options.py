"""The options of one query (`SegmentOptions`) and of a tiled job (`JobOptions`): typed, finite, bounded.

One model serves the pipeline, the CLI, `POST /v1/segment` and `POST /v1/jobs` (docs/api.md lists the
fields and bounds). Types are strict (`"5"` is not a number, `1` is not `true`), floats must be finite and
unknown keys are refused, so a client's typo is a 422 naming the field instead of an option silently ignored.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import BadOptions, BadRequest
from .prompts import DEFAULT_PARSE_MODE, ParseMode

#: Longest side read in one go when the raster is larger (the rest is resampled); tiling is in `tiling`.
DEFAULT_MAX_READ = 2048
#: Regions smaller than this many pixels are noise, not answers.
DEFAULT_MIN_AREA_PIXELS = 16
MIN_TILE = 64
MAX_TILE = 8192
#: Tokens allowed for the answer block after the reasoning budget forced the model to conclude.
ANSWER_BUDGET = 256
#: Longest query accepted (characters), at every entry point.
MAX_QUERY_CHARS = 2000
SamSize = Literal["tiny", "small", "base_plus", "large"]

BandNumber = Annotated[int, Field(ge=1, le=65535)]


class SegmentOptions(BaseModel):
    """How one query is answered on one read of a raster."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_assignment=True)

    max_reasoning_tokens: int = Field(1024, ge=16, le=8192, description="budget for the model's reasoning")
    bands: list[BandNumber] | None = Field(
        None, min_length=1, max_length=3, description="bands shown to the model as R,G,B: one or three band numbers"
    )
    min_area_pixels: float = Field(
        DEFAULT_MIN_AREA_PIXELS, ge=0, le=1e9, description="regions smaller than this (tile pixels) are dropped"
    )
    max_read_size: int = Field(
        DEFAULT_MAX_READ, ge=64, le=16384, description="a raster whose long side is larger is read resampled to this"
    )
    #: False skips building polygons (evaluation only needs the pixel mask)
    polygonise: bool = True
    sam_size: SamSize | None = Field(None, description="SAM2.1 size for this request (None: the loaded one)")
    constrain_answer: bool = Field(False, description="constrain the answer block to the answer grammar")
    parse_mode: ParseMode = Field(
        DEFAULT_PARSE_MODE,
        description='how the answer is read: "tolerant" (the app) or '
        '"reference" (the reference evaluation, docs/method.md)',
    )
    answer_budget: int = Field(
        ANSWER_BUDGET,
        ge=0,
        le=4096,
        description="tokens of the answer block forced open when the reasoning budget runs "
        "out; 0 = none (the reference has none)",
    )

    @field_validator("bands")
    @classmethod
    def _one_or_three(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(v) == 2:
            raise ValueError("give one band number or three (R, G, B)")
        return v

    @classmethod
    def from_dict(cls, d: dict | None) -> SegmentOptions:
        """Validate a dict (a request's JSON, the CLI's flags); a bad field raises BadOptions naming it."""
        return parse_options(cls, d)


class JobOptions(SegmentOptions):
    """A job's options: a query's, plus the tiling (docs/api.md says what happens on a raster under a tile)."""

    tile_size: int = Field(1024, ge=MIN_TILE, le=MAX_TILE, description="tile side in pixels as the model sees it")
    overlap: int = Field(128, ge=0, le=MAX_TILE // 2, description="overlap of neighbouring tiles (tile pixels)")
    gsd: float | None = Field(None, gt=0, le=1e9, description="ground sample distance to read at (CRS units)")
    batch_size: int = Field(4, ge=1, le=64, description="tiles sent to the model together (larger pays on a GPU)")

    @model_validator(mode="after")
    def _overlap_under_half_a_tile(self) -> JobOptions:
        if self.overlap > self.tile_size // 2:
            raise ValueError(f"overlap must be at most half the tile size ({self.tile_size // 2})")
        return self

    @property
    def tiling_requested(self) -> bool:
        """True when the client set a tiling field: then even a raster under one tile goes through the grid."""
        return bool({"tile_size", "overlap", "gsd"} & self.model_fields_set)


def parse_options(model: type[SegmentOptions], data: Any) -> Any:
    """`data` (a dict, or None for the defaults) -> `model`; any problem is BadOptions with one sentence."""
    if isinstance(data, model):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadOptions(f"`options` must be a JSON object, not {type(data).__name__}.")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise BadOptions(describe_validation_error(e)) from None


def describe_validation_error(e: ValidationError) -> str:
    """A pydantic error as one sentence naming each bad field and what it takes."""
    parts = []
    for err in e.errors(include_url=False)[:5]:
        field = ".".join(str(p) for p in err.get("loc", ()))
        got = err.get("input")
        msg = str(err.get("msg", "is not valid")).removeprefix("Value error, ")
        if not field:  # a rule across fields (overlap vs tile_size): the message names them
            parts.append(msg)
            continue
        if err.get("type") == "extra_forbidden":
            parts.append(f"`{field}` is not an option")
            continue
        shown = repr(got) if isinstance(got, (str, int, float, bool, type(None))) else type(got).__name__
        if isinstance(got, float) and not math.isfinite(got):
            shown = str(got)
        parts.append(f"`{field}`: {msg} (got {shown[:60]})")
    return "Bad options: " + "; ".join(parts) + ". See docs/api.md for the options and their bounds."


def check_query(query: str, max_chars: int = MAX_QUERY_CHARS, as_written: bool = False) -> str:
    """The query, stripped (`as_written`: unchanged, the reference evaluation's rule for a dataset's question,
    docs/method.md); an empty or over-long one is a BadRequest with a sentence (every entry point). The checks
    are on the stripped text either way."""
    q = (query or "").strip()
    if not q:
        raise BadRequest("The query is empty: type what you are looking for.", code="empty_query")
    if len(q) > max_chars:
        raise BadRequest(f"The query is {len(q)} characters long; keep it under {max_chars}.", code="query_too_long")
    return query if as_written else q


def tokens_text(n: int) -> str:
    """ "1 token", "57 tokens": a count of the reasoner's tokens as progress messages write it."""
    return f"{n} token{'s' if n != 1 else ''}"

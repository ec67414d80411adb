"""Send an exported image to the backend and wait for the answer, with progress and cancel.

Shared by the panel's QgsTask and the Processing algorithm (through task.run_request), driven by two
callables: ``progress`` (fraction 0-1, sentence) and ``is_cancelled``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from .client import BackendClient
from .errors import CANCELLED, JOB_FAILED, Think2SegError, backend_sentence
from .i18n import number_text, tr, tr_noop

# A job's states (docs/api.md, GET /v1/jobs/{id}).
JOB_DONE = "done"
JOB_CANCELLED = "cancelled"
JOB_FAILED_STATE = "failed"

Progress = Callable[[float, str], None]
IsCancelled = Callable[[], bool]


# The strict-answer option (``constrain_answer``) as the panel's box and the toolbox's parameter name it.
STRICT_ANSWER_LABEL = tr_noop("Strict answer format")
STRICT_ANSWER_HELP = tr_noop(
    "Holds the model's answer to the expected JSON shape (the reasoning stays free). Off by default: "
    "not yet measured with the published weights."
)


@dataclass
class SegmentationOptions:
    sam_size: str = ""  # empty: the backend's own (settings.SAM_SIZE_BACKEND)
    max_reasoning_tokens: int = 1024
    bands: list[int] | None = None
    tile_size: int | None = None
    overlap: int | None = None
    max_read_size: int | None = None  # the backend tiles a job whose image is larger than this
    constrain_answer: bool = False  # the answer block held to the prompt's JSON shape (docs/api.md)

    def to_json(self) -> dict:
        options: dict = {"max_reasoning_tokens": int(self.max_reasoning_tokens)}
        if self.sam_size:
            options["sam_size"] = self.sam_size
        if self.bands:
            options["bands"] = [int(b) for b in self.bands]
        if self.tile_size:
            options["tile_size"] = int(self.tile_size)
            options["overlap"] = int(self.overlap or 0)
        if self.max_read_size:
            options["max_read_size"] = int(self.max_read_size)
        if self.constrain_answer:
            options["constrain_answer"] = True
        return options


_TILE = re.compile(r"^.+: tile (\d+) of (\d+)$")
_TILES = re.compile(r"^.+: (\d+) tiles$")
_RESUMED = re.compile(r"^.+: (\d+) of (\d+) tiles already done$")
_REASONING = re.compile(r"^.+: reasoning on tiles? (\d+)(?:-(\d+))? of (\d+)(?:, (\d+) tokens?)?$")
_TOKENS = re.compile(r"^reasoning: (\d+) tokens? of at most (\d+)$")
_MERGING = re.compile(r"^.+: merging the tiles$")


def job_sentence(message: str) -> str:
    """A job status message as the panel shows it: no internal upload names (``tmp__6rwvhb.upload: 4 tiles``)."""
    message = message.strip()
    match = _TILE.match(message)
    if match:
        return tr("Tile {n} of {total} done…").format(n=int(match.group(1)), total=int(match.group(2)))
    match = _TILES.match(message)
    if match:
        return tr("Reading the area in {total} tiles…").format(total=int(match.group(1)))
    match = _RESUMED.match(message)
    if match:
        return tr("{n} of {total} tiles already done…").format(n=int(match.group(1)), total=int(match.group(2)))
    match = _REASONING.match(message)
    if match:
        first, last, total = int(match.group(1)), int(match.group(2) or match.group(1)), int(match.group(3))
        if first == last:
            sentence = tr("Reasoning on tile {n} of {total}…").format(n=first, total=total)
        else:
            sentence = tr("Reasoning on tiles {first}–{last} of {total}…").format(first=first, last=last, total=total)
        if match.group(4):
            sentence += " " + tr("tokens written: {n}").format(n=number_text(int(match.group(4))))
        return sentence
    match = _TOKENS.match(message)
    if match:
        return tr("Reasoning… tokens written: {n} (at most {budget})").format(
            n=number_text(int(match.group(1))), budget=number_text(int(match.group(2)))
        )
    if _MERGING.match(message):
        return tr("Merging the tiles’ answers…")
    known = {
        "waiting for the GPU": tr("Waiting for the backend (another run goes first)…"),
        "reading and reasoning": tr("Reading the image and reasoning…"),
        "running": tr("Running…"),
        "queued": tr("Waiting for the backend…"),
    }
    return known.get(message, message)


def cancelled_error() -> Think2SegError:
    return Think2SegError(CANCELLED, tr("The segmentation was cancelled; nothing was added to the project."))


def run_segmentation(
    client: BackendClient,
    image_path: str,
    query: str,
    options: SegmentationOptions,
    progress: Progress,
    is_cancelled: IsCancelled,
    poll_interval: float = 0.5,
) -> dict:
    """The backend's answer to a job (the ``/v1/segment`` JSON); raises Think2SegError (``cancelled`` on cancel).

    Always the jobs API, tiled or not: it reports progress, and a cancel reaches the backend.
    """
    progress(0.0, tr("Uploading the image"))
    job_id = client.submit_job(image_path, query, options.to_json())
    try:
        while True:
            if is_cancelled():
                raise cancelled_error()
            status = client.job_status(job_id)
            state = status.get("status")
            fraction = float(status.get("progress") or 0.0)
            progress(fraction, job_sentence(str(status.get("message") or state or "")))
            if state == JOB_DONE:
                return client.job_result(job_id)
            if state == JOB_CANCELLED:
                raise cancelled_error()
            if state == JOB_FAILED_STATE:
                err = status.get("error") or {}
                code = str(err.get("code") or JOB_FAILED)
                raise Think2SegError(code, backend_sentence(code, str(err.get("message") or tr("The job failed."))))
            _sleep_unless_cancelled(poll_interval, is_cancelled)
    except Think2SegError as error:
        if error.code == CANCELLED:
            try:
                client.cancel_job(job_id)
            except Think2SegError:
                pass  # the backend may be gone already; the user asked to stop, which is done
        raise


def _sleep_unless_cancelled(seconds: float, is_cancelled: IsCancelled) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if is_cancelled():
            return
        time.sleep(min(0.05, max(0.0, end - time.monotonic())))

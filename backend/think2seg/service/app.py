"""The FastAPI app (docs/api.md): /v1/health, /v1/segment, /v1/jobs. Thin over the pipeline."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import shutil
import tempfile
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile as StarletteUpload

from .. import __version__
from ..errors import BadInput, BadRequest, Think2SegError
from .auth import token_matches
from .worker import Worker, WorkItem

log = logging.getLogger("think2seg.service")


@dataclass
class ServiceConfig:
    token: str
    max_upload_mb: int = 512
    max_query_chars: int = 2000
    work_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="think2seg-"))
    #: rasters with more pixels than this in one read are refused by /v1/segment; jobs tile them
    max_pixels_single: int = 8192 * 8192


class PipelineHolder:
    """Loads the models once, in the background, so /v1/health answers while they load."""

    def __init__(self, factory: Callable[[], object], model_ids: dict[str, str]):
        self._factory = factory
        self.model_ids = model_ids
        self.pipeline = None
        self.error: Think2SegError | None = None
        self.loaded = threading.Event()

    def load(self) -> None:
        try:
            self.pipeline = self._factory()
            self.model_ids = dict(self.pipeline.models)
        except Think2SegError as e:
            self.error = e
            log.error("models failed to load: %s", e.message)
        except Exception as e:  # report, don't die: health says what happened
            self.error = Think2SegError(f"The models failed to load: {type(e).__name__}: {e}", code="models_failed")
            log.exception("models failed to load")
        finally:
            self.loaded.set()

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.load, name="think2seg-load", daemon=True)
        t.start()
        return t

    def require(self):
        if self.error is not None:
            raise self.error
        if self.pipeline is None:
            e = Think2SegError("The models are still loading; try again in a moment.", code="models_loading")
            e.http_status = 503
            raise e
        return self.pipeline


# The form is parsed by hand (to bound the upload while it streams), so describe it for OpenAPI here.
SEGMENT_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["image", "query"],
    "properties": {
        "image": {"type": "string", "format": "binary", "description": "GeoTIFF (or any GDAL raster; PNG/JPEG for pixel-only work)"},
        "query": {"type": "string", "maxLength": 2000},
        "options": {"type": "string", "description": 'JSON: {"max_reasoning_tokens": 1024, "bands": [1,2,3], "tile_size": 1024, "overlap": 128}'},
    }}}}}}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def _device_info() -> tuple[str, str]:
    import torch

    if torch.cuda.is_available():
        i = torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(i)
        return f"cuda:{i}", f"{torch.cuda.get_device_name(i)} ({free / 2**30:.1f} of {total / 2**30:.1f} GiB free)"
    return "cpu", f"CPU ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"


def create_app(holder: PipelineHolder, config: ServiceConfig) -> FastAPI:
    worker = Worker()

    @asynccontextmanager
    async def lifespan(_app):
        yield
        worker.stop()
        shutil.rmtree(config.work_dir, ignore_errors=True)

    app = FastAPI(title="Think2Seg backend", version=__version__, lifespan=lifespan,
                  description="Reasoning segmentation of georeferenced rasters. See docs/api.md.")
    app.state.worker = worker
    app.state.holder = holder
    app.state.config = config
    max_bytes = config.max_upload_mb * 1024 * 1024
    open_paths = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.url.path not in open_paths:
            if not token_matches(request.headers.get("authorization"), config.token):
                return error_response(401, "unauthorized",
                                      "Missing or wrong token: send `Authorization: Bearer TOKEN` with the token "
                                      "from the backend's token file.")
            length = request.headers.get("content-length")
            if length and length.isdigit() and int(length) > max_bytes + 1024 * 1024:
                return error_response(413, "upload_too_large",
                                      f"The upload is {int(length) / 2**20:.0f} MiB; the limit is "
                                      f"{config.max_upload_mb} MiB. Read a smaller area or start the backend "
                                      "with a larger --max-upload-mb.")
        return await call_next(request)

    @app.exception_handler(Think2SegError)
    async def _think2seg_error(request: Request, e: Think2SegError):
        return error_response(getattr(e, "http_status", 500), e.code, e.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        missing = ", ".join(str(err.get("loc", ["?"])[-1]) for err in e.errors())
        return error_response(400, "bad_request", f"The request is missing or has bad fields: {missing}.")

    @app.exception_handler(Exception)
    async def _any_error(request: Request, e: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal", f"The backend failed: {type(e).__name__}: {e}")

    @app.get("/v1/health")
    async def health():
        device, detail = _device_info()
        import torch
        import transformers

        status = "ok" if holder.pipeline is not None else ("error" if holder.error else "loading")
        body = {
            "status": status, "device": device, "device_detail": detail,
            "models": {**holder.model_ids, "loaded": holder.pipeline is not None},
            "queue": {"running": int(worker.running is not None), "waiting": worker.waiting},
            "versions": {"think2seg": __version__, "torch": torch.__version__, "transformers": transformers.__version__},
        }
        if holder.error:
            body["error"] = holder.error.to_dict()
        return body

    async def read_form(request: Request) -> tuple[Path, str, dict, str]:
        """Save the upload to the work dir; check the query and the options before any model work."""
        try:
            form = await request.form(max_part_size=1024 * 1024)
        except Exception as e:
            raise BadRequest(f"The request is not a valid multipart form ({e}).", code="bad_request") from e
        image = form.get("image")
        query = form.get("query")
        if not isinstance(image, StarletteUpload):
            raise BadRequest("The form has no `image` file.", code="bad_request")
        if not isinstance(query, str):
            raise BadRequest("The form has no `query` text.", code="bad_request")
        from ..pipeline import check_query

        query = check_query(query, config.max_query_chars)
        raw_options = form.get("options") or "{}"
        try:
            options = json.loads(raw_options) if isinstance(raw_options, str) else {}
            if not isinstance(options, dict):
                raise ValueError("not an object")
        except ValueError as e:
            raise BadRequest(f"`options` must be a JSON object ({e}).", code="bad_request") from e
        suffix = Path(image.filename or "upload.tif").suffix[:8] or ".tif"
        fd, path = tempfile.mkstemp(suffix=suffix, dir=config.work_dir)
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := await image.read(1 << 20):
                size += len(chunk)
                if size > max_bytes:
                    out.close()
                    os.unlink(path)
                    e = BadInput(f"The upload is over the {config.max_upload_mb} MiB limit.", code="upload_too_large")
                    e.http_status = 413
                    raise e
                out.write(chunk)
        if size == 0:
            os.unlink(path)
            raise BadInput("The uploaded image is empty.", code="not_a_raster")
        return Path(path), query, options, image.filename or "upload"

    def _segment_job(path: Path, query: str, options: dict, tiled: bool, upload_name: str):
        from ..georef import open_raster
        from ..pipeline import SegmentOptions

        seg_keys = set(SegmentOptions.__dataclass_fields__)
        opts = SegmentOptions.from_dict({k: v for k, v in options.items() if k in seg_keys})

        def run(item: WorkItem):
            pipeline = holder.require()
            try:
                return _run(item, pipeline)
            except BadInput as e:  # say "the uploaded file", not our temporary path
                e.message = e.message.replace(str(path), f"the uploaded file ({upload_name})")
                raise
            finally:
                path.unlink(missing_ok=True)

        def _run(item: WorkItem, pipeline):
            with open_raster(path) as ds:
                big = ds.width * ds.height > config.max_pixels_single
                fits = max(ds.width, ds.height) <= opts.max_read_size
            if big and not tiled:
                raise BadInput(
                    "This raster is too large for one request: send it as a job (POST /v1/jobs), which tiles it.",
                    code="raster_too_large")
            if tiled and not fits:
                from ..tiling import segment_raster_tiled

                result = segment_raster_tiled(
                    pipeline, str(path), [query], opts,
                    tile_size=int(options.get("tile_size", 1024)), overlap=int(options.get("overlap", 128)),
                    gsd=options.get("gsd"), progress=item.report, cancelled=item.cancelled,
                )
                return result.to_dict()
            item.report(0, 1, "reading and reasoning")
            if item.cancelled():
                from ..errors import Cancelled

                raise Cancelled("The job was cancelled.")
            return pipeline.segment(str(path), query, opts).to_dict()

        return run

    @app.post("/v1/segment", openapi_extra=SEGMENT_FORM)
    async def segment(request: Request):
        path, query, options, name = await read_form(request)
        holder.require()
        item = worker.submit(WorkItem(_segment_job(path, query, options, tiled=False, upload_name=name), kind="segment"))
        return await asyncio.wrap_future(item.future)

    @app.post("/v1/jobs", status_code=202, openapi_extra=SEGMENT_FORM)
    async def submit_job(request: Request):
        path, query, options, name = await read_form(request)
        holder.require()
        item = worker.submit(WorkItem(_segment_job(path, query, options, tiled=True, upload_name=name), kind="job"))
        return JSONResponse(status_code=202, content={"job_id": item.id, "status": item.status})

    def _job(job_id: str) -> WorkItem:
        item = worker.get(job_id)
        if item is None or item.kind != "job":
            e = Think2SegError(f"There is no job {job_id} (finished jobs are kept for a while only).",
                               code="job_not_found")
            e.http_status = 404
            raise e
        return item

    @app.get("/v1/jobs/{job_id}")
    async def job_status(job_id: str):
        return _job(job_id).to_dict()

    @app.get("/v1/jobs/{job_id}/result")
    async def job_result(job_id: str):
        item = _job(job_id)
        if item.status == "done":
            return item.result
        if item.status in ("failed", "cancelled"):
            err = item.error or {"code": item.status, "message": item.message}
            return error_response(409 if item.status == "cancelled" else 500, err["code"], err["message"])
        e = Think2SegError(f"The job is {item.status} ({item.progress:.0%}); poll /v1/jobs/{job_id} until it is done.",
                           code="job_not_finished")
        e.http_status = 409
        raise e

    @app.delete("/v1/jobs/{job_id}")
    async def cancel_job(job_id: str):
        _job(job_id)
        return worker.cancel(job_id).to_dict()

    return app


"""The FastAPI app (docs/api.md): /v1/health, /v1/segment, /v1/jobs, /v1/views/{id}/refine. Thin over the pipeline.

`Service` holds the state (models, worker, work folder, limits); `Guard` checks Host, token and declared
size before anything is read; each route is a few lines over `Service`. Errors are raised as
`think2seg.errors` classes, which carry their HTTP status and code; one handler turns them into answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import platform
import re
import shutil
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import (
    BadRequest,
    Cancelled,
    Conflict,
    MethodNotAllowed,
    NotFound,
    RequestTimeout,
    Think2SegError,
    TooLarge,
    Unauthorized,
    Unavailable,
    WrongHost,
    scrub_paths,
)
from ..options import JobOptions, SegmentOptions, tokens_text
from ..views import (
    DEFAULT_MAX_VIEW_BYTES,
    DEFAULT_MAX_VIEWS,
    DEFAULT_VIEW_STORE_BYTES,
    BadPrompt,
    DiskViews,
    RefineRequest,
    TiledView,
    View,
    ViewStore,
    refine_view,
    tiled_view_id,
)
from ..weights import DOWNLOAD
from . import schemas
from .auth import token_matches
from .limits import Limits
from .uploads import Upload, receive_upload, too_large
from .workdir import WorkRoot
from .worker import Worker, WorkItem

log = logging.getLogger("think2seg.service")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
OPEN_PATHS = frozenset({"/openapi.json"})
#: how often a waiting /v1/segment checks that its client is still there
DISCONNECT_POLL_S = 0.25
#: routes whose body is a multipart upload (bounded by --max-upload-mb); every other body is small JSON
UPLOAD_PATHS = frozenset({"/v1/segment", "/v1/jobs"})
#: the largest JSON body (a refine's prompts: 1,000 points are about 50 KB)
MAX_JSON_BODY = 1 << 20
#: points (positive and negative together) in one refine: 1,000 take SAM2's decoder well under a second
MAX_REFINE_POINTS = 1000
#: the work root's folder of views kept for refine across restarts (views.DiskViews)
KEPT_VIEWS = "kept-views"


@dataclass
class ServiceConfig:
    token: str
    work_dir: str  # the fixed root of this backend's work folders (see workdir.py)
    limits: Limits = field(default_factory=Limits)
    host: str = "127.0.0.1"
    #: names a client may send in Host besides the loopback names and `host` (a reverse proxy's name)
    allowed_hosts: tuple[str, ...] = ()
    #: answers kept for refine (POST /v1/views/{view_id}/refine): at most this many, this many bytes of pixels
    max_views: int = DEFAULT_MAX_VIEWS
    max_view_bytes: int = DEFAULT_MAX_VIEW_BYTES
    #: views kept on disk (WORK/kept-views) so that a refine works after a restart: this many bytes; 0: none
    view_store_bytes: int = DEFAULT_VIEW_STORE_BYTES
    #: a client that sends nothing of its body for this long is cut (408, connection closed)
    body_timeout_s: float = 30.0


#: The libraries the models are made with. The loading thread imports them first; no route imports them before
#: it has: a route importing transformers while the loader did left the loader a half-made module ("cannot import
#: name 'AutoModelForImageTextToText'", every start whose health was asked in the first second).
MODEL_LIBRARIES = ("torch", "transformers")


def import_model_libraries() -> None:
    import importlib

    for name in MODEL_LIBRARIES:
        importlib.import_module(name)


def library_versions() -> dict[str, str]:
    """Installed versions from the packages' metadata: nothing is imported (safe while the models load)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"think2seg": __version__}
    for name in MODEL_LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


class PipelineHolder:
    """Loads the models once, in the background, so /v1/health answers while they load."""

    def __init__(self, factory: Callable[[], object], model_ids: dict[str, str]):
        self._factory = factory
        self.model_ids = model_ids
        self.pipeline = None
        self.error: Think2SegError | None = None
        self.loaded = threading.Event()
        #: set once the loading thread has imported MODEL_LIBRARIES: from then on a route may use torch
        self.libraries = threading.Event()
        #: the caches' sizes and where they came from (cli.sized_caches), once loaded; {} when not told
        self.caches: dict = {}

    def load(self) -> None:
        try:
            import_model_libraries()
            self.libraries.set()
            self.pipeline = self._factory()
            self.model_ids = dict(self.pipeline.models)
        except Think2SegError as e:
            self.error = e
            log.error("models failed to load: %s", e.message)
        except Exception as e:  # report, don't die: health says what happened
            self.error = Unavailable(f"The models failed to load: {type(e).__name__}: {e}", code="models_failed")
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
            raise Unavailable("The models are still loading; try again in a moment.", code="models_loading")
        return self.pipeline


class Service:
    """The backend's state and the work behind each route."""

    def __init__(self, holder: PipelineHolder, config: ServiceConfig):
        self.holder, self.config, self.limits = holder, config, config.limits
        self.work = WorkRoot(config.work_dir)
        self.worker = Worker(max_waiting=config.limits.max_waiting)
        self._views_folder = self.work.new_folder("views")  # tiled views keep their raster here
        disk = DiskViews(self.work.root / KEPT_VIEWS, config.view_store_bytes)
        self.views = ViewStore(config.max_views, config.max_view_bytes, disk, self._views_folder)

    def begin_stop(self, why: str) -> None:
        """On SIGTERM: take no new work, drop what waits, cancel the running item at its next tile (its
        partial state is removed as it ends); the server then stops within seconds, not after the queue."""
        dropped, running = self.worker.stop_taking()
        log.info(
            "stopping (%s): taking no new work; %d waiting item(s) dropped%s",
            why,
            dropped,
            f", the running {running.kind} {running.id} cancelled at its next tile" if running else "",
        )

    def shutdown(self) -> None:
        self.worker.stop()
        self.views.close()
        self.work.close()

    async def receive(self, request: Request, options: type[SegmentOptions]) -> Upload:
        """Refuse early what cannot run (models not ready, queue full), then read and check the form."""
        self.holder.require()
        self.worker.check_room()
        return await receive_upload(request, options, self.limits, self.work.path)

    def submit(self, upload: Upload, kind: str) -> WorkItem:
        item = WorkItem(lambda it: self.run(it, upload), kind=kind, cleanup=upload.delete)
        try:
            self.worker.submit(item)
            if kind == "job":
                self.work.mark_job(item.id)
            return item
        except Think2SegError:
            upload.delete()
            raise

    def run(self, item: WorkItem, upload: Upload) -> dict:
        """On the worker thread: answer the upload's query (tiled when its plan says so)."""
        from ..georef import untrusted_rasters

        pipeline = self.holder.require()
        try:
            with untrusted_rasters():
                if upload.plan.tiled:
                    return self._run_tiled(item, upload, pipeline)
                if item.cancelled():
                    raise Cancelled("The request was cancelled before it started.")
                item.report(0, 1, "reading and reasoning")
                result = pipeline.segment(
                    str(upload.path), upload.query, upload.options, item.cancelled, reasoning_progress(item)
                )
                self.views.put(
                    View(
                        result.view_id,
                        result.tile,
                        [i.instance for i in result.instances],
                        upload.options.min_area_pixels,
                        upload.options.sam_size,
                    )
                )
                return result.to_dict()
        except Think2SegError as e:
            raise upload.user_error(e) from None
        except OSError as e:
            if not upload.path.exists():  # removed from the work folder while it ran (by hand, or a cleaner)
                raise Think2SegError(
                    "The upload was removed from the backend's work folder while it was read; "
                    "send it again (and keep cleaners away from the work folder)."
                ) from e
            raise

    def _run_tiled(self, item: WorkItem, upload: Upload, pipeline) -> dict:
        from ..tiling import Tiling, segment_raster_tiled

        opts: JobOptions = upload.options  # type: ignore[assignment]  (a tiled plan comes from JobOptions)
        state = self.work.new_folder(f"tiles-{item.id}")
        try:
            result = segment_raster_tiled(
                pipeline,
                str(upload.path),
                [upload.query],
                opts,
                Tiling.from_options(opts),
                state_path=state,
                progress=item.report,
                cancelled=item.cancelled,
                label=upload.name,
            )
            # Keep the raster while its view lives (the upload itself is deleted when the item ends): a refine
            # re-reads the tiles it touches.
            result.view_id = tiled_view_id(result.tile_records)
            kept = self._views_folder / f"{result.view_id}{upload.path.suffix}"
            os.replace(upload.path, kept)
            self.views.put(
                TiledView(
                    result.view_id,
                    str(kept),
                    result.grid,
                    opts.bands,
                    result.features,
                    opts.min_area_pixels,
                    opts.sam_size,
                )
            )
            return result.to_dict()
        finally:
            shutil.rmtree(state, ignore_errors=True)

    async def answer(self, item: WorkItem, request: Request) -> dict:
        """Wait for a synchronous item; if its client leaves first, drop it (before its model work if queued)."""
        future = asyncio.wrap_future(item.future)
        while True:
            done, _ = await asyncio.wait({future}, timeout=DISCONNECT_POLL_S)
            if done:
                return future.result()
            if await request.is_disconnected():
                self.worker.cancel(item.id, client_gone=True)
                log.info("dropped request %s: its client has gone", item.id)
                raise Cancelled("The client has gone.")

    def refine(self, view_id: str, body: RefineRequest) -> WorkItem:
        points = len(body.positive_points) + len(body.negative_points)
        if points > MAX_REFINE_POINTS:
            raise BadPrompt(
                f"This refine has {points:,} points; one refine takes at most {MAX_REFINE_POINTS:,}: "
                "a box and a few points are enough for SAM2."
            )
        view = self.views.get(view_id)
        self.holder.require()

        def run(_item):
            try:
                return refine_view(self.holder.require().segmenter_for(view.sam_size), view, body)
            except OSError:  # rasterio's errors too: a tiled view's raster evicted since `get` (--max-views)
                if isinstance(view, TiledView) and not os.path.exists(view.path):
                    raise NotFound(
                        f"The answer {view_id} is no longer kept (newer answers took its place); "
                        "segment the area again, then refine.",
                        code="view_not_found",
                    ) from None
                raise

        return self.worker.submit(WorkItem(run, kind="refine"))

    def job(self, job_id: str) -> WorkItem:
        item = self.worker.get(job_id)
        if item is None and job_id in self.work.lost:
            raise NotFound(
                f"The job {job_id} was lost: the backend stopped or crashed while it held the job (or "
                "its result), and was started again. Submit the job again.",
                code="job_lost",
            )
        if item is None or item.kind != "job":
            raise NotFound(f"There is no job {job_id} (finished jobs are kept for a while only).", code="job_not_found")
        return item

    def job_result(self, job_id: str) -> dict:
        item = self.job(job_id)
        if item.status == "done":
            return item.result
        if item.exception is not None:  # failed or cancelled: the job's own error, with its own status
            raise item.exception
        raise Conflict(
            f"The job is {item.status} ({item.progress:.0%}); poll /v1/jobs/{job_id} until it is done.",
            code="job_not_finished",
        )

    def health(self) -> dict:
        holder = self.holder
        # torch only once the loader has imported it (PipelineHolder.libraries): until then the device is not known
        device, detail = _device_info() if holder.libraries.is_set() else ("", "")
        body = {
            "status": "ok" if holder.pipeline is not None else ("error" if holder.error else "loading"),
            "device": device,
            "device_detail": detail,
            "models": {**holder.model_ids, "loaded": holder.pipeline is not None},
            # the reasoner's decoding path in use (think2seg.decoding): fast or plain; None while loading
            "decoding": getattr(getattr(holder.pipeline, "reasoner", None), "decoding", None),
            "queue": {
                "running": int(self.worker.running is not None),
                "waiting": self.worker.waiting,
                "max_waiting": self.limits.max_waiting,
                "dropped": self.worker.dropped,
            },
            "versions": library_versions(),
            "limits": dataclasses.asdict(self.limits),
        }
        if holder.error:
            body["error"] = holder.error.to_dict()
        if holder.caches:
            body["caches"] = dict(holder.caches)  # {"embedding_mb", "view_mb", "*_from": set|gpu|default, ...}
        if device.startswith("cuda"):
            from ..gpu_fit import gpu_memory

            body["gpu"] = gpu_memory()  # {"name", "free_mb", "used_mb", "total_mb"}: the panel shows them
        download = DOWNLOAD.to_dict()
        if download is not None and holder.pipeline is None:
            body["download"] = download  # first-use weights on their way: the plugin shows MB and %
        return body


#: of a one-image job's bar: the reasoning's tokens (of their budget) move it this far; SAM2 and the answer after
REASONING_SHARE = 0.9


def reasoning_progress(item: WorkItem) -> Callable[[int, int], None]:
    """`Pipeline.segment`'s `on_token` for a job: the bar and the message move with every token the reasoner
    writes (on a CPU an answer takes minutes), as tokens of their budget (the answer usually ends well before)."""

    def on_token(n: int, budget: int) -> None:
        item.report(
            REASONING_SHARE * min(n, budget),
            max(1, budget),
            f"reasoning: {tokens_text(n)} of at most {budget}",
        )

    return on_token


def _device_info() -> tuple[str, str]:
    import torch

    if torch.cuda.is_available():
        i = torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(i)
        return f"cuda:{i}", f"{torch.cuda.get_device_name(i)} ({free / 2**30:.1f} of {total / 2**30:.1f} GiB free)"
    return "cpu", f"CPU ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"


# -- routes: each one line or two over Service ---------------------------------------------------------------
router = APIRouter(responses=schemas.errors(*schemas.COMMON))


def service_of(request: Request) -> Service:
    return request.app.state.service


@router.get("/v1/health", responses={200: {"model": schemas.Health}})
async def health(request: Request) -> dict:
    return service_of(request).health()


@router.post(
    "/v1/segment",
    openapi_extra=schemas.form_body(SegmentOptions),
    responses={200: {"model": schemas.SegmentAnswer}, **schemas.errors(*schemas.SUBMIT, 507)},
)
async def segment(request: Request) -> dict:
    service = service_of(request)
    item = service.submit(await service.receive(request, SegmentOptions), kind="segment")
    return await service.answer(item, request)


@router.post(
    "/v1/jobs",
    status_code=202,
    openapi_extra=schemas.form_body(JobOptions),
    responses={202: {"model": schemas.JobAccepted}, **schemas.errors(*schemas.SUBMIT)},
)
async def submit_job(request: Request) -> JSONResponse:
    service = service_of(request)
    item = service.submit(await service.receive(request, JobOptions), kind="job")
    return JSONResponse(status_code=202, content={"job_id": item.id, "status": item.status})


@router.get("/v1/jobs/{job_id}", responses={200: {"model": schemas.JobStatus}, **schemas.errors(404)})
async def job_status(job_id: str, request: Request) -> dict:
    return service_of(request).job(job_id).to_dict()


@router.get(
    "/v1/jobs/{job_id}/result",
    responses={200: {"model": schemas.SegmentAnswer}, **schemas.errors(404, 409, 422, 503, 507)},
)
async def job_result(job_id: str, request: Request) -> dict:
    return service_of(request).job_result(job_id)


@router.delete("/v1/jobs/{job_id}", responses={200: {"model": schemas.JobStatus}, **schemas.errors(404)})
async def cancel_job(job_id: str, request: Request) -> dict:
    service = service_of(request)
    return service.worker.cancel(service.job(job_id).id).to_dict()


# -- the guard and the error answers -------------------------------------------------------------------------
@router.post(
    "/v1/views/{view_id}/refine",
    responses={200: {"model": schemas.RefineAnswer}, **schemas.errors(400, 404, 422, 429, 503, 507)},
)
async def refine(view_id: str, body: RefineRequest, request: Request) -> dict:
    """Re-segment one instance of an answer from a box and positive/negative points: SAM2's decoder on the
    answer's cached embedding, no reasoner (docs/api.md)."""
    service = service_of(request)
    return await service.answer(service.refine(view_id, body), request)


def error_response(e: Think2SegError) -> JSONResponse:
    return JSONResponse(status_code=e.http_status, content={"error": e.to_dict()}, headers=e.headers())


_HOST = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._-]+))(?::(?P<port>[0-9]{1,5}))?")


def host_name(host_header: str) -> str | None:
    """`example.org:8765` -> `example.org`, `[::1]:8765` -> `::1`; None for anything that is not exactly
    host[:port] (`localhost:80@evil.com`, `[::1]evil.com`, a bare `::1`)."""
    m = _HOST.fullmatch(host_header.strip().lower())
    if m is None or (m["port"] is not None and not 0 < int(m["port"]) < 65536):
        return None
    return m["v6"] or m["name"]


def has_body(headers: dict[str, str]) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("", "0")


class Guard:
    """ASGI middleware run before any route: the Host header (DNS rebinding), the token, the declared size;
    then the body, counted while it streams and cut at its cap (an upload's, or MAX_JSON_BODY), with a
    timeout between its parts. An answer sent before the whole body was read says `Connection: close`, so the
    server closes the connection instead of reading (and discarding) whatever the client still sends."""

    def __init__(self, app, config: ServiceConfig):
        self.app, self.config = app, config
        # a configured IPv6 address comes bare (`fd00::5`); clients send it in brackets (`[fd00::5]:8765`)
        names = {
            h.strip().lower() if h.count(":") > 1 and not h.startswith("[") else host_name(h)
            for h in (config.host, *config.allowed_hosts)
        }
        self.hosts = LOOPBACK_NAMES | (names - {None})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        body_done = not has_body(headers)

        async def send_closing(message):
            if message["type"] == "http.response.start" and not body_done:
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*kept, (b"connection", b"close")]}
            await send(message)

        if (e := self.refusal(scope, headers)) is not None:
            return await error_response(e)(scope, receive, send_closing)
        limits = self.config.limits
        cap = limits.max_upload_bytes + (1 << 20) if scope["path"] in UPLOAD_PATHS else MAX_JSON_BODY
        received = 0

        async def receive_bounded():
            nonlocal body_done, received
            if body_done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.config.body_timeout_s)
            except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                raise RequestTimeout(
                    f"The request's body stopped arriving for {self.config.body_timeout_s:g} s; send it again."
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise (
                        too_large(limits)
                        if cap > MAX_JSON_BODY
                        else TooLarge(
                            f"The request body is over {MAX_JSON_BODY >> 20} MiB; a JSON body here is a few KB."
                        )
                    )
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        await self.app(scope, receive_bounded, send_closing)

    def refusal(self, scope, headers: dict[str, str]) -> Think2SegError | None:
        if host_name(headers.get("host", "")) not in self.hosts:
            return WrongHost(
                "This backend answers requests for localhost (or the host it was started for) only; check the URL."
            )
        if scope["path"] in OPEN_PATHS:
            return None
        if not token_matches(headers.get("authorization"), self.config.token):
            return Unauthorized(
                "Missing or wrong token: send `Authorization: Bearer TOKEN` with the token from the "
                "backend's token file."
            )
        length = headers.get("content-length", "")
        limits = self.config.limits
        if scope["method"] == "POST" and length.isdigit() and int(length) > limits.max_upload_bytes + (1 << 20):
            return too_large(limits, int(length))
        return None


def field_name(loc) -> str:
    """FastAPI's error location ('body', 'positive_points', 0, 1) -> `positive_points[0][1]`."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "the body"


def validation_error(e: RequestValidationError) -> BadRequest:
    errors = e.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        err = next(err for err in errors if err.get("type") == "json_invalid")
        why = (err.get("ctx") or {}).get("error", "not JSON")
        return BadRequest(f"The body is not valid JSON ({why}); send a JSON object (see docs/api.md).")
    fields = "; ".join(f"`{field_name(err.get('loc', ()))}`: {err.get('msg', 'invalid')}" for err in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return BadRequest(f"The request is missing or has bad fields: {fields}{more}.")


def http_error(request: Request, e: StarletteHTTPException) -> Think2SegError:
    if isinstance(e.__cause__, Think2SegError):  # raised while FastAPI read the body (our cap, our timeout)
        return e.__cause__
    if e.status_code == 404:
        return NotFound(f"There is no route {request.url.path}; see docs/api.md for the API.")
    if e.status_code == 405:
        return MethodNotAllowed(
            f"{request.url.path} does not take {request.method}; see docs/api.md.",
            allow=(e.headers or {}).get("Allow", ""),
        )
    if e.status_code == 400:
        cause = e.__cause__
        why = "nested too deeply" if isinstance(cause, RecursionError) else (scrub_paths(str(cause)) if cause else "")
        return BadRequest(
            f"The body is not valid JSON{f' ({why})' if why else ''}; send a JSON object (see docs/api.md)."
        )
    err = Think2SegError(scrub_paths(str(e.detail)), code="internal")
    err.http_status = e.status_code if 400 <= e.status_code < 600 else 500
    return err


def install_error_answers(app: FastAPI) -> None:
    @app.exception_handler(Think2SegError)
    async def _think2seg_error(request: Request, e: Think2SegError):
        return error_response(e)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        return error_response(validation_error(e))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        return error_response(http_error(request, e))

    @app.exception_handler(Exception)
    async def _any_error(request: Request, e: Exception):
        log.exception("unhandled error")
        return error_response(Think2SegError(scrub_paths(f"The backend failed: {type(e).__name__}: {e}")))


def create_app(holder: PipelineHolder, config: ServiceConfig) -> FastAPI:
    service = Service(holder, config)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        service.shutdown()

    # /docs and /redoc are off: they load their JavaScript from a CDN (broken offline); /openapi.json stays.
    app = FastAPI(
        title="Think2Seg backend",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Reasoning segmentation of georeferenced rasters. See docs/api.md.",
    )
    app.state.service = service
    app.add_middleware(Guard, config=config)
    install_error_answers(app)
    app.include_router(router)
    return app

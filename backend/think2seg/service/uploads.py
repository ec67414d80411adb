"""Receiving a segment/job form: the body bounded while it streams, every field checked before the upload
is kept, the raster's header checked against the limits; on any error nothing stays on disk."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from ..errors import BadInput, BadRequest, DiskFull, Think2SegError, TooLarge
from ..options import SegmentOptions, parse_options
from .header import Block, check_block, check_tiff
from .limits import Limits, ReadPlan, plan_read

#: room for the form's own bytes (boundaries, the query, the options) above the image's limit
FORM_OVERHEAD = 1024 * 1024
#: `options` is a handful of fields: text longer or deeper than this is refused before it is used
MAX_OPTIONS_CHARS = 64 * 1024
MAX_OPTIONS_DEPTH = 32


@dataclass
class Upload:
    path: Path
    name: str  # the client's file name, shown instead of our temporary path
    query: str
    options: SegmentOptions
    plan: ReadPlan

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)

    def user_error(self, e: Think2SegError) -> Think2SegError:
        """The error with "the uploaded file (NAME)" in place of our temporary path."""
        e.message = e.message.replace(str(self.path), f"the uploaded file ({self.name})")
        return e


def too_large(limits: Limits, received: int | None = None) -> TooLarge:
    size = f"The upload is {received / 2**20:.0f} MiB" if received else "The upload is"
    return TooLarge(
        f"{size} over the {limits.max_upload_mb} MiB limit: read a smaller area or start the backend "
        "with a larger --max-upload-mb."
    )


async def bounded(stream: AsyncIterator[bytes], limit: int, limits: Limits) -> AsyncIterator[bytes]:
    """The request body, cut off with TooLarge as soon as it passes `limit` bytes (chunked bodies too)."""
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise too_large(limits)
        yield chunk


class WorkFolderParser(MultiPartParser):
    """Spools the image straight into the work folder, once (starlette's parser spools it in the system's
    temporary folder, and the upload was then copied: twice its size on disk, in a folder the user did not
    choose). The spool file has no name once it is closed; `keep_upload` links the kept upload to it."""

    def __init__(self, *args, folder: Path, **kw):
        super().__init__(*args, **kw)
        self.folder = folder

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        part = self._current_part
        if part.file is not None:
            spool = tempfile.NamedTemporaryFile(prefix="spool-", suffix=".upload", dir=self.folder)  # noqa: SIM115
            part.file.file.close()  # starlette's in-memory spool, still empty
            self._files_to_close_on_error[-1] = spool
            part.file.file = spool


def disk_error(e: OSError, folder: Path) -> Think2SegError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        root = folder.parent if folder.name.startswith("run-") else folder
        return DiskFull(
            f"The disk of the work folder {root} is full: free space there or start the backend with "
            "another --work-dir."
        )
    return Think2SegError(f"The backend could not write the upload to its work folder ({e.strerror}).")


async def receive_upload(request: Request, options_model: type[SegmentOptions], limits: Limits, folder: Path) -> Upload:
    """Parse the form, check query and options, save the image in `folder`, check its header."""
    from ..options import check_query

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest("Send a multipart form with an `image` file and a `query` (see docs/api.md).")
    parser = WorkFolderParser(
        request.headers,
        bounded(request.stream(), limits.max_upload_bytes + FORM_OVERHEAD, limits),
        max_files=1,
        max_fields=4,
        folder=folder,
    )
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise BadRequest(f"The request is not a valid multipart form ({e.message}).") from e
    except OSError as e:
        raise disk_error(e, folder) from None
    try:
        image, query, raw_options = form.get("image"), form.get("query"), form.get("options")
        if not isinstance(image, UploadFile):
            raise BadRequest("The form has no `image` file.")
        if not isinstance(query, str):
            raise BadRequest("The form has no `query` text.")
        query = check_query(query)
        options = parse_options(options_model, parse_json_object(raw_options))
        return await keep_upload(image, query, options, limits, folder)
    finally:
        await form.close()


def json_depth(value) -> int:
    """How deeply lists and objects nest in `value`, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            if d <= MAX_OPTIONS_DEPTH:
                stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def parse_json_object(raw) -> dict:
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, str):
        raise BadRequest("`options` must be JSON text, not a file.")
    if len(raw) > MAX_OPTIONS_CHARS:
        raise BadRequest(f"`options` is {len(raw):,} characters; the options fit in a few hundred.")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise BadRequest(f"`options` is nested too deeply (more than {MAX_OPTIONS_DEPTH} levels).") from None
    except ValueError as e:
        raise BadRequest(f"`options` must be a JSON object ({e}).") from e
    if json_depth(value) > MAX_OPTIONS_DEPTH:
        raise BadRequest(f"`options` is nested too deeply (more than {MAX_OPTIONS_DEPTH} levels).")
    if not isinstance(value, dict):
        raise BadRequest(f"`options` must be a JSON object, not {type(value).__name__}.")
    return value


def check_header(path: Path, options: SegmentOptions, limits: Limits) -> ReadPlan:
    """Every declared size that decides an allocation, from the header, before any pixel is read."""
    from ..georef import choose_bands, open_raster, untrusted_rasters

    check_tiff(path, limits.max_source_pixels, limits.max_block_bytes, limits.max_ifds)
    with untrusted_rasters(), open_raster(path) as ds:
        if ds.count > limits.max_bands:
            raise BadInput(
                f"This raster declares {ds.count:,} bands; this backend reads rasters of at most "
                f"{limits.max_bands:,}: keep the bands you need (gdal_translate -b).",
                code="raster_too_large",
            )
        sample_bytes = max(np.dtype(t).itemsize for t in ds.dtypes)
        interleaved = ds.count if (ds.interleaving is not None and ds.interleaving.name == "PIXEL") else 1
        for h, w in set(ds.block_shapes):  # every format, not only TIFF (GDAL's own block sizes)
            check_block(Block(w, h, interleaved, sample_bytes), limits.max_source_pixels, limits.max_block_bytes)
        choose_bands(ds, options.bands)
        return plan_read(ds.width, ds.height, ds.transform, options, limits)


async def keep_upload(image: UploadFile, query: str, options: SegmentOptions, limits: Limits, folder: Path) -> Upload:
    # our own name: the client's suffix is not trusted (GDAL picks the format from the bytes anyway)
    upload = Upload(
        folder / f"{uuid.uuid4().hex}.upload", image.filename or "upload", query, options, ReadPlan(tiled=False)
    )
    spool = image.file
    try:
        spool.flush()
        size = os.fstat(spool.fileno()).st_size
        if size > limits.max_upload_bytes:
            raise too_large(limits, size)
        if size == 0:
            raise BadInput("The uploaded image is empty.", code="not_a_raster")
        try:
            os.link(spool.name, upload.path)  # the spooled bytes, kept under our name: no second copy
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            shutil.copyfile(spool.name, upload.path)  # a file system without hard links
        # GDAL's header work can take seconds (a long IFD chain): in a thread, so health and auth stay responsive
        upload.plan = await asyncio.to_thread(check_header, upload.path, options, limits)
        return upload
    except Think2SegError as e:
        upload.delete()
        raise upload.user_error(e) from None
    except OSError as e:
        upload.delete()
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_error(e, folder) from None
        raise
    except BaseException:
        upload.delete()
        raise

"""The one run path, shared by the panel (in a QgsTask) and Processing: plan the area, export it, send it as a
backend job, poll it. The callers then build the same features from the answer (layers.py).

Planning: the area is read at full resolution up to ``tiled_max_size`` pixels on its long side (resampled
beyond). When the result is larger than ``max_size``, the backend tiles it (``tile_size``/``overlap`` options
of the jobs API) so that no single model read exceeds ``max_size``; otherwise the image goes as one read.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from qgis.core import QgsGeometry, QgsMessageLog, QgsRectangle, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .client import BackendClient
from .errors import CANCELLED, INTERNAL, Think2SegError
from .export import ExportedRaster, RasterSource, export_raster_area
from .i18n import tr
from .segmentation import Progress, SegmentationOptions, cancelled_error, run_segmentation
from .settings import DEFAULT_EXPORT_MAX_SIZE, DEFAULT_TILE_OVERLAP, DEFAULT_TILE_SIZE, DEFAULT_TILED_MAX_SIZE

LOG_TAG = "Think2Seg"
EXPORT_SHARE = 0.1  # of the progress bar: reading the area; the rest is the backend's job


@dataclass
class SegmentationRequest:
    query: str
    source: RasterSource
    area: QgsRectangle  # in the raster's CRS
    options: SegmentationOptions
    url: str
    token: str
    connect_timeout: float = 5.0
    request_timeout: float = 900.0
    max_size: int = DEFAULT_EXPORT_MAX_SIZE  # the largest single read the model gets
    tiled_max_size: int = DEFAULT_TILED_MAX_SIZE  # the largest area read at full resolution (then tiled)
    clip_geometry: QgsGeometry | None = None


@dataclass
class TaskOutcome:
    request: SegmentationRequest
    answer: dict | None = None
    error: Think2SegError | None = None
    exported: ExportedRaster | None = None
    extra: dict = field(default_factory=dict)

    @property
    def cancelled(self) -> bool:
        return self.error is not None and self.error.code == CANCELLED

    @property
    def tiled(self) -> bool:
        return bool(self.extra.get("tiled"))


def plan_options(request: SegmentationRequest, exported: ExportedRaster) -> SegmentationOptions:
    """The request's options for this exported image: tiled by the backend when it is larger than max_size."""
    options = replace(request.options)
    if not options.bands and exported.bands:
        options.bands = list(exported.bands)
    # The bound is the model's largest read whether or not the backend tiles (its own default may be smaller).
    options.max_read_size = request.max_size
    if max(exported.width, exported.height) > request.max_size:
        options.tile_size = min(DEFAULT_TILE_SIZE, request.max_size)
        options.overlap = min(DEFAULT_TILE_OVERLAP, options.tile_size // 8)
    return options


def run_request(
    request: SegmentationRequest,
    work_dir: str,
    progress: Progress,
    is_cancelled: Callable[[], bool],
    outcome: TaskOutcome | None = None,
) -> TaskOutcome:
    """Export, send, poll: fills and returns ``outcome`` (answer, exported); raises Think2SegError."""
    outcome = outcome or TaskOutcome(request)
    progress(0.0, tr("Reading “{layer}”…").format(layer=request.source.name))
    exported = export_raster_area(
        request.source, request.area, f"{work_dir}/area.tif", max(request.tiled_max_size, request.max_size),
        is_cancelled,
    )  # fmt: skip
    outcome.exported = exported
    if is_cancelled():
        raise cancelled_error()
    options = plan_options(request, exported)
    outcome.extra["tiled"] = bool(options.tile_size)
    if options.tile_size:
        sending = tr("Sending {w} × {h} px to the backend, which reads it in {tile} px tiles…").format(
            w=exported.width, h=exported.height, tile=options.tile_size
        )
    else:
        sending = tr("Sending {w} × {h} px to the backend…").format(w=exported.width, h=exported.height)
    progress(EXPORT_SHARE, sending)
    client = BackendClient(request.url, request.token, request.connect_timeout, request.request_timeout)

    def job_progress(fraction: float, message: str) -> None:
        progress(EXPORT_SHARE + (1 - EXPORT_SHARE) * max(0.0, min(1.0, fraction)), message)

    outcome.answer = run_segmentation(client, exported.path, request.query, options, job_progress, is_cancelled)
    return outcome


class SegmentationTask(QgsTask):
    """A QgsTask that can be cancelled at any point: during the export, the upload or the model's work."""

    status_message = pyqtSignal(str)

    def __init__(self, request: SegmentationRequest, on_done: Callable[[TaskOutcome], None]):
        super().__init__(f"Think2Seg: {request.query[:60]}", QgsTask.Flag.CanCancel)
        self.request = request
        self.on_done = on_done
        self.outcome = TaskOutcome(request)
        self._work_dir = tempfile.mkdtemp(prefix="think2seg_")

    def run(self) -> bool:
        try:
            run_request(self.request, self._work_dir, self._progress, self.isCanceled, self.outcome)
            return True
        except Think2SegError as error:
            # A request that fails after the user pressed Cancel (the upload in flight) ends as the cancel it is.
            self.outcome.error = cancelled_error() if self.isCanceled() else error
            return False  # QgsTask has no cancelled state: a cancelled task ends Terminated, as QGIS's own do
        except Exception as error:  # noqa: BLE001 - a task must report, never raise into the task manager
            if self.isCanceled():
                self.outcome.error = cancelled_error()
                return False
            QgsMessageLog.logMessage(tr("Unexpected error: {error}").format(error=repr(error)), LOG_TAG)
            self.outcome.error = Think2SegError(
                INTERNAL, tr("Unexpected error in the Think2Seg task: {error}").format(error=error)
            )
            return False

    def _progress(self, fraction: float, message: str) -> None:
        self.setProgress(100.0 * max(0.0, min(1.0, fraction)))
        if message:
            self.status_message.emit(message)

    def finished(self, result: bool) -> None:  # main thread
        if not result and self.outcome.error is None:
            self.outcome.error = (
                cancelled_error() if self.isCanceled() else Think2SegError(INTERNAL, tr("The task failed."))
            )
        shutil.rmtree(self._work_dir, ignore_errors=True)
        try:
            self.on_done(self.outcome)
        except Exception as error:  # noqa: BLE001 - keep QGIS alive; say what happened
            QgsMessageLog.logMessage(tr("Could not show the result: {error}").format(error=repr(error)), LOG_TAG)

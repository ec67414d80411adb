"""The panel's background work: export the area, send it, wait for the answer. Never blocks QGIS."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from qgis.core import QgsGeometry, QgsMessageLog, QgsRectangle, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .client import BackendClient
from .errors import CANCELLED, INTERNAL, Think2SegError
from .export import ExportedRaster, RasterSource, export_raster_area
from .segmentation import SegmentationOptions, cancelled_error, run_segmentation

LOG_TAG = "Think2Seg"


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
    max_size: int = 2048
    use_jobs: bool = True
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
        request = self.request
        try:
            self.status_message.emit(f"Reading “{request.source.name}”…")
            exported = export_raster_area(
                request.source,
                request.area,
                f"{self._work_dir}/area.tif",
                request.max_size,
                self.isCanceled,
            )
            self.outcome.exported = exported
            if self.isCanceled():
                raise cancelled_error()
            self.setProgress(10.0)
            self.status_message.emit(f"Sending {exported.width} × {exported.height} px to the backend…")
            client = BackendClient(
                request.url, request.token, request.connect_timeout, request.request_timeout
            )
            options = SegmentationOptions(**{**request.options.__dict__})
            if not options.bands and exported.bands:
                options.bands = exported.bands
            self.outcome.answer = run_segmentation(
                client,
                exported.path,
                request.query,
                options,
                self._progress,
                self.isCanceled,
                use_jobs=request.use_jobs,
            )
            return True
        except Think2SegError as error:
            self.outcome.error = error
            return False
        except Exception as error:  # noqa: BLE001 - a task must report, never raise into the task manager
            QgsMessageLog.logMessage(f"Unexpected error: {error!r}", LOG_TAG)
            self.outcome.error = Think2SegError(
                INTERNAL, f"Unexpected error in the Think2Seg task: {error}"
            )
            return False

    def _progress(self, fraction: float, message: str) -> None:
        self.setProgress(10.0 + 90.0 * max(0.0, min(1.0, fraction)))
        if message:
            self.status_message.emit(message)

    def finished(self, result: bool) -> None:  # main thread
        if not result and self.outcome.error is None:
            self.outcome.error = (
                cancelled_error() if self.isCanceled() else Think2SegError(INTERNAL, "The task failed.")
            )
        shutil.rmtree(self._work_dir, ignore_errors=True)
        try:
            self.on_done(self.outcome)
        except Exception as error:  # noqa: BLE001 - keep QGIS alive; say what happened
            QgsMessageLog.logMessage(f"Could not show the result: {error!r}", LOG_TAG)

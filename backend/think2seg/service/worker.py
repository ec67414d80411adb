"""One worker thread owns the models: GPU work runs one item at a time, requests and jobs queue.

A synchronous request waits on its item's future; a job is polled. Cancelling a queued item drops it;
cancelling a running one sets a flag the pipeline checks between tiles.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..errors import Cancelled, Think2SegError

log = logging.getLogger("think2seg.service")


@dataclass
class WorkItem:
    fn: Callable[[WorkItem], Any]  # called on the worker thread with the item (for progress and cancel)
    kind: str = "segment"
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    status: str = "queued"  # queued | running | done | failed | cancelled
    progress: float = 0.0
    message: str = "waiting for the GPU"
    error: dict | None = None
    result: Any = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    future: Future = field(default_factory=Future)

    def report(self, done: int, total: int, message: str = "") -> None:
        self.progress = done / total if total else 0.0
        if message:
            self.message = message

    def cancelled(self) -> bool:
        return self.cancel_requested.is_set()

    def to_dict(self) -> dict:
        return {"job_id": self.id, "status": self.status, "progress": round(self.progress, 4),
                "message": self.message, "error": self.error}


class Worker:
    """Serialises model work; keeps the last `keep` finished jobs for polling."""

    def __init__(self, keep: int = 100):
        self._queue: queue.Queue[WorkItem | None] = queue.Queue()
        self._items: dict[str, WorkItem] = {}
        self._order = itertools.count()
        self._keep = keep
        self._lock = threading.Lock()
        self.running: WorkItem | None = None
        self._thread = threading.Thread(target=self._loop, name="think2seg-worker", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def submit(self, item: WorkItem) -> WorkItem:
        with self._lock:
            self._items[item.id] = item
            self._trim()
        self._queue.put(item)
        return item

    def get(self, item_id: str) -> WorkItem | None:
        return self._items.get(item_id)

    def cancel(self, item_id: str) -> WorkItem | None:
        item = self._items.get(item_id)
        if item is None:
            return None
        item.cancel_requested.set()
        if item.status == "queued":
            item.status, item.message = "cancelled", "cancelled before it started"
            if not item.future.done():
                item.future.set_exception(Cancelled("The job was cancelled."))
        elif item.status == "running":
            item.message = "cancelling at the next tile boundary"
        return item

    def stop(self) -> None:
        self._queue.put(None)

    def _trim(self) -> None:
        finished = [i for i in self._items.values() if i.status in ("done", "failed", "cancelled")]
        for old in sorted(finished, key=lambda i: i.created)[: max(0, len(finished) - self._keep)]:
            self._items.pop(old.id, None)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if item.status == "cancelled":
                continue
            self.running = item
            item.started = time.time()
            item.status, item.message = "running", "running"
            try:
                item.result = item.fn(item)
                if isinstance(item.result, dict) and isinstance(item.result.get("timings"), dict):
                    item.result["timings"]["queue"] = item.started - item.created
                item.status, item.progress, item.message = "done", 1.0, "done"
                item.future.set_result(item.result)
            except Cancelled as e:
                item.status, item.message, item.error = "cancelled", "cancelled", e.to_dict()
                item.future.set_exception(e)
            except Think2SegError as e:
                item.status, item.message, item.error = "failed", e.message, e.to_dict()
                item.future.set_exception(e)
            except Exception as e:  # the service must outlive any one request
                err = classify_exception(e)
                log.error("work item %s failed:\n%s", item.id, traceback.format_exc())
                item.status, item.message, item.error = "failed", err.message, err.to_dict()
                item.future.set_exception(err)
            finally:
                self.running = None


def classify_exception(e: Exception) -> Think2SegError:
    """Turn an unexpected exception into an error with a code; GPU memory gets its own sentence."""
    import torch

    if isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower():
        try:
            torch.cuda.empty_cache()
        except Exception:
            pass
        err = Think2SegError(
            "The GPU ran out of memory: read a smaller area, lower the reasoning budget, or use a smaller SAM2.",
            code="out_of_memory",
        )
        err.http_status = 507
        return err
    return Think2SegError(f"The backend failed: {type(e).__name__}: {e}", code="internal")

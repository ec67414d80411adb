"""One worker thread owns the models: GPU work runs one item at a time, requests and jobs queue.

A synchronous request waits on its item's future; a job is polled. At most `max_waiting` items wait: beyond
that `submit` raises QueueFull (HTTP 429 with Retry-After). Cancelling a queued item drops it (and runs its
cleanup, which deletes its upload); cancelling a running one sets a flag the pipeline checks between tiles.
Every item's cleanup runs exactly once, however it ends.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..errors import Cancelled, DiskFull, OutOfMemory, QueueFull, Think2SegError, Unavailable, scrub_paths

log = logging.getLogger("think2seg.service")
FINISHED = ("done", "failed", "cancelled")
#: the most a running item reports (what is left: the merge, the answer)
MAX_RUNNING_PROGRESS = 0.99


@dataclass
class WorkItem:
    fn: Callable[[WorkItem], Any]  # called on the worker thread with the item (for progress and cancel)
    kind: str = "segment"
    cleanup: Callable[[], None] | None = None  # deletes what the item owns (its upload); runs once, at its end
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    status: str = "queued"  # queued | running | done | failed | cancelled
    progress: float = 0.0
    message: str = "waiting for the GPU"
    exception: Think2SegError | None = None  # why it failed or was cancelled, with its HTTP status
    result: Any = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    future: Future = field(default_factory=Future)
    _cleaned: bool = False

    @property
    def error(self) -> dict | None:
        return self.exception.to_dict() if self.exception else None

    def report(self, done: float, total: int, message: str = "") -> None:
        """Progress as `done` of `total` steps (a tiled job: tiles), held below 1 (1 is done: the item's end
        sets it; a tiled job still merges after its last tile)."""
        self.progress = min(done / total, MAX_RUNNING_PROGRESS) if total else 0.0
        if message and not self.cancel_requested.is_set():  # "cancelling…" stays until the job stops
            self.message = message

    def cancelled(self) -> bool:
        return self.cancel_requested.is_set()

    def finish(self, status: str, message: str, exception: Think2SegError | None = None) -> None:
        self.status, self.message, self.exception = status, message, exception
        if not self.future.done():
            if exception is None:
                self.future.set_result(self.result)
            else:
                self.future.set_exception(exception)
        self.run_cleanup()

    def run_cleanup(self) -> None:
        if self.cleanup is not None and not self._cleaned:
            self._cleaned = True
            try:
                self.cleanup()
            except Exception:  # a file that will not go must not keep the item from finishing
                log.exception("cleanup of work item %s failed", self.id)

    def to_dict(self) -> dict:
        return {
            "job_id": self.id,
            "status": self.status,
            "progress": round(self.progress, 4),
            "message": self.message,
            "error": self.error,
        }


class Worker:
    """Serialises model work; keeps the last `keep` finished jobs for polling; bounds the waiting items."""

    def __init__(self, keep: int = 100, max_waiting: int = 16):
        self._queue: queue.Queue[WorkItem | None] = queue.Queue()
        self._items: dict[str, WorkItem] = {}
        self._order = itertools.count()
        self._keep = keep
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._waiting = 0
        self._last_duration = 5.0
        self.dropped = 0  # synchronous requests dropped before their model work because their client left
        self.running: WorkItem | None = None
        self.stopping = False  # set by stop_taking (SIGTERM): no new item is accepted
        self._thread = threading.Thread(target=self._loop, name="think2seg-worker", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self._waiting

    def check_room(self) -> None:
        """Raise QueueFull when no item may be added (asked before an upload is read, and again at submit)."""
        if self.stopping:
            raise Unavailable("The backend is stopping; start it again, then send the request again.", code="stopping")
        if self._waiting >= self.max_waiting:
            retry = min(600, round(self._last_duration * max(1, self._waiting)))
            raise QueueFull(
                f"The backend has {self._waiting} requests waiting (the limit is {self.max_waiting}); "
                f"try again in about {retry} s.",
                retry_after=retry,
            )

    def submit(self, item: WorkItem) -> WorkItem:
        with self._lock:
            self.check_room()
            self._waiting += 1
            self._items[item.id] = item
            self._trim()
        self._queue.put(item)
        return item

    def get(self, item_id: str) -> WorkItem | None:
        return self._items.get(item_id)

    def cancel(self, item_id: str, client_gone: bool = False) -> WorkItem | None:
        item = self._items.get(item_id)
        if item is None:
            return None
        item.cancel_requested.set()
        with self._lock:
            queued = item.status == "queued"
            if queued:
                item.status = "cancelled"
                self._waiting -= 1
                self.dropped += client_gone
        if queued:
            item.finish("cancelled", "cancelled before it started", Cancelled("The job was cancelled."))
        elif item.status == "running":
            item.message = "cancelling (at the next token the reasoner writes, or the next tile)"
        return item

    def stop_taking(self) -> tuple[int, WorkItem | None]:
        """Take no new item, drop what waits, ask the running item to stop at its next tile: (dropped, running)."""
        self.stopping = True
        waiting = [i for i in list(self._items.values()) if i.status == "queued"]
        for item in waiting:
            self.cancel(item.id)
        running = self.running
        if running is not None:
            self.cancel(running.id)
        return len(waiting), running

    def stop(self, timeout: float = 10.0) -> None:
        """Drop what waits, ask the running item to stop, and wait a while for it (shutdown)."""
        for item in list(self._items.values()):
            self.cancel(item.id)
        self._queue.put(None)
        self._thread.join(timeout)

    def _trim(self) -> None:
        finished = [i for i in self._items.values() if i.status in FINISHED]
        for old in sorted(finished, key=lambda i: i.created)[: max(0, len(finished) - self._keep)]:
            self._items.pop(old.id, None)

    def _take(self) -> WorkItem | None:
        """The next item to run (None: stop), skipping the ones cancelled while they waited."""
        while True:
            item = self._queue.get()
            if item is None:
                return None
            with self._lock:
                if item.status == "cancelled":
                    continue
                self._waiting -= 1
                item.status, item.message, item.started = "running", "running", time.time()
                self.running = item
                return item

    def _loop(self) -> None:
        while (item := self._take()) is not None:
            try:
                item.result = item.fn(item)
                if isinstance(item.result, dict) and isinstance(item.result.get("timings"), dict):
                    item.result["timings"]["queue"] = item.started - item.created
                item.progress = 1.0
                item.finish("done", "done")
            except Cancelled as e:
                item.finish("cancelled", "cancelled", e)
            except Think2SegError as e:
                item.finish("failed", e.message, e)
            except Exception as e:  # the service must outlive any one request
                err = classify_exception(e)
                log.error("work item %s failed:\n%s", item.id, traceback.format_exc())
                item.finish("failed", err.message, err)
            finally:
                self._last_duration = max(1.0, time.time() - item.started)
                self.running = None


def classify_exception(e: Exception) -> Think2SegError:
    """Turn an unexpected exception into an error with a code; GPU memory gets its own sentence."""
    import torch

    if isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower():
        try:
            torch.cuda.empty_cache()
        except Exception:
            pass
        return OutOfMemory(
            "The GPU ran out of memory: read a smaller area, lower the reasoning budget, or use a smaller SAM2."
        )
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" ({os.path.dirname(e.filename)})" if isinstance(e.filename, str) else ""
        return DiskFull(
            f"The disk the backend writes to{where} is full: free space there or start the backend "
            "with another --work-dir."
        )
    return Think2SegError(scrub_paths(f"The backend failed: {type(e).__name__}: {e}"), code="internal")

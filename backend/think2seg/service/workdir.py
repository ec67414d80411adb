"""The service's work folder: uploads and tile state live in ROOT/run-PID-XXXX, removed at shutdown.

ROOT is fixed per backend (`serve --work-dir`, default beside the token file), so a backend killed with
SIGKILL leaves its run folder where the next start finds it. Each run folder has a lock file the running
backend holds (flock: the kernel releases it when the process dies, however it dies); at start, under a
lock on ROOT, every run folder whose lock is free is removed. Two backends sharing ROOT therefore never
delete each other's files.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..errors import BadInput

log = logging.getLogger("think2seg.service")
RUN_PREFIX = "run-"
#: ROOT/lost-jobs: ids of jobs a stopped or crashed backend held (each run folder marks its jobs in jobs/)
LOST_FILE = "lost-jobs"
KEEP_LOST = 1000
JOB_ID = re.compile(r"[0-9a-f]{16}")


def _try_lock(path: Path):
    """An open file holding an exclusive lock on `path`, or None when another process holds it."""
    f = open(path, "a+")  # noqa: SIM115 (held for the process's life)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


class WorkRoot:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise BadInput(
                f"Cannot create the work folder {self.root} ({e.strerror}): give a writable --work-dir.",
                code="bad_work_dir",
            ) from e
        with open(self.root / ".scan.lock", "a+") as scan:
            fcntl.flock(scan, fcntl.LOCK_EX)  # one backend at a time clears stale runs and makes its own
            self.lost: set[str] = set()
            self.removed = self._clear_stale()
            self.path = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{os.getpid()}-", dir=self.root))
            self._lock = _try_lock(self.path.with_suffix(".lock"))
        if self.removed:
            log.info(
                "removed %d work folder(s) left by backends that stopped without cleaning up: %s",
                len(self.removed),
                ", ".join(p.name for p in self.removed),
            )

    def _clear_stale(self) -> list[Path]:
        removed = []
        for run in sorted(self.root.glob(f"{RUN_PREFIX}*")):
            if not run.is_dir():
                continue
            held = _try_lock(run.with_suffix(".lock"))
            if held is None:
                continue  # a live backend's
            self._note_lost(run)
            shutil.rmtree(run, ignore_errors=True)
            run.with_suffix(".lock").unlink(missing_ok=True)
            held.close()
            removed.append(run)
        self._save_lost()
        return removed

    def _note_lost(self, run: Path) -> None:
        self.lost.update(p.name for p in (run / "jobs").glob("*") if JOB_ID.fullmatch(p.name))

    def _save_lost(self) -> None:
        """Merge ROOT/lost-jobs with the jobs just found lost, keep the last KEEP_LOST."""
        path = self.root / LOST_FILE
        try:
            old = [x for x in path.read_text().split() if JOB_ID.fullmatch(x)] if path.exists() else []
            new = sorted(self.lost - set(old))
            ids = list(dict.fromkeys([*old, *new]))[-KEEP_LOST:]
            self.lost = set(ids)
            if new:
                path.write_text("".join(f"{i}\n" for i in ids))
        except OSError as e:  # a full disk must not stop the backend from starting
            log.warning("cannot keep the list of lost jobs in %s (%s)", path, e.strerror)

    def mark_job(self, job_id: str) -> None:
        """Record that this run holds `job_id`: if the backend dies, the next start answers it as lost."""
        folder = self.path / "jobs"
        try:
            folder.mkdir(exist_ok=True)
            (folder / job_id).touch()
        except OSError as e:
            log.warning("cannot mark job %s in %s (%s)", job_id, folder, e.strerror)

    def new_folder(self, name: str) -> Path:
        p = self.path / name
        p.mkdir()
        return p

    def close(self) -> None:
        self._note_lost(self.path)  # jobs still held at a stop are lost too (their results with them)
        self._save_lost()
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.with_suffix(".lock").unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()

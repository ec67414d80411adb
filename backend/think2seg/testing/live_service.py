"""A live `think2seg serve` for tests: a free loopback port, its own token file, started and stopped.

The one way both test suites (tests/backend, tests/plugin) start the service, as a user does: a separate
process of `python -m think2seg serve`. Standard library only, so QGIS's Python (the plugin suite) can
import it without the backend's dependencies.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: Lines `think2seg serve` prints once it is ready, or once its models failed to load (it keeps serving the
#: health endpoint with the error).
READY = "ready on"
FAILED = "models failed to load"


def free_port() -> int:
    """A TCP port nobody listens on now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveService:
    url: str
    token_file: Path
    log_file: Path
    process: subprocess.Popen

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextmanager
def live_service(
    args: Sequence[str],
    folder: str | os.PathLike,
    python: str | None = None,
    wait_for: str = READY,
    timeout: float = 240.0,
    env: dict | None = None,
) -> Iterator[LiveService]:
    """Start `python -m think2seg serve --host 127.0.0.1 --port FREE --token-file FOLDER/token ARGS` (its
    output in FOLDER/backend.log), wait for the line `wait_for`, yield the service, stop it at the end.

    A service that exits or does not print the line in `timeout` seconds is a RuntimeError with its log."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token_file, log_file = folder / "token", folder / "backend.log"
    command = [
        python or sys.executable,
        "-m",
        "think2seg",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--token-file",
        str(token_file),
        *args,
    ]
    with open(log_file, "w") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    service = LiveService(f"http://127.0.0.1:{port}", token_file, log_file, process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            text = log_file.read_text(errors="replace")
            if wait_for in text and token_file.exists():
                break
            if process.poll() is not None:
                raise RuntimeError(f"think2seg serve exited with {process.returncode}:\n{service.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"think2seg serve did not print {wait_for!r} in {timeout:.0f} s:\n{service.log_tail()}"
                )
            time.sleep(0.2)
        yield service
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

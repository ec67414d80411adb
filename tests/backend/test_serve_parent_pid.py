"""`think2seg serve --parent-pid`: the service a QGIS panel started stops when that QGIS dies (no model needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

# A "QGIS" that starts a child watching it, prints the child's pid, then waits to be killed.
PARENT = r"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", '''
import os, sys, time
from think2seg.cli.serve import watch_parent
watch_parent(os.getppid(), lambda: os._exit(0), interval=0.1)
time.sleep(60)
sys.exit(3)
'''])
print(child.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return False


def test_the_service_watcher_exits_when_its_parent_is_killed():
    from think2seg.cli.serve import process_alive

    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    try:
        time.sleep(1.0)
        assert _alive(child_pid), "the watcher must keep running while its parent lives"
        assert process_alive(parent.pid)
        parent.send_signal(signal.SIGKILL)  # QGIS crashing: no unload, no stop()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child_pid), "the service outlived the QGIS that started it"
        assert not process_alive(parent.pid)
    finally:
        if _alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)

"""`think2seg batch --resume` after the batch was killed with SIGKILL: it finishes, nothing is doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import tiny_model_args
from pyogrio.raw import read as ogr_read
from think2seg.cli import main
from think2seg.testing.scenes import make_geotiff

pytestmark = pytest.mark.slow


def test_batch_killed_with_sigkill_resumes_without_doubles(tiny_models_dir, tmp_path, capsys):
    raster = make_geotiff(tmp_path / "scene.tif", 192, 64, block=64)  # three tiles
    out = tmp_path / "out.gpkg"
    args = [
        "batch",
        str(raster),
        "-q",
        "the discs",
        "-o",
        str(out),
        "--tile-size",
        "64",
        "--overlap",
        "0",
        "--batch-size",
        "1",
        "--max-reasoning-tokens",
        "16",
        "--no-progress",
        *tiny_model_args(tiny_models_dir),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "think2seg", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    state = tmp_path / "out.gpkg.state"
    deadline = time.time() + 240
    while len(list(state.rglob("tiles/*.json"))) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    finished_before = len(list(state.rglob("tiles/*.json")))
    assert 1 <= finished_before < 3 and not out.exists(), "killed mid-run, with some tiles done"

    # The resume needs no process of its own: what it must survive is the killed process's leftovers.
    assert main([*args, "--resume", "--keep-state"]) == 0, capsys.readouterr().err
    summary = json.loads(out.with_name("out.summary.json").read_text())
    assert summary["tiles"] == 3 and summary["tiles_resumed"] >= finished_before - 1
    assert summary["tiles_run"] + summary["tiles_resumed"] == 3
    (state_file,) = state.rglob("state.json")
    finished = json.loads(state_file.read_text())["finished"]
    assert len(finished) == len(set(finished)) == 3, "every tile finished once"
    meta, _, _, fields = ogr_read(str(out), layer="mask")
    parts = [part for value in fields[list(meta["fields"]).index("parts")] for part in str(value).split(",") if part]
    doubled = [part for part, n in Counter(parts).items() if n > 1]
    assert doubled == [], doubled  # (the tiny models on a 16-token budget may find nothing: then no parts)

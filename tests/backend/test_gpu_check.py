"""scripts/gpu_check.sh --tiny: the GPU check's whole path (models saved and loaded by `think2seg serve`, HTTP
requests, plain and fast services, the table and the JSON) on the CPU with tiny shapes, so it cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_gpu_check_runs_with_tiny_shapes_on_the_cpu(tmp_path, tiny_models_dir):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_WHEELS": str(tmp_path / "no-wheels")}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--tiny", "--budget-s", "3000", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for row in (
        "(a) one query end to end",
        "(b) second query, same view",
        "(c) batch, 2 tiles in one job",
        "| measure",
        "plain",
        "fast",
    ):
        assert row in proc.stdout, row
    report = json.loads(out.read_text())
    assert report["tiny"] and report["tokens"] == 72
    for decoding in ("plain", "fast"):
        run = report["runs"][decoding]
        assert run["decoding_reported"] == decoding and run["device"] == "cpu"
        assert run["interactive_s"] > 0 and run["same_view_s"] > 0 and run["tiles_per_s"] > 0

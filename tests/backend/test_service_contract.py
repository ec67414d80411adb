"""The typed HTTP contract without a server: codes and docs agree, options, token file, work folders."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from think2seg.errors import ERROR_CODES, BadOptions, Cancelled, QueueFull, Think2SegError
from think2seg.options import JobOptions, SegmentOptions, parse_options

ROOT = Path(__file__).resolve().parents[2]


def test_the_error_table_in_docs_api_md_is_the_one_the_server_uses():
    text = (ROOT / "docs" / "api.md").read_text()
    documented = {}
    for status, codes in re.findall(r"^\| (\d{3}) \| (.+?) \|", text, flags=re.M):
        for code in re.findall(r"`([a-z_]+)`", codes):
            documented[code] = int(status)
    assert documented == ERROR_CODES


def test_errors_carry_their_status_from_their_class():
    assert Cancelled("x").http_status == 409 and BadOptions("x").http_status == 422
    full = QueueFull("busy", retry_after=7)
    assert full.http_status == 429 and full.headers() == {"Retry-After": "7"}
    assert Think2SegError("x").http_status == 500


def test_options_are_one_model_for_pipeline_cli_and_service():
    from think2seg.pipeline import SegmentOptions as FromPipeline

    assert FromPipeline is SegmentOptions
    assert SegmentOptions.from_dict({"bands": [3]}).bands == [3]
    job = parse_options(JobOptions, {"gsd": 2})
    assert job.gsd == 2.0 and job.tiling_requested and not parse_options(JobOptions, {}).tiling_requested
    with pytest.raises(BadOptions, match="`overlap`"):
        parse_options(JobOptions, {"overlap": "1"})
    with pytest.raises(BadOptions, match="at most half the tile size"):
        parse_options(JobOptions, {"tile_size": 128, "overlap": 100})


def test_a_token_file_others_can_read_is_replaced_and_logged(tmp_path, caplog):
    from think2seg.service.auth import load_or_create_token

    path = tmp_path / "cfg" / "token"
    token, _ = load_or_create_token(path)
    assert load_or_create_token(path)[0] == token and path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="think2seg.service"):
        new, _ = load_or_create_token(path)
    assert new != token and path.read_text().strip() == new and path.stat().st_mode & 0o777 == 0o600
    assert "readable by other users" in caplog.text


def test_a_work_folder_is_cleared_only_when_its_backend_is_gone(tmp_path):
    from think2seg.service.workdir import WorkRoot

    root = tmp_path / "work"
    # another live backend: a process holding the lock of its run folder
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys
sys.path.insert(0, {str(ROOT / 'backend')!r})
from think2seg.service.workdir import WorkRoot
w = WorkRoot({str(root)!r})
(w.path / "upload").write_text("x")
print(w.path, flush=True)
sys.stdin.read()
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    live = Path(holder.stdout.readline().strip())
    stale = root / "run-999999-dead"
    stale.mkdir()
    (stale / "old.upload").write_text("x")
    mine = WorkRoot(root)
    assert not stale.exists() and stale in mine.removed
    assert (live / "upload").exists(), "a live backend's folder was deleted"
    holder.kill()
    holder.wait()
    mine.close()
    again = WorkRoot(root)
    assert not live.exists() and not mine.path.exists()
    again.close()
    assert sorted(p.name for p in root.iterdir()) == [".scan.lock"]

"""The typed HTTP contract without a server: codes and docs agree, options, token file, work folders."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import sys
sys.path.insert(0, {str(ROOT / "backend")!r})
from think2seg.service.workdir import WorkRoot
w = WorkRoot({str(root)!r})
(w.path / "upload").write_text("x")
print(w.path, flush=True)
sys.stdin.read()
""",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
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


@pytest.mark.parametrize("bigtiff, endianness", [("NO", "LITTLE"), ("YES", "LITTLE"), ("YES", "BIG"), ("NO", "BIG")])
def test_the_ifd_walk_reads_each_images_block_in_every_tiff_flavour(tmp_path, bigtiff, endianness):
    """The header walk behind probe finding 1 (a declared 65536^2 tile): classic and BigTIFF, either byte order,
    overviews included, a pixel-interleaved block counting its bands."""
    import rasterio
    from affine import Affine
    from think2seg.errors import BadInput
    from think2seg.service.header import Block, check_tiff, tiff_blocks

    path = tmp_path / "t.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=1000,
        height=700,
        count=3,
        dtype="uint16",
        tiled=True,
        blockxsize=256,
        blockysize=128,
        interleave="pixel",
        bigtiff=bigtiff,
        endianness=endianness,
        crs="EPSG:32633",
        transform=Affine(1, 0, 500000, 0, -1, 4000000),
    ) as ds:
        ds.write(np.zeros((3, 700, 1000), dtype="uint16"))
        ds.build_overviews([2, 4])
    with open(path, "rb") as f:
        data = f.read()
    blocks = tiff_blocks(lambda o, n: data[o : o + n], len(data), 256)
    assert blocks[0] == Block(256, 128, 3, 2) and len(blocks) == 3, blocks
    check_tiff(path, 8192**2, 512 << 20, 256)  # a normal file passes
    with pytest.raises(BadInput, match="more than 2 images"):
        check_tiff(path, 8192**2, 512 << 20, 2)
    with pytest.raises(BadInput, match="256 x 128 pixels x 3 band"):
        check_tiff(path, 8192**2, 100_000, 256)

"""Issue 23 items 9 and 16 over real loopback HTTP with the tiny models: a tiled job's progress moves tile by
tile, and an answer can be refined after the backend restarted (its view kept on disk, bounded)."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from conftest import tiny_service, write_raster
from test_refine import crs_box, refine
from test_service import auth, post_segment

pytestmark = pytest.mark.slow

#: 934 x 723 px in 512 px tiles overlapping by 64: a 2 x 2 grid, sent to the models as one batch of 4
FOUR_TILES = {"max_read_size": 512, "tile_size": 512, "overlap": 64}


def wait_job(url, token, job_id, seen: list | None = None, timeout=300) -> dict:
    """Poll a job until it ends; every (progress, message) seen while it ran goes to `seen`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = httpx.get(f"{url}/v1/jobs/{job_id}", headers=auth(token)).json()
        if st["status"] in ("done", "failed", "cancelled"):
            return st
        if seen is not None and (not seen or seen[-1] != (st["progress"], st["message"])):
            seen.append((st["progress"], st["message"]))
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {st} after {timeout} s")


def tiled_answer(url, token, naip, seen=None) -> dict:
    job = post_segment(url, token, naip, "the wetlands", options=FOUR_TILES, endpoint="/v1/jobs").json()
    st = wait_job(url, token, job["job_id"], seen)
    assert st["status"] == "done" and st["progress"] == 1.0, st
    answer = httpx.get(f"{url}/v1/jobs/{job['job_id']}/result", headers=auth(token)).json()
    assert answer["read"]["mode"] == "tiled" and len(answer["tiles"]) == 4
    return answer


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("cfg") / "think2seg"


def test_a_four_tile_job_reports_progress_tile_by_tile_in_sentences(tiny_models_dir, folder, naip):
    """Item 9: one batch of 4 tiles used to report 0 until the end (progress moved once per batch)."""
    with tiny_service(tiny_models_dir, folder) as svc:
        seen = []
        tiled_answer(svc.url, svc.token, naip, seen)
    values = [p for p, _ in seen]
    assert values == sorted(values), seen
    running = sorted({p for p in values if 0 < p < 1})
    assert len(running) >= 4, seen  # 0.25, 0.5, 0.75 and the merge (held below 1 until the job is done)
    messages = [m for _, m in seen]
    assert any("reasoning on tiles 1-4 of 4" in m for m in messages), messages
    assert any("tile 3 of 4" in m for m in messages)  # the merge is too quick to be polled (test_tiling sees it)
    assert all(".upload" not in m for m in messages), messages  # the client's file name, not our temporary one
    assert any(m.startswith(naip.name) for m in messages), messages


def test_refine_after_a_restart_gives_the_same_mask_and_the_store_is_bounded(tiny_models_dir, folder, naip, landsat):
    """Item 16: the view (pixels, georeferencing, prompts' frame) is kept on disk; a new backend process on the
    same work folder loads it and re-embeds it. An image answer and a tiled answer alike."""
    with tiny_service(tiny_models_dir, folder) as svc:
        r = post_segment(svc.url, svc.token, naip, "the wetlands that hold water all year")
        assert r.status_code == 200, r.text
        answer = r.json()
        inst = answer["instances"][0]
        body = {"box": crs_box(inst["box_crs"]), "positive_points": inst["points_crs"][1:], "instance": 0}
        body["negative_points"] = inst["points_crs"][:1]
        before = refine(svc.url, svc.token, answer["view_id"], body).json()
        tiled = tiled_answer(svc.url, svc.token, naip)
        tiled_body = {"frame": "pixel", "box": [380, 60, 560, 300], "positive_points": [[420, 180], [520, 200]]}
        tiled_before = refine(svc.url, svc.token, tiled["view_id"], tiled_body).json()
        assert before["geometry"] and tiled_before["geometry"] and tiled_before["tiles"] == ["r0c0", "r0c1"]
    kept = folder / "work" / "kept-views"
    assert {p.name for p in kept.iterdir()} >= {answer["view_id"], tiled["view_id"]}

    with tiny_service(tiny_models_dir, folder) as svc:  # a new process: nothing in memory
        after = refine(svc.url, svc.token, answer["view_id"], body)
        assert after.status_code == 200, after.text
        after = after.json()
        assert after["reembedded"] is True
        assert after["geometry"] == before["geometry"] and after["score"] == pytest.approx(before["score"], abs=1e-6)
        tiled_after = refine(svc.url, svc.token, tiled["view_id"], tiled_body)
        assert tiled_after.status_code == 200, tiled_after.text
        assert tiled_after.json()["geometry"] == tiled_before["geometry"]
        # hostile view ids never reach the file system: a 4xx with a sentence
        for bad in ("..", "..%2F..%2Fetc", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "A" * 32, "0" * 31 + "g"):
            r = httpx.post(
                f"{svc.url}/v1/views/{bad}/refine", json={"positive_points": [[0, 0]]}, headers=auth(svc.token)
            )
            assert 400 <= r.status_code < 500 and r.json()["error"]["message"], (bad, r.status_code, r.text)
        # a damaged entry is "gone", in a sentence, and removed
        (kept / answer["view_id"] / "rgb.npy").write_bytes(b"\x93NUMPY junk")
    with tiny_service(tiny_models_dir, folder) as svc:
        r = refine(svc.url, svc.token, answer["view_id"], body)
        assert r.status_code == 404 and r.json()["error"]["code"] == "view_not_found", r.text
        assert "damaged or was removed" in r.json()["error"]["message"]
        assert not (kept / answer["view_id"]).exists()

    # the bound: a store of 4 MiB keeps the newest answers that fit (an answer here is 1.4-2.6 MiB of pixels
    # and valid-data mask) and never grows past it
    bounded = folder.parent / "bounded"
    rng = np.random.default_rng(0)
    synthetic = write_raster(folder.parent / "synthetic.tif", rng.integers(1, 255, (3, 600, 600), dtype=np.uint8))
    with tiny_service(tiny_models_dir, bounded, "--view-store-mb", "4") as svc:
        store = bounded / "work" / "kept-views"
        ids = []
        for path in (naip, landsat, synthetic):
            r = post_segment(svc.url, svc.token, path, "the water")
            assert r.status_code == 200, r.text
            ids.append(r.json()["view_id"])
            total = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
            assert 0 < total <= 4 << 20, total
        assert {p.name for p in store.iterdir()} == set(ids[1:])  # the oldest went first

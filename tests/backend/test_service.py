"""The HTTP service over real loopback HTTP, started as users start it, with the tiny models."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import tiny_service
from think2seg.testing.live_service import FAILED, live_service

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tiny_models_dir, tmp_path_factory):
    with tiny_service(tiny_models_dir, tmp_path_factory.mktemp("cfg") / "think2seg", "--max-upload-mb", "3") as svc:
        yield svc.url, svc.token, svc.token_file


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def post_segment(url, token, path: Path, query="the wetlands", options=None, endpoint="/v1/segment", **kw):
    files = {"image": (path.name, path.read_bytes(), "image/tiff")}
    data = {"query": query}
    if options is not None:
        data["options"] = options if isinstance(options, str) else json.dumps(options)
    return httpx.post(url + endpoint, headers=auth(token), files=files, data=data, **{"timeout": 300, **kw})


def test_token_file_is_private(service):
    _, token, token_file = service
    assert len(token) >= 32
    assert (token_file.stat().st_mode & 0o777) == 0o600


def test_requests_without_or_with_a_wrong_token_are_refused(service):
    url, _, _ = service
    r = httpx.get(url + "/v1/health")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = httpx.get(url + "/v1/health", headers=auth("wrong"))
    assert r.status_code == 401
    r = httpx.post(url + "/v1/segment", headers=auth("wrong"), files={"image": ("a.tif", b"xx")}, data={"query": "x"})
    assert r.status_code == 401


def test_health_and_openapi(service):
    url, token, _ = service
    h = httpx.get(url + "/v1/health", headers=auth(token)).json()
    assert h["status"] == "ok" and h["device"] == "cpu" and h["models"]["loaded"]
    assert h["models"]["segmenter"] == "sam2.1_hiera_tiny" and "torch" in h["versions"]
    spec = httpx.get(url + "/openapi.json").json()
    assert "/v1/segment" in spec["paths"] and "/v1/jobs/{job_id}" in spec["paths"]


def test_segment_answers_in_the_rasters_crs(service, naip):
    url, token, _ = service
    r = post_segment(url, token, naip, "the wetlands that hold water all year")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["epsg"] == 26914 and body["area_unit"] == "m2"
    assert body["instances"][0]["points_crs"][0] == [pytest.approx(488234.0), pytest.approx(5207800.0)]
    feats = body["mask"]["features"]
    assert feats and feats[0]["geometry"]["type"] == "MultiPolygon"
    assert body["models"]["prompt_template"] == "think2seg-rs/v1"


def test_malformed_requests_get_4xx_and_the_service_stays_up(service, tmp_path, naip):
    url, token, _ = service
    junk = tmp_path / "holiday.tif"
    junk.write_bytes(b"GIF89a not really")
    r = post_segment(url, token, junk)
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_a_raster"
    assert "holiday.tif" in r.json()["error"]["message"] and "/tmp/think2seg-" not in r.json()["error"]["message"]
    r = httpx.post(url + "/v1/segment", headers=auth(token), data={"query": "x"})
    assert r.status_code == 400 and "image" in r.json()["error"]["message"]
    assert post_segment(url, token, naip, query="  ").json()["error"]["code"] == "empty_query"
    assert post_segment(url, token, naip, query="x" * 2001).json()["error"]["code"] == "query_too_long"
    r = post_segment(url, token, naip, options="{not json")
    assert r.status_code == 400 and "options" in r.json()["error"]["message"]
    r = post_segment(url, token, naip, options={"max_reasoning_tokens": 10**6})
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_options"
    big = tmp_path / "big.tif"
    big.write_bytes(os.urandom(5 * 2**20))  # over the 3 MiB limit, caught by Content-Length
    r = post_segment(url, token, big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"
    mid = tmp_path / "mid.tif"
    mid.write_bytes(os.urandom(int(3.5 * 2**20)))  # caught while streaming
    r = post_segment(url, token, mid)
    assert r.status_code == 413
    assert httpx.get(url + "/v1/health", headers=auth(token)).json()["status"] == "ok"


def test_two_clients_at_once_are_served_in_turn(service, naip, landsat):
    url, token, _ = service
    results = {}

    def call(name, path):
        results[name] = post_segment(url, token, path, "the water")

    threads = [threading.Thread(target=call, args=(n, p)) for n, p in (("a", naip), ("b", landsat))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k].status_code == 200 for k in "ab"), [results[k].text[:500] for k in "ab"]
    bodies = [results[k].json() for k in "ab"]
    assert {b["epsg"] for b in bodies} == {26914, 32618}
    # one of them waited for the other: GPU work is serialised
    waits = sorted(b["timings"]["queue"] for b in bodies)
    ran = min(b["timings"]["reasoner"] + b["timings"]["segmenter"] for b in bodies)
    assert waits[1] >= 0.5 * ran


def test_job_lifecycle_and_cancel(service, naip, landsat):
    url, token, _ = service
    # job A runs; job B waits behind it and is cancelled before it starts
    a = post_segment(url, token, naip, endpoint="/v1/jobs").json()
    b = post_segment(url, token, landsat, endpoint="/v1/jobs").json()
    # the worker may take A before its answer is sent (the header checks run off the event loop)
    assert a["status"] in ("queued", "running") and b["job_id"] != a["job_id"]
    c = httpx.delete(f"{url}/v1/jobs/{b['job_id']}", headers=auth(token)).json()
    assert c["status"] == "cancelled"
    r = httpx.get(f"{url}/v1/jobs/{b['job_id']}/result", headers=auth(token))
    assert r.status_code == 409 and r.json()["error"]["code"] in ("cancelled", "job_not_finished")
    deadline = time.time() + 120
    while time.time() < deadline:
        st = httpx.get(f"{url}/v1/jobs/{a['job_id']}", headers=auth(token)).json()
        if st["status"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.3)
    assert st["status"] == "done" and st["progress"] == 1.0
    res = httpx.get(f"{url}/v1/jobs/{a['job_id']}/result", headers=auth(token)).json()
    assert res["epsg"] == 26914 and res["instances"]
    assert httpx.get(f"{url}/v1/jobs/nope", headers=auth(token)).status_code == 404


def test_a_one_image_job_reports_its_tokens_and_a_cancel_stops_the_reasoning(tiny_models_dir, tmp_path, naip):
    """On a CPU one answer takes minutes: the job's progress moves with every token the reasoner writes, and a
    cancel stops the reasoning at the next token. Before, the bar sat still and a cancelled job ran to "done"
    (its cancel waited for a tile boundary a one-image job never reaches). The answers are scripted to run
    long (4,000 tokens) on the tiny reasoner."""
    hook = "think2seg.testing.scripted:script_answers=4000"
    with tiny_service(tiny_models_dir, tmp_path / "cfg", "--pipeline-hook", hook) as svc:
        job = post_segment(svc.url, svc.token, naip, endpoint="/v1/jobs", options={"max_reasoning_tokens": 4000})
        job_url = f"{svc.url}/v1/jobs/{job.json()['job_id']}"
        seen, deadline = [], time.monotonic() + 120
        while time.monotonic() < deadline and len({p for p, _ in seen}) < 3:
            st = httpx.get(job_url, headers=auth(svc.token)).json()
            if st["message"].startswith("reasoning: "):
                seen.append((st["progress"], st["message"]))
            time.sleep(0.05)
        assert len({p for p, _ in seen}) >= 3, seen  # three different positions of the bar while it reasons
        assert [p for p, _ in seen] == sorted(p for p, _ in seen) and seen[-1][0] < 0.9
        from think2seg.options import ANSWER_BUDGET

        # the budget: the reasoning's and the forced answer's
        assert seen[-1][1].endswith(f"tokens of at most {4000 + ANSWER_BUDGET}"), seen[-1]
        asked = time.monotonic()
        httpx.delete(job_url, headers=auth(svc.token))
        while (st := httpx.get(job_url, headers=auth(svc.token)).json())["status"] == "running":
            assert time.monotonic() - asked < 10, st
            assert st["message"].startswith("cancelling"), st  # not overwritten by the tokens still counted
            time.sleep(0.05)
        assert st["status"] == "cancelled", st
        health = httpx.get(svc.url + "/v1/health", headers=auth(svc.token)).json()
        assert health["queue"]["running"] == 0  # the worker is free for the next job

        # A synchronous request whose client leaves mid-answer: its reasoning stops too (it ran on unread before)
        with pytest.raises(httpx.ReadTimeout):
            post_segment(svc.url, svc.token, naip, options={"max_reasoning_tokens": 4000}, timeout=3)
        left = time.monotonic()
        while httpx.get(svc.url + "/v1/health", headers=auth(svc.token)).json()["queue"]["running"]:
            assert time.monotonic() - left < 10, "the worker still answers a client that has gone"
            time.sleep(0.05)


def test_health_asked_while_the_models_load_never_breaks_the_load(tiny_models_dir, tmp_path):
    """A client polls /v1/health from the moment the port answers, as the panel does. The health route once
    imported torch and transformers itself, in the event loop's thread, while the loading thread imported them
    too: the loader then found transformers half made ("cannot import name 'AutoModelForImageTextToText'"):
    8 starts of 8 failed when polled every 10 ms, 1 of 5 in a real set-up polled every 2 s."""
    from conftest import tiny_model_args

    args = [*tiny_model_args(tiny_models_dir)]
    # from the token file on, before the service says it listens: the first question waits in the socket's queue
    with live_service(args, tmp_path, wait_for="token file:", env={"HF_HUB_OFFLINE": "1"}, timeout=120) as svc:
        seen, deadline = [], time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                health = httpx.get(svc.url + "/v1/health", headers=auth(svc.token), timeout=30).json()
            except httpx.TransportError:
                continue  # not listening yet
            seen.append(health["status"])
            if health["status"] != "loading":
                break
            time.sleep(0.005)
        assert health["status"] == "ok", (health.get("error"), svc.log_tail())
        assert "loading" in seen  # it was asked while loading (else this proves nothing)
        assert health["versions"]["transformers"] and health["device"] == "cpu"


@pytest.mark.parametrize(
    "model, sam, named",
    [("no-such-model", "tiny", "no-such-model"), ("no-such-model", "no-such-sam.pt", "no-such-sam.pt")],
)
def test_a_backend_whose_models_fail_says_why(tmp_path, naip, model, sam, named):
    """It keeps listening and says why in /v1/health (where the plugin shows it); a wrong --sam is told
    before the reasoner is even looked for."""
    sam = str(tmp_path / sam) if sam.endswith(".pt") else sam
    with live_service(
        ["--model", str(tmp_path / model), "--sam", sam, "--device", "cpu"],
        tmp_path,
        wait_for=FAILED,
        env={"HF_HUB_OFFLINE": "1"},
        timeout=120,
    ) as svc:
        url, token = svc.url, svc.token
        h = httpx.get(url + "/v1/health", headers=auth(token)).json()
        assert h["status"] == "error" and named in h["error"]["message"]
        r = post_segment(url, token, naip)
        assert r.status_code >= 500 and r.json()["error"]["message"]

"""The service as a hostile client tries it (issue 10): real loopback HTTP, the tiny models, one server.

Bombs, references to other files and URLs, wrong-typed options, oversized chunked bodies, a full queue,
clients that leave, schemathesis; and after all of it no upload or tile folder is left behind.
"""

from __future__ import annotations

import http.server
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import tiny_model_args, write_raster
from test_service import auth, post_segment
from think2seg.testing.live_service import live_service

pytestmark = pytest.mark.slow
UPLOAD_MB = 3
STALL_S = 2  # the server's header and body timeouts here (the defaults are 20 and 30 s)
OFFLINE = {"HF_HUB_OFFLINE": "1"}


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, token: str, work: Path):
        self.proc, self.url, self.token, self.work = proc, url, token, work
        self.headers = auth(token)

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.url + path, headers={**self.headers, **kw.pop("headers", {})}, timeout=60, **kw)

    def post(self, path: Path, options=None, endpoint="/v1/segment", query="the water", timeout=120) -> httpx.Response:
        data = {"query": query}
        if options is not None:
            data["options"] = options if isinstance(options, str) else json.dumps(options)
        return httpx.post(
            self.url + endpoint,
            headers=self.headers,
            files={"image": (path.name, path.read_bytes())},
            data=data,
            timeout=timeout,
        )

    def run_folder(self) -> Path:
        (run,) = [p for p in self.work.glob("run-*") if p.is_dir()]
        return run

    def files_left(self) -> list[str]:
        """Uploads and tile state left in the run folder; `views/` is refine's cache of views and `jobs/` the
        marks of the jobs this run holds (answered as lost after a crash), kept on purpose until shutdown (the
        fixture checks the whole run folder goes then)."""
        run = self.run_folder()
        return sorted(
            str(p.relative_to(self.work))
            for p in run.rglob("*")
            if p.relative_to(run).parts[0] not in ("views", "jobs")
        )

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def wait_job(self, job_id: str, timeout: float = 120) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.get(f"/v1/jobs/{job_id}").json()
            if st["status"] in ("done", "failed", "cancelled"):
                return st
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not finish: {st}")


@pytest.fixture(scope="module")
def server(tiny_models_dir, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("hostile")
    work = cfg / "work"
    args = [
        *tiny_model_args(tiny_models_dir),
        "--max-upload-mb",
        str(UPLOAD_MB),
        "--max-queue",
        "2",
        "--max-tiles",
        "400",
        "--work-dir",
        str(work),
        "--header-timeout",
        str(STALL_S),
        "--body-timeout",
        str(STALL_S),
    ]
    with live_service(args, cfg, env={"HF_HUB_OFFLINE": "1"}) as svc:
        yield Server(svc.process, svc.url, svc.token, work)
    assert not list(work.glob("run-*")), "the work folder was not removed at shutdown"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A 64 x 64 RGB GeoTIFF: cheap to upload, one read."""
    rng = np.random.default_rng(0)
    return write_raster(
        tmp_path_factory.mktemp("rasters") / "small.tif", rng.integers(0, 255, (3, 64, 64), dtype=np.uint8)
    )


def sparse_geotiff(path: Path, size: int, dtype: str = "uint8", count: int = 1) -> Path:
    """A file of a few KB (or MB) whose header declares `size` x `size` pixels: blocks are never written."""
    import rasterio
    from affine import Affine

    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=count,
        dtype=dtype,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        sparse_ok=True,
        compress="deflate",
        crs="EPSG:32633",
        transform=Affine(1, 0, 500000, 0, -1, 4000000),
    ):
        pass
    return path


# -- options ------------------------------------------------------------------------------------------------
WRONG = [
    ("max_reasoning_tokens", "abc"),
    ("max_reasoning_tokens", None),
    ("max_reasoning_tokens", 1.5),
    ("max_reasoning_tokens", 10**6),
    ("max_reasoning_tokens", True),
    ("bands", "abc"),
    ("bands", 5),
    ("bands", [[1]]),
    ("bands", {"a": 1}),
    ("bands", [1, 2]),
    ("bands", [0]),
    ("min_area_pixels", "x"),
    ("min_area_pixels", -1),
    ("min_area_pixels", float("nan")),
    ("max_read_size", "big"),
    ("max_read_size", float("nan")),
    ("max_read_size", 10),
    ("max_read_size", None),
    ("polygonise", "yes"),
    ("polygonise", 1),
    ("sam_size", "huge"),
    ("sam_size", 3),
    ("constrain_answer", "true"),
    ("constrain_answer", 0),
    ("parse_mode", "strictest"),
    ("parse_mode", 1),
    ("answer_budget", "x"),
    ("answer_budget", -1),
    ("no_such_option", 1),
]
JOB_WRONG = [
    ("tile_size", "1024"),
    ("tile_size", 8),
    ("overlap", -1),
    ("overlap", "a"),
    ("gsd", 0),
    ("gsd", "1"),
    ("gsd", float("inf")),
    ("gsd", [1]),
    ("batch_size", 0),
    ("batch_size", "4"),
]


def test_the_wrong_option_cases_cover_every_field():
    from think2seg.options import JobOptions, SegmentOptions

    assert {name for name, _ in WRONG} >= set(SegmentOptions.model_fields)
    assert {name for name, _ in WRONG + JOB_WRONG} >= set(JobOptions.model_fields)


def test_every_option_with_a_wrong_type_is_422_naming_it_before_anything_is_kept(server, small):
    for endpoint, cases in (("/v1/segment", WRONG), ("/v1/jobs", WRONG + JOB_WRONG)):
        for name, value in cases:
            r = server.post(small, options=json.dumps({name: value}), endpoint=endpoint)
            assert r.status_code == 422, (endpoint, name, value, r.text)
            body = r.json()["error"]
            assert body["code"] == "bad_options" and f"`{name}" in body["message"], (name, value, body)
    # tiling options on /v1/segment are not silently ignored
    r = server.post(small, options={"tile_size": 512})
    assert r.status_code == 422 and "`tile_size` is not an option" in r.json()["error"]["message"]
    r = server.post(small, options={"bands": [9]}, endpoint="/v1/jobs")
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_bands"
    assert server.files_left() == []


# -- bombs: refused from the header, fast, without memory ------------------------------------------------------
def test_bomb_rasters_are_refused_at_submission_in_milliseconds(server, tmp_path):
    rss_before = server.peak_rss_mb()
    huge = sparse_geotiff(tmp_path / "huge.tif", 200_000)
    sparse = sparse_geotiff(tmp_path / "sparse.tif", 9000)
    floats = sparse_geotiff(tmp_path / "floats.tif", 8000, dtype="float64", count=3)
    cases = [
        (sparse, {"gsd": 1e-6}, "/v1/jobs", "too_many_tiles"),
        (huge, {}, "/v1/jobs", "too_many_tiles"),
        (huge, {}, "/v1/segment", "raster_too_large"),
        (sparse, {"gsd": 1e6}, "/v1/jobs", "raster_too_large"),  # one tile would decode the whole raster
        (floats, {"max_read_size": 16384}, "/v1/segment", "bad_options"),
        (floats, {"tile_size": 8192}, "/v1/jobs", "bad_options"),
    ]
    for path, options, endpoint, code in cases:
        t0 = time.perf_counter()
        r = server.post(path, options=options, endpoint=endpoint)
        took = time.perf_counter() - t0
        assert r.status_code == 422 and r.json()["error"]["code"] == code, (path.name, options, r.text)
        assert took < 3, (path.name, options, took)
    rss_after = server.peak_rss_mb()
    print(f"server peak RSS (VmHWM) before the bombs {rss_before:.0f} MiB, after {rss_after:.0f} MiB")
    assert rss_after - rss_before < 200
    assert server.files_left() == []


def big_block_geotiff(path: Path, dtype: str, block: int = 65536, size: int = 1024) -> Path:
    """A 384-byte GeoTIFF of `size` x `size` pixels declaring one `block` x `block` tile (never written)."""
    import rasterio
    from affine import Affine

    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=1,
        dtype=dtype,
        tiled=True,
        blockxsize=block,
        blockysize=block,
        sparse_ok=True,
        compress="deflate",
        crs="EPSG:32633",
        transform=Affine(1, 0, 500000, 0, -1, 4000000),
    ):
        pass
    return path


def ifd_chain_tiff(path: Path, n: int) -> Path:
    """A little-endian TIFF of `n` 1 x 1 images (IFDs) chained one after another."""
    import struct

    out = bytearray(b"II*\0" + struct.pack("<I", 8))
    for i in range(n):
        entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (277, 3, 1, 1), (273, 4, 1, 0), (279, 4, 1, 1)]
        nxt = len(out) + 2 + 12 * len(entries) + 4 if i < n - 1 else 0
        out += struct.pack("<H", len(entries))
        for tag, typ, count, value in entries:
            out += struct.pack("<HHII", tag, typ, count, value)
        out += struct.pack("<I", nxt)
    path.write_bytes(bytes(out))
    return path


def test_a_tiff_declaring_a_huge_block_is_refused_from_its_header(server, tmp_path):
    """Probe finding 1: width x height was checked, not the tile GDAL decodes whole (16-bit: 8 GiB)."""
    rss_before = server.peak_rss_mb()
    for dtype in ("uint8", "uint16", "float32"):
        tif = big_block_geotiff(tmp_path / f"block-{dtype}.tif", dtype)
        assert tif.stat().st_size < 4096
        for endpoint in ("/v1/segment", "/v1/jobs"):
            t0 = time.perf_counter()
            r = server.post(tif, endpoint=endpoint)
            took = time.perf_counter() - t0
            assert r.status_code == 422, (dtype, endpoint, r.text)
            err = r.json()["error"]
            assert err["code"] == "raster_too_large" and "65536 x 65536" in err["message"], err
            assert "smaller tiles" in err["message"] and str(server.work) not in err["message"]
            assert took < 3, (dtype, endpoint, took)
    rss_after = server.peak_rss_mb()
    print(f"huge-block TIFFs: peak RSS {rss_before:.0f} -> {rss_after:.0f} MiB")
    assert rss_after - rss_before < 200
    assert server.files_left() == []


def test_many_ifds_or_bands_are_refused_up_front_and_health_stays_responsive(server, tmp_path):
    """Probe findings 4 and 13: a long IFD chain (GDAL walks it on the event loop) and 65,535 declared bands
    (refused by /v1/segment, accepted as a job that leaves its folders behind)."""
    import rasterio
    from affine import Affine

    chain = ifd_chain_tiff(tmp_path / "chain.tif", 20_000)
    bands = tmp_path / "bands.tif"
    with rasterio.open(
        bands,
        "w",
        driver="GTiff",
        width=256,
        height=256,
        count=2000,
        dtype="uint8",
        tiled=True,
        sparse_ok=True,
        interleave="band",
        crs="EPSG:32633",
        transform=Affine(1, 0, 500000, 0, -1, 4000000),
    ):
        pass
    health: list[float] = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            t0 = time.perf_counter()
            server.get("/v1/health")
            health.append(time.perf_counter() - t0)
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for path, words in ((chain, "more than 256 images"), (bands, "2,000 bands")):
            for endpoint in ("/v1/segment", "/v1/jobs"):
                r = server.post(path, endpoint=endpoint)
                assert r.status_code == 422, (path.name, endpoint, r.text)
                assert r.json()["error"]["code"] == "raster_too_large" and words in r.json()["error"]["message"]
    finally:
        stop.set()
        poller.join()
    print(f"health while refusing: {len(health)} polls, max {max(health):.3f} s")
    assert max(health) < 2
    assert server.files_left() == []


# -- uploads that point elsewhere -------------------------------------------------------------------------------
@pytest.fixture
def listener():
    """A real HTTP server on loopback that records every request it gets."""
    hits: list[tuple[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            hits.append(("HEAD", self.path))
            self.send_response(404)
            self.end_headers()

        do_GET = do_HEAD

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1], hits
    srv.shutdown()


def vrt_naming(source: str, size: int = 64) -> str:
    return (
        f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><VRTRasterBand dataType="Byte" band="1">'
        f'<SimpleSource><SourceFilename relativeToVRT="0">{source}</SourceFilename><SourceBand>1</SourceBand>'
        "</SimpleSource></VRTRasterBand></VRTDataset>"
    )


def test_vrt_uploads_naming_server_files_or_urls_are_refused_and_nothing_is_fetched(server, tmp_path, listener, naip):
    port, hits = listener
    for name, source in (("local.vrt", str(naip)), ("remote.vrt", f"/vsicurl/http://127.0.0.1:{port}/x.tif")):
        vrt = tmp_path / name
        vrt.write_text(vrt_naming(source))
        for endpoint in ("/v1/segment", "/v1/jobs"):
            r = server.post(vrt, endpoint=endpoint)
            assert r.status_code == 422 and r.json()["error"]["code"] == "not_a_raster", r.text
            assert "VRT" in r.json()["error"]["message"]
    time.sleep(0.5)
    assert hits == [], f"the backend made requests: {hits}"
    assert server.files_left() == []


# -- the upload limit while the body streams -------------------------------------------------------------------
def test_a_chunked_body_over_the_limit_is_cut_off_early(server):
    port = int(server.url.rsplit(":", 1)[1])
    boundary = "hostileboundary"
    head = (
        f"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {server.token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="query"\r\n\r\nwater\r\n--{boundary}\r\n'
        'Content-Disposition: form-data; name="image"; filename="big.tif"\r\nContent-Type: image/tiff\r\n\r\n'
    )

    def chunk(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    total, block = 1 << 30, chunk(b"\0" * (256 << 10))
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(head.encode() + chunk(part.encode()))
        s.setblocking(False)
        pending = b""
        try:
            while sent < total:
                readable, writable, _ = select.select([s], [s], [], 10)
                if readable:
                    break
                if writable:
                    pending = pending or block
                    n = s.send(pending)
                    pending, sent = pending[n:], sent + n
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.setblocking(True)
        s.settimeout(10)
        try:
            while b"\r\n\r\n" not in answer and (data := s.recv(65536)):
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    print(f"chunked upload: {sent / 2**20:.1f} MiB sent of {total / 2**20:.0f} MiB before the 413")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 32 * 2**20  # the limit (3 MiB) plus socket buffers, not the gigabyte
    assert server.files_left() == []


def push(port: int, head: bytes, block: bytes, total: int) -> tuple[int, bytes]:
    """Send `head`, then `block` again and again up to `total` bytes, reading whatever comes back, until the
    server closes or resets the connection: (bytes the client managed to send, the answer it read)."""
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(head)
        s.setblocking(False)
        pending = b""
        try:
            while sent < total:
                readable, writable, _ = select.select([s], [s], [], 10)
                if readable:
                    data = s.recv(65536)
                    if not data:
                        break
                    answer += data
                if writable:
                    pending = pending or block
                    n = s.send(pending)
                    pending, sent = pending[n:], sent + n
                if not readable and not writable:
                    break  # neither reads nor takes data for 10 s: the server stopped reading
        except (BrokenPipeError, ConnectionResetError):
            pass
    return sent, answer


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_an_upload_over_the_cap_is_cut_at_the_cap_not_drained(server):
    """Issue 24: the 413 came early but the server read (and dropped) all the client sent, 200 MB or more."""
    port = int(server.url.rsplit(":", 1)[1])
    boundary = "capboundary"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="query"\r\n\r\nwater\r\n--{boundary}\r\n'
        'Content-Disposition: form-data; name="image"; filename="big.tif"\r\nContent-Type: image/tiff\r\n\r\n'
    )
    common = (
        f"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {server.token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
    )
    total = 512 << 20
    cases = {
        "chunked": (
            (common + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunk(part.encode()),
            chunk(b"\0" * (256 << 10)),
        ),
        "content-length": ((common + f"Content-Length: {total}\r\n\r\n").encode() + part.encode(), b"\0" * (256 << 10)),
        "refine, chunked": (
            (
                f"POST /v1/views/x/refine HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer "
                f"{server.token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode(),
            chunk(b" " * (256 << 10)),
        ),
    }
    for name, (head, block) in cases.items():
        t0 = time.perf_counter()
        sent, answer = push(port, head, block, total)
        print(
            f"{name}: the client pushed {sent / 2**20:.1f} MiB of {total >> 20} MiB in "
            f"{time.perf_counter() - t0:.1f} s; answer {answer[:12]!r}"
        )
        assert answer.startswith(b"HTTP/1.1 413"), (name, answer[:300])
        assert b"connection: close" in answer.lower() and b'"upload_too_large"' in answer, (name, answer[:400])
        assert sent < (UPLOAD_MB + 12) << 20, (name, sent)  # the cap plus socket buffers, not half a gigabyte
    assert server.get("/v1/health").status_code == 200
    assert server.files_left() == []


@pytest.fixture(scope="module")
def view_id(server, small) -> str:
    r = server.post(small, options={"max_reasoning_tokens": 16})
    assert r.status_code == 200, r.text
    return r.json()["view_id"]


def refine(server, view_id: str, content, **kw) -> httpx.Response:
    if isinstance(content, dict | list):
        content = json.dumps(content)
    return httpx.post(
        f"{server.url}/v1/views/{view_id}/refine",
        content=content,
        timeout=60,
        headers={**server.headers, "Content-Type": "application/json"},
        **kw,
    )


def assert_error(r: httpx.Response, status: int, code: str, *words: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    for w in words:
        assert w in body["error"]["message"], (w, body)
    return body["error"]


def test_refine_bodies_are_capped_in_bytes_and_points_and_bad_json_is_a_400_in_our_shape(server, view_id):
    """Probe findings 2, 3, 5, 10: no byte cap (chunked: none at all), no point cap, nesting -> 500,
    a 5000-digit integer -> FastAPI's {"detail": ...}, a list index instead of a field name."""
    t0 = time.perf_counter()
    r = refine(server, view_id, {"frame": "pixel", "positive_points": [[1.0, 1.0]] * 1001})
    assert_error(r, 422, "bad_prompt", "1,001 points", "at most 1,000")
    assert time.perf_counter() - t0 < 10
    assert refine(server, view_id, {"frame": "pixel", "positive_points": [[10.0, 10.0]] * 50}).status_code == 200
    r = refine(server, view_id, b" " * (2 << 20))
    assert_error(r, 413, "upload_too_large")
    r = refine(server, view_id, (b" " * (256 << 10) for _ in range(8)))  # chunked
    assert_error(r, 413, "upload_too_large")
    assert r.headers["connection"] == "close"
    for body in (
        "[" * 5000 + "]" * 5000,
        '{"box": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"instance": ' + "9" * 5000 + "}",
        "{not json",
    ):
        assert_error(refine(server, view_id, body), 400, "bad_request", "JSON")
    err = assert_error(refine(server, view_id, {"positive_points": [[1, "x"]]}), 400, "bad_request")
    assert "`positive_points[0][1]`" in err["message"], err
    err = assert_error(refine(server, view_id, {"frame": "mars"}), 400, "bad_request", "`frame`")
    assert server.get("/v1/health").status_code == 200


def test_deeply_nested_options_are_a_400_not_a_500(server, small):
    for options in (
        "[" * 5000 + "]" * 5000,
        "[" * 100_000 + "]" * 100_000,
        '{"bands": ' + "[" * 100 + "]" * 100 + "}",
        "{" + '"a": {' * 5000 + "}" * 5001,
    ):
        for endpoint in ("/v1/segment", "/v1/jobs"):
            assert_error(server.post(small, options=options, endpoint=endpoint), 400, "bad_request", "`options`")
    assert server.files_left() == []


def test_unknown_routes_and_wrong_methods_answer_in_our_shape(server):
    assert_error(server.get("/v1/nothing"), 404, "not_found", "/v1/nothing")
    assert_error(httpx.get(server.url + "/v1/nothing", headers={"Authorization": "Bearer nope"}), 401, "unauthorized")
    r = httpx.delete(server.url + "/v1/health", headers=server.headers)
    assert_error(r, 405, "method_not_allowed", "DELETE")
    assert r.headers["allow"] == "GET"
    assert_error(httpx.put(server.url + "/v1/segment", headers=server.headers), 405, "method_not_allowed")
    assert_error(server.get("/v1/jobs/nope/result"), 404, "job_not_found")


def test_stalled_clients_are_cut_without_a_token(server):
    """Probe finding 9: half a header (no token) or an upload stalled after 1 MB stayed open for good."""
    port = int(server.url.rsplit(":", 1)[1])
    half = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
    for s in half:
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    silent = socket.create_connection(("127.0.0.1", port))
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.sendall(
        (
            f"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {server.token}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 3000000\r\n\r\n"
            '--b\r\nContent-Disposition: form-data; name="image"; filename="x.tif"\r\n\r\n'
        ).encode()
        + b"\0" * (1 << 20)
    )
    t0 = time.perf_counter()
    closed_after = []
    for s in [*half, silent, stalled]:
        s.settimeout(STALL_S * 5)
        answer = b""
        try:
            while data := s.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
        closed_after.append(time.perf_counter() - t0)
        if s is stalled:
            assert answer.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in answer, answer[:300]
        s.close()
    print(f"stalled clients cut after at most {max(closed_after):.1f} s (timeouts {STALL_S} s)")
    assert max(closed_after) < STALL_S * 4
    assert server.get("/v1/health").status_code == 200
    assert server.files_left() == []


# -- errors keep their status, jobs included --------------------------------------------------------------------
def test_a_jobs_user_error_comes_back_as_its_4xx(server, tmp_path):
    import rasterio

    path = tmp_path / "corrupt.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=128,
        height=128,
        count=3,
        dtype="uint8",
        compress="deflate",
        crs="EPSG:32633",
        transform=rasterio.Affine(1, 0, 500000, 0, -1, 4000000),
    ) as ds:
        ds.write(np.random.default_rng(1).integers(0, 255, (3, 128, 128), dtype=np.uint8))
    with rasterio.open(path) as ds:  # keep the header, garble the compressed pixels: opens fine, fails when read
        offset = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[offset:] = os.urandom(len(data) - offset)
    path.write_bytes(bytes(data))
    job = server.post(path, endpoint="/v1/jobs").json()
    st = server.wait_job(job["job_id"])
    assert st["status"] == "failed" and st["error"]["code"] == "read_failed"
    r = server.get(f"/v1/jobs/{job['job_id']}/result")
    assert r.status_code == 422 and r.json()["error"]["code"] == "read_failed"
    assert "corrupt.tif" in r.json()["error"]["message"]
    assert server.files_left() == []


# -- the queue ---------------------------------------------------------------------------------------------------
def test_the_queue_is_bounded_and_gone_clients_are_dropped(server, naip, small):
    slow = {"tile_size": 64, "overlap": 0, "max_reasoning_tokens": 16}  # naip at 64 px: 180 tiles, a minute or more
    running = server.post(naip, options=slow, endpoint="/v1/jobs").json()["job_id"]
    deadline = time.time() + 60
    while server.get(f"/v1/jobs/{running}").json()["status"] == "queued" and time.time() < deadline:
        time.sleep(0.1)
    waiting = [server.post(small, endpoint="/v1/jobs").json()["job_id"] for _ in range(2)]
    r = server.post(small, endpoint="/v1/jobs")
    assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
    assert int(r.headers["Retry-After"]) >= 1
    assert len(server.files_left()) >= 3  # the running job's upload and tiles, the two waiting uploads
    for job_id in waiting:
        assert httpx.delete(f"{server.url}/v1/jobs/{job_id}", headers=server.headers).json()["status"] == "cancelled"
    # a synchronous request whose client gives up while it waits is dropped before its model work
    with pytest.raises(httpx.ReadTimeout):
        server.post(small, timeout=httpx.Timeout(60, read=1.0))
    deadline = time.time() + 10
    while (q := server.get("/v1/health").json()["queue"])["dropped"] < 1 and time.time() < deadline:
        time.sleep(0.1)
    assert q["dropped"] == 1 and q["waiting"] == 0 and q["running"] == 1
    httpx.delete(f"{server.url}/v1/jobs/{running}", headers=server.headers)
    st = server.wait_job(running)
    assert st["status"] == "cancelled"
    r = server.get(f"/v1/jobs/{running}/result")
    assert r.status_code == 409 and r.json()["error"]["code"] == "cancelled"
    assert server.files_left() == []


def test_a_small_raster_with_tiling_options_is_tiled_not_ignored(server, small):
    job = server.post(
        small, options={"tile_size": 64, "overlap": 0, "max_reasoning_tokens": 16}, endpoint="/v1/jobs"
    ).json()
    assert server.wait_job(job["job_id"])["status"] == "done"
    result = server.get(f"/v1/jobs/{job['job_id']}/result").json()
    assert result["read"]["mode"] == "tiled" and result["read"]["tiles"] == 1 and result["read"]["tile_size"] == 64
    assert server.files_left() == []


# -- Host, docs -------------------------------------------------------------------------------------------------
def test_host_header_is_checked_and_docs_are_off(server):
    port = server.url.rsplit(":", 1)[1]
    for host in (
        "evil.example",
        f"evil.example:{port}",
        "127.0.0.2",
        "localhost:80@evil.com",
        "[::1]evil.com",
        "localhost:99999",
        "localhost:",
        "::1",
        "localhost.evil.com",
    ):
        r = server.get("/v1/health", headers={"Host": host})
        assert r.status_code == 421 and r.json()["error"]["code"] == "wrong_host"
    for host in (f"localhost:{port}", f"[::1]:{port}", "127.0.0.1"):
        assert server.get("/v1/health", headers={"Host": host}).status_code == 200
    assert server.get("/docs").status_code == 404 and server.get("/redoc").status_code == 404
    assert httpx.get(server.url + "/openapi.json").status_code == 200


# -- schemathesis ----------------------------------------------------------------------------------------------
def test_schemathesis_finds_no_server_error_and_answers_conform(server):
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    statuses: list[int] = []
    accepted_jobs: list[str] = []

    def explore(operation) -> None:
        model_bound = operation.path == "/v1/segment"  # schemathesis sends real 1-pixel PNG/JPEG/GIF: model work

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25 if model_bound else 60,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def call(case):
            if model_bound and isinstance(case.body, dict) and not case.body.get("options"):
                case.body["options"] = '{"max_reasoning_tokens": 16}'  # keep the model's share of the minute small
            response = case.call(headers=server.headers, timeout=120)
            statuses.append(response.status_code)
            if response.status_code >= 400:  # every error in the documented shape (docs/api.md)
                body = response.json()
                assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
                assert str(server.work) not in body["error"]["message"], body
            if response.status_code == 202:
                accepted_jobs.append(response.json()["job_id"])
            case.validate_response(response, checks=checks, headers=server.headers)

        call()

    for result in schema.get_all_operations():
        explore(result.ok())
    server_errors = sum(s >= 500 for s in statuses)
    print(f"schemathesis: {len(statuses)} cases, {server_errors} 5xx, statuses {sorted(set(statuses))}")
    assert len(statuses) >= 200 and server_errors == 0
    for job_id in accepted_jobs:
        httpx.delete(f"{server.url}/v1/jobs/{job_id}", headers=server.headers)
    for job_id in accepted_jobs:
        server.wait_job(job_id)
    assert server.files_left() == []


def test_refine_of_a_tiled_view_evicted_while_it_waited_is_view_not_found(tiny_models_dir, tmp_path, small, naip):
    """Probe finding 6: with --max-views 1, a refine queued behind a job whose answer evicts its view read a
    deleted raster: 500 `RasterioIOError` naming a server path."""
    cfg, work = tmp_path / "cfg", tmp_path / "work"
    args = [*tiny_model_args(tiny_models_dir), "--work-dir", str(work), "--max-views", "1"]
    tiled = {"tile_size": 64, "overlap": 0, "max_reasoning_tokens": 16}
    with live_service(args, cfg, env=OFFLINE) as svc:
        headers = auth(svc.token)

        def job(path: Path, options: dict) -> str:
            return post_segment(svc.url, svc.token, path, endpoint="/v1/jobs", options=options).json()["job_id"]

        def wait(job_id: str) -> None:
            deadline = time.time() + 120
            while httpx.get(f"{svc.url}/v1/jobs/{job_id}", headers=headers).json()["status"] != "done":
                assert time.time() < deadline
                time.sleep(0.2)

        first = job(small, tiled)
        wait(first)
        view = httpx.get(f"{svc.url}/v1/jobs/{first}/result", headers=headers).json()["view_id"]
        second = job(naip, {**tiled, "tile_size": 256})  # its answer takes the only view slot
        r = httpx.post(
            f"{svc.url}/v1/views/{view}/refine",
            headers=headers,
            timeout=300,
            json={"frame": "pixel", "positive_points": [[10, 10]]},
        )
        wait(second)
    assert r.status_code == 404, r.text
    err = r.json()["error"]
    assert err["code"] == "view_not_found" and "segment the area again" in err["message"], err
    assert str(work) not in err["message"]


# -- SIGTERM ----------------------------------------------------------------------------------------------------
def test_sigterm_stops_taking_work_and_exits_within_seconds(tiny_models_dir, tmp_path, naip, small):
    """Probe finding 8: with a long job running and a /v1/segment waiting, SIGTERM took 38 s (the whole queue)."""
    cfg, work = tmp_path / "cfg", tmp_path / "work"
    args = [*tiny_model_args(tiny_models_dir), "--work-dir", str(work)]
    with live_service(args, cfg, env=OFFLINE) as svc:
        headers = auth(svc.token)
        r = post_segment(
            svc.url,
            svc.token,
            naip,
            endpoint="/v1/jobs",
            options={"tile_size": 64, "overlap": 0, "max_reasoning_tokens": 16},
        )
        job = r.json()["job_id"]
        deadline = time.time() + 120
        while httpx.get(f"{svc.url}/v1/jobs/{job}", headers=headers).json()["status"] == "queued":
            assert time.time() < deadline
            time.sleep(0.1)
        waiting: list[httpx.Response] = []
        t = threading.Thread(target=lambda: waiting.append(post_segment(svc.url, svc.token, small)))
        t.start()
        while httpx.get(f"{svc.url}/v1/health", headers=headers).json()["queue"]["waiting"] < 1:
            assert time.time() < deadline
            time.sleep(0.1)
        t0 = time.perf_counter()
        svc.process.send_signal(signal.SIGTERM)
        svc.process.wait(timeout=60)
        took = time.perf_counter() - t0
        t.join(30)
        log = svc.log_file.read_text()
    print(f"SIGTERM with a job running and a request waiting: exited in {took:.1f} s")
    assert took < 15, log[-2000:]
    assert "stopping (SIGTERM): taking no new work; 1 waiting item(s) dropped, the running job" in log
    assert waiting and waiting[0].status_code == 409 and waiting[0].json()["error"]["code"] == "cancelled"
    assert not list(work.glob("run-*")), "the run folder (upload, tile state) was left behind"


# -- a full disk ----------------------------------------------------------------------------------------------
def test_a_full_disk_is_507_naming_the_work_folder_and_uploads_are_spooled_once_there(tiny_models_dir, tmp_path):
    """Probe finding 7: ENOSPC was a 500 `internal`, and each upload was first spooled to TMPDIR, then copied.
    The backend runs in a user+mount namespace with a 4 MiB tmpfs as its work folder and a 1 MiB one as TMPDIR."""
    import sys

    if subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True).returncode:
        pytest.skip("no unprivileged user namespaces here: cannot mount a small file system")
    cfg, work, tmp = tmp_path / "cfg", tmp_path / "work", tmp_path / "tmpdir"
    for d in (work, tmp):
        d.mkdir()
    wrapper = tmp_path / "python-on-small-disks"
    wrapper.write_text(
        "#!/bin/sh\nexec unshare --user --map-root-user --mount sh -c "
        '\'mount -t tmpfs -o size=4m tmpfs "$0" && mount -t tmpfs -o size=1m tmpfs "$1" && shift && '
        f'exec "$@"\' {work} {tmp} {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    args = [*tiny_model_args(tiny_models_dir), "--work-dir", str(work), "--max-upload-mb", "16"]
    with live_service(args, cfg, python=str(wrapper), env={**OFFLINE, "TMPDIR": str(tmp)}) as svc:

        def upload(size: int) -> httpx.Response:
            return httpx.post(
                svc.url + "/v1/segment",
                headers=auth(svc.token),
                data={"query": "water"},
                files={"image": ("noise.tif", os.urandom(size))},
                timeout=60,
            )

        r = upload(3 << 20)  # over TMPDIR's 1 MiB, under the work folder's 4: spooled in the work folder only
        assert r.status_code == 422 and r.json()["error"]["code"] == "not_a_raster", r.text
        r = upload(6 << 20)
        assert r.status_code == 507, r.text
        err = r.json()["error"]
        assert err["code"] == "disk_full" and str(work) in err["message"] and "--work-dir" in err["message"], err
        assert upload(3 << 20).status_code == 422, "the failed upload's bytes were not freed"
        assert httpx.get(svc.url + "/v1/health", headers=auth(svc.token), timeout=30).status_code == 200


# -- kill -9 mid-job, restart, nothing left ---------------------------------------------------------------------
def test_kill_9_mid_job_then_restart_leaves_nothing(tiny_models_dir, tmp_path, naip):
    cfg, tmp = tmp_path / "cfg", tmp_path / "tmpdir"
    tmp.mkdir()
    work = cfg / "work"
    args = [*tiny_model_args(tiny_models_dir), "--work-dir", str(work)]
    env = {"HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp)}
    with live_service(args, cfg, env=env) as svc:
        r = post_segment(svc.url, svc.token, naip, endpoint="/v1/jobs", options={"tile_size": 64, "overlap": 0})
        assert r.status_code == 202, r.text
        deadline = time.time() + 120
        while not list(work.glob("run-*/tiles-*/tiles/*.json")) and time.time() < deadline:
            time.sleep(0.1)
        os.kill(svc.process.pid, signal.SIGKILL)
        svc.process.wait(timeout=10)
    (killed,) = [p for p in work.glob("run-*") if p.is_dir()]
    assert list(killed.rglob("*.upload")), "the job's upload should be there while nobody cleans up"
    job_id = r.json()["job_id"]
    with live_service(args, cfg, env=env) as again:
        assert not killed.exists(), "the restart did not clear the killed backend's folder"
        # probe finding 12: the job reads as lost to the restart, not as an expired one
        lost = httpx.get(f"{again.url}/v1/jobs/{job_id}", headers=auth(again.token), timeout=30)
        assert lost.status_code == 404 and lost.json()["error"]["code"] == "job_lost", lost.text
        assert "stopped or crashed" in lost.json()["error"]["message"]
        unknown = httpx.get(f"{again.url}/v1/jobs/{'0' * 16}", headers=auth(again.token), timeout=30)
        assert unknown.json()["error"]["code"] == "job_not_found"
    # torch keeps its compile cache (torchinductor_USER) in TMPDIR on purpose: a cache, not a leftover;
    # lost-jobs is the record of jobs lost to a crash (ids only)
    assert (work / "lost-jobs").read_text().split() == [job_id]
    leftovers = [
        str(p)
        for p in (*work.rglob("*"), *tmp.glob("*"))
        if p.name not in (".scan.lock", "lost-jobs") and not p.name.startswith("torchinductor_")
    ]
    assert leftovers == [], leftovers

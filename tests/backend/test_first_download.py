"""The real first run: `think2seg models --fetch` from an empty HF_HOME through the real huggingface_hub client,
against a stand-in hub on loopback (think2seg.testing.hub) reached through HF_ENDPOINT. The client, the cache and
our code are the real ones; the stand-in counts the bytes it serves, cuts or holds a response mid-file and
answers 404/401/500.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from think2seg.testing.hub import StandInHub

ROOT = Path(__file__).resolve().parents[2]
REASONER = "org/tiny-reasoner"
SAM = ("facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt")


@pytest.fixture()
def hub(tiny_models_dir):
    with StandInHub(page_size=4) as h:  # 4 a page: the tree listing's pagination is followed
        h.add_repo(REASONER, tiny_models_dir / "reasoner")
        h.add_repo(SAM[0], files={SAM[1]: tiny_models_dir / "sam2.1_hiera_t.pt"})
        yield h


def _env(hub: StandInHub | None, home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE")}
    env |= {
        "HF_HOME": str(home),
        "HF_ENDPOINT": hub.url if hub else "http://127.0.0.1:9",
        "PYTHONPATH": str(ROOT / "backend"),
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    return env | extra


def _fetch_cmd(model: str = REASONER) -> list[str]:
    return [sys.executable, "-m", "think2seg", "models", "--fetch", "--model", model, "--sam", "tiny"]


def _fetch(hub, home, model=REASONER, timeout=300, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        _fetch_cmd(model), env=_env(hub, home, **extra), capture_output=True, text=True, timeout=timeout
    )


def _file_bytes(hub: StandInHub) -> dict:
    return {k: v for k, v in hub.served.items()}


def _partials(home: Path) -> list[Path]:
    return sorted(home.rglob("*.incomplete"))


def test_first_fetch_downloads_everything_once_and_later_starts_send_nothing(hub, tmp_path, tiny_models_dir):
    home = tmp_path / "hf"
    done = _fetch(hub, home)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reasoner ready:" in done.stdout and "SAM2.1 tiny ready:" in done.stdout
    files = hub.repos[REASONER]
    for name, f in files.items():
        assert hub.served[(REASONER, name)] == f.size, name  # each file whole, once
    assert hub.served[SAM] == hub.repo_size(SAM[0])
    assert any("cursor=" in path for _, path in hub.requests)  # the listing was followed page by page
    snapshot = next((home / "hub" / "models--org--tiny-reasoner" / "snapshots").iterdir())
    assert (snapshot / "model.safetensors").read_bytes() == (
        tiny_models_dir / "reasoner" / "model.safetensors"
    ).read_bytes()
    assert _partials(home) == []

    # Offline afterwards: the cache serves, and not one request reaches the hub.
    hub.requests.clear()
    offline = _fetch(hub, home, HF_HUB_OFFLINE="1")
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert hub.requests == []
    # The hub gone (nothing listens on the endpoint): the cache serves too.
    gone = _fetch(None, home)
    assert gone.returncode == 0, gone.stderr[-3000:]
    assert "reasoner ready:" in gone.stdout


def _serve_cmd(tmp_path: Path) -> list[str]:
    from think2seg.testing.live_service import free_port

    return [
        sys.executable,
        "-m",
        "think2seg",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
        "--token-file",
        str(tmp_path / "token"),
        "--model",
        REASONER,
        "--sam",
        "tiny",
        "--device",
        "cpu",
    ]


@pytest.mark.parametrize("command", ["models --fetch", "serve"])
def test_a_download_killed_mid_file_resumes_and_leaves_no_partial(hub, tmp_path, command):
    home = tmp_path / "hf"
    key = (REASONER, "model.safetensors")
    size = hub.repos[REASONER]["model.safetensors"].size
    etag = hub.repos[REASONER]["model.safetensors"].sha256
    blobs = home / "hub" / "models--org--tiny-reasoner" / "blobs"
    hub.hold[key] = 25 * (1 << 20)  # 25 MiB of 39.5, then the response waits: the client is killed meanwhile
    argv = _fetch_cmd() if command == "models --fetch" else _serve_cmd(tmp_path)
    proc = subprocess.Popen(argv, env=_env(hub, home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:

        def written() -> int:  # what the client has written of the weights (in 1 MiB pieces: DOWNLOAD_PIECE)
            return (
                max((p.stat().st_size for p in blobs.glob(f"{etag}.*.incomplete")), default=0) if blobs.is_dir() else 0
            )

        deadline = time.monotonic() + 240
        while written() < 20 << 20 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            time.sleep(0.05)
        assert written() >= 20 << 20
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 mid-file
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        hub.release()
    left = _partials(home)
    kept = {p.name.split(".", 1)[0]: p.stat().st_size for p in left}
    etag_of = {name: (f.sha256 or f.blob_id) for name, f in hub.repos[REASONER].items()}
    complete = {name for name, e in etag_of.items() if (blobs / e).exists()}
    before = _file_bytes(hub)

    if command == "serve":
        from think2seg.testing.live_service import live_service

        env = _env(hub, home) | {"HF_HUB_OFFLINE": "0"}
        with live_service(
            ["--model", REASONER, "--sam", "tiny", "--device", "cpu"], tmp_path / "again", timeout=300, env=env
        ):
            pass  # ready: the models loaded from what was fetched
    else:
        again = _fetch(hub, home)
        assert again.returncode == 0, again.stderr[-3000:]
    after = _file_bytes(hub)
    for name in complete:  # no completed file is fetched again
        assert after[(REASONER, name)] == before[(REASONER, name)], name
    weights_kept = kept[etag]
    refetched = after[key] - before[key]
    assert refetched == size - weights_kept  # only the missing tail, by a Range request
    assert any(k == key and r == f"bytes={weights_kept}-" for k, r in hub.ranges)
    assert _partials(home) == []  # the killed process's partial is gone (resumed into place)
    print(
        f"\n{command}: killed at {before[key]} bytes served of {size}; partial kept {weights_kept}; "
        f"re-fetched {refetched}"
    )


def test_stale_partials_are_removed_but_a_live_downloads_one_is_left(tmp_path, monkeypatch):
    from filelock import FileLock
    from think2seg import weights

    hub_dir = tmp_path / "hub"
    blobs = hub_dir / "models--org--x" / "blobs"
    locks = hub_dir / ".locks" / "models--org--x"
    blobs.mkdir(parents=True)
    locks.mkdir(parents=True)
    stale, live = blobs / "aaaa.1234abcd.incomplete", blobs / "bbbb.5678abcd.incomplete"
    stale.write_bytes(b"x" * 100)
    live.write_bytes(b"y" * 100)
    monkeypatch.setattr(weights, "_hub_cache_dir", lambda: hub_dir)
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)  # nothing to resume from: stale ones go
    holder = FileLock(str(locks / "bbbb.lock"))
    holder.acquire()  # what a live download in another process holds (flock: a separate descriptor here)
    try:
        report = weights.prepare_cache("org/x", None)
    finally:
        holder.release()
    assert not stale.exists() and live.exists()
    assert report["removed"] == [str(stale)]


def test_no_room_is_refused_before_a_byte_is_fetched(hub, tmp_path):
    from think2seg.weights import room_sentence

    assert room_sentence(10, 10, "/c", "r") is None
    sentence = room_sentence(7_500_000_000, 2_000_000_000, "/home/u/.cache/huggingface/hub", "RicardoString/X")
    assert "7.50 GB" in sentence and "2.00 GB" in sentence and "HF_HOME" in sentence

    # The real process on a real 20 MiB tmpfs (the repo is 56 MB), where mounting one is allowed (root).
    disk = tmp_path / "small-disk"
    disk.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root): the sentence itself is tested above")
    try:
        run = _fetch(hub, disk / "hf")
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    assert run.returncode == 1
    assert "Not enough disk space" in run.stderr and "HF_HOME" in run.stderr, run.stderr[-3000:]
    assert "0.02 GB free" in run.stderr and "0.06 GB more" in run.stderr, run.stderr
    assert sum(hub.served.values()) == 0  # refused before a byte of a file was sent


@pytest.mark.parametrize(
    "status, expect",
    [
        (404, "There is no model 'org/tiny-reasoner'"),
        (401, "are gated: accept the licence"),
        (500, "answered 500 (a fault on its side)"),
    ],
)
def test_hub_errors_each_end_in_their_own_sentence(hub, tmp_path, status, expect):
    hub.fail[REASONER] = status
    run = _fetch(hub, tmp_path / "hf", timeout=200)
    assert run.returncode == 1
    assert expect in run.stderr, run.stderr[-3000:]
    assert "Traceback" not in run.stderr


def test_a_link_that_breaks_every_few_mib_still_finishes_in_one_start(hub, tmp_path):
    """A flaky link: every GET of the weights breaks off after 3 MiB. huggingface_hub resumes (Range) from the
    last piece it wrote; with its 10 MiB pieces nothing was ever written, and five retries later the start failed.
    With 1 MiB pieces (weights.DOWNLOAD_PIECE) each GET adds 3 MiB and the start ends with the weights."""
    from think2seg.weights import DOWNLOAD_PIECE

    key = (REASONER, "model.safetensors")
    size = hub.repos[REASONER]["model.safetensors"].size
    hub.drop[key] = 3 * (1 << 20) + 5000
    run = _fetch(hub, tmp_path / "hf", timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ranges = [r for k, r in hub.ranges if k == key]
    assert len(ranges) >= size // hub.drop[key] - 1  # one resumed GET after each break
    assert hub.served[key] < size + (len(ranges) + 1) * DOWNLOAD_PIECE  # at most a piece again per break
    assert _partials(tmp_path / "hf") == []


def test_a_connection_that_keeps_dropping_ends_in_a_sentence(hub, tmp_path):
    hub.drop[(REASONER, "model.safetensors")] = 100_000  # every GET of it breaks off before a piece is whole
    run = _fetch(hub, tmp_path / "hf", timeout=200)
    assert run.returncode == 1
    assert "broke off while fetching the reasoner weights" in run.stderr, run.stderr[-3000:]
    assert _partials(tmp_path / "hf") == []


def test_serve_from_an_empty_cache_shows_mb_and_percent_in_health_then_loads(hub, tmp_path):
    import httpx
    from think2seg.testing.live_service import live_service

    key = (REASONER, "model.safetensors")
    hub.hold[key] = 25 << 20  # the weights wait at 25 MiB of 39.5 while the test reads /v1/health
    args = ["--model", REASONER, "--sam", "tiny", "--device", "cpu"]
    env = {k: v for k, v in _env(hub, tmp_path / "hf").items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "0"}
    env["PYTHONPATH"] = str(ROOT / "backend")
    with live_service(args, tmp_path / "svc", wait_for="listening on", timeout=300, env=env) as svc:
        headers = {"Authorization": f"Bearer {svc.token}"}
        seen = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            body = httpx.get(svc.url + "/v1/health", headers=headers, timeout=30).json()
            d = body.get("download")
            if d and (d["done_mb"] or 0) > 0:
                seen = body
                break
            time.sleep(0.2)
        hub.release()
        assert seen is not None, svc.log_tail()
        d = seen["download"]
        assert seen["status"] == "loading" and d["what"] == f"reasoner {REASONER}"
        assert 0 < d["done_mb"] < d["total_mb"] and 0 < d["fraction"] < 1, d
        # the whole repo from the first byte on (the hub's figure), each byte counted once
        assert d["total_mb"] == round(hub.repo_size(REASONER) / 1e6, 1)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            body = httpx.get(svc.url + "/v1/health", headers=headers, timeout=30).json()
            if body["status"] != "loading":
                break
            time.sleep(0.5)
        assert body["status"] == "ok", (body, svc.log_tail())
        assert "download" not in body
    print(f"\nhealth while downloading: {d}")

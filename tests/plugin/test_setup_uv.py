"""A Python that can hold the backend: where QGIS's cannot (no venv, or no torch wheel for its version),
*Set up backend…* installs uv, lets it install a standalone CPython and makes the venv with it, and says so.

The real uv (its wheel from $THINK2SEG_UV_WHEELHOUSE, as pip would take it from PyPI) really downloads, checks
and installs a python-build-standalone-layout archive from a mirror on 127.0.0.1: the test packs one from a
Python install on this machine (``python/bin/python3.12``...) and lists it with its sha256 in a downloads JSON
(UV_PYTHON_DOWNLOADS_JSON_URL). A mirror of the release files alone (UV_PYTHON_INSTALL_MIRROR) is refused for
a home-made archive: uv checks it against the sha256 it carries for that release.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from plugin_testing import wait_until

from think2seg_qgis.backend_setup import (
    STANDALONE_PYTHON,
    BackendSetup,
    SetupPlan,
    python_choice,
    standalone_reason,
    venv_python,
)

UV_WHEELHOUSE = "THINK2SEG_UV_WHEELHOUSE"
#: a CPython 3.12 install on this machine to pack as the mirror's archive
SOURCES = sorted(Path("/root/.pyenv/versions").glob("3.12.*")) if Path("/root/.pyenv/versions").is_dir() else []


def test_which_python_and_why():
    assert standalone_reason((3, 11), True, "linux", "x86_64") == ""
    assert standalone_reason((3, 14), True, "win32", "AMD64") == ""  # QGIS 3.44's and 4's Python: torch has cp314
    assert "3.15" in standalone_reason((3, 15), True, "win32", "AMD64")  # past torch's newest wheels
    assert "3.13" in standalone_reason((3, 13), True, "darwin", "x86_64")  # Intel Mac: torch stops at 3.12
    assert standalone_reason((3, 13), True, "darwin", "arm64") == ""
    assert "cannot make a virtual environment" in standalone_reason((3, 11), False, "linux", "x86_64")
    assert "no Python" in standalone_reason(None, False, "win32", "AMD64")
    python, why = python_choice(sys.executable)  # this test's (QGIS's) Python: it can, and says which it is
    assert python == sys.executable and "QGIS's Python 3." in why


def pack(source: Path, folder: Path) -> tuple[Path, str, str]:
    """A python-build-standalone ``install_only`` archive of `source` (without its tests and site-packages)."""
    version = source.name
    name = f"cpython-{version}+20240107-x86_64-unknown-linux-gnu-install_only.tar.gz"
    archive = folder / name
    minor = ".".join(version.split(".")[:2])
    subprocess.run(
        f"tar --transform 's,^\\.,python,' -C {source} --exclude=./lib/python{minor}/test "
        f"--exclude=./lib/python{minor}/site-packages --exclude=__pycache__ -cf - . | gzip -1 > {archive}",
        shell=True, check=True, timeout=120,
    )  # fmt: skip
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest(), version


@pytest.fixture()
def mirror(tmp_path):
    """An HTTP server on 127.0.0.1 serving the archive and a downloads JSON that lists it; its request log."""
    if not SOURCES:
        pytest.skip("no CPython 3.12 install on this machine to pack as the mirror's archive")
    site = tmp_path / "mirror"
    site.mkdir()
    archive, sha256, version = pack(SOURCES[-1], site)
    major, minor, patch = (int(v) for v in version.split("."))
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    url = f"http://127.0.0.1:{server.server_address[1]}"
    key = f"cpython-{version}-linux-x86_64-gnu"
    (site / "downloads.json").write_text(json.dumps({key: {
        "name": "cpython", "arch": {"family": "x86_64", "variant": None}, "os": "linux", "libc": "gnu",
        "major": major, "minor": minor, "patch": patch, "prerelease": "", "url": f"{url}/{archive.name}",
        "sha256": sha256, "variant": None, "build": "20240107",
    }}))  # fmt: skip
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield url, requests, archive.name
    server.shutdown()


@pytest.mark.skipif(sys.platform != "linux", reason="the packed archive is a Linux x86_64 one")
def test_the_set_up_makes_its_venv_with_a_python_uv_installs_from_a_loopback_mirror(
    qgis_app, tmp_path, monkeypatch, mirror
):
    wheels = os.environ.get(UV_WHEELHOUSE, "").strip()
    if not wheels or not list(Path(wheels).glob("uv-*.whl")):
        pytest.skip(f"${UV_WHEELHOUSE} names no folder with a uv wheel (pip takes it from PyPI; tests reach only "
                    "127.0.0.1)")  # fmt: skip
    url, requests, archive = mirror
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", wheels)
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS_JSON_URL", f"{url}/downloads.json")  # the site's own list
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # uv must write nothing outside the set-up's folders
    venv = tmp_path / "think2seg" / "backend-venv"
    wheel = tmp_path / "think2seg-0-py3-none-any.whl"
    wheel.write_bytes(b"")
    why = standalone_reason((3, 15), True, "win32", "AMD64")
    plan = SetupPlan(venv_dir=str(venv), wheel=str(wheel), standalone_python=STANDALONE_PYTHON, python_reason=why)
    setup = BackendSetup(plan, str(tmp_path / "setup.log"))
    first = [s.title for s in setup.steps].index("Installing torch (CPU)")
    setup.steps = setup.steps[:first]  # up to a venv with pip: torch & co. would need the registry
    finished = []
    setup.finished.connect(lambda ok, sentence: finished.append(sentence))
    setup.start()
    assert wait_until(lambda: setup.ok is not None, timeout=300), Path(setup.log_file).read_text()[-3000:]
    log = Path(setup.log_file).read_text()
    assert setup.ok, log[-3000:]
    assert f"/{archive}" in requests and "/downloads.json" in requests  # uv really fetched it from 127.0.0.1
    python = venv_python(str(venv))
    probe = subprocess.run(
        [python, "-c", "import sys, pip; print('%d.%d' % sys.version_info[:2], sys.base_prefix)"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert probe[0] == STANDALONE_PYTHON and probe[1].startswith(str(tmp_path / "think2seg" / "tools" / "python"))
    sentence = finished[0]
    assert f"standalone CPython {STANDALONE_PYTHON} installed by uv" in sentence and why in sentence
    assert f"standalone CPython {STANDALONE_PYTHON} installed by uv" in log.splitlines()[2]  # said before it runs
    assert not (tmp_path / "home" / ".local" / "bin").exists()  # --no-bin: nothing put on the user's PATH

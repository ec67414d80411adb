"""One real *Set up backend…* from the registry, nothing reused (slow; run by hand, never in CI).

Runs the set-up's own code (think2seg_qgis.backend_setup.BackendSetup, as the dialog does) in an offscreen QGIS
with a fresh profile and target folder, no reused site-packages, no wheel folder and a fresh pip cache, then
prints the wall time, the download (the pip cache) and venv sizes, the torch pip chose, and whether the new
environment's ``think2seg serve`` answers /v1/health on the tiny models.

    QT_QPA_PLATFORM=offscreen .venv-qgis/bin/python scripts/real_setup_run.py /tmp/t2s-real [wheel]

Set PIP_CONFIG_FILE=/dev/null (and unset PIP_FIND_LINKS) first where the machine's pip looks at local folders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def du(path: Path) -> str:
    out = subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True, check=False).stdout
    return out.split()[0] if out else "?"


def main() -> int:
    work = Path(sys.argv[1]).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_CONFIG_HOME"] = os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="profile_", dir=work)
    os.environ["PIP_CACHE_DIR"] = str(work / "pip-cache")
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QEventLoop

    app = QgsApplication([], False)
    app.initQgis()
    from think2seg_qgis.backend_setup import BackendSetup, SetupPlan, base_python, bundled_wheel

    wheel = sys.argv[2] if len(sys.argv) > 2 else bundled_wheel()
    venv = work / "backend-venv"
    plan = SetupPlan(venv_dir=str(venv), wheel=wheel, torch="cpu")
    setup = BackendSetup(plan, str(work / "backend-setup.log"))
    loop = QEventLoop()
    setup.progress.connect(lambda i, n, title: print(f"[{time.strftime('%H:%M:%S')}] step {i + 1}/{n}: {title}",
                                                     flush=True))  # fmt: skip
    setup.finished.connect(lambda ok, sentence: (print(sentence, flush=True), loop.quit()))
    started = time.monotonic()
    print(f"base python: {base_python()}; wheel {wheel}", flush=True)
    setup.start()
    if setup.ok is None:
        loop.exec()
    wall = time.monotonic() - started
    figures = {"ok": setup.ok, "wall_s": round(wall), "venv": du(venv), "downloads_pip_cache": du(work / "pip-cache")}
    python = str(venv / "bin" / "python")
    if setup.ok:
        torch = subprocess.run([python, "-c", "import torch; print(torch.__version__, torch.__file__)"],
                               capture_output=True, text=True, check=False)  # fmt: skip
        figures["torch"] = torch.stdout.strip() or torch.stderr[-300:]
        figures["health"] = serve_health(venv, work)
    print(json.dumps(figures, indent=1), flush=True)
    app.exitQgis()
    return 0 if setup.ok else 1


def serve_health(venv: Path, work: Path) -> dict | str:
    tiny = ROOT / ".cache" / "tiny-models"
    token = work / "token"  # the service writes it (a token file others may read is replaced at start)
    port = "18766"
    log = open(work / "serve.log", "w")  # noqa: SIM115 - the server's output for the reader
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    server = subprocess.Popen(
        [str(venv / "bin" / "think2seg"), "serve", "--port", port, "--token-file", str(token), "--device", "cpu",
         "--model", str(tiny / "reasoner"), "--sam", str(tiny / "sam2.1_hiera_t.pt")],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if server.poll() is not None:
                return f"serve exited with {server.returncode}; see {work / 'serve.log'}"
            try:
                secret = token.read_text().strip()
                request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/health",
                                                 headers={"Authorization": f"Bearer {secret}"})  # fmt: skip
                with urllib.request.urlopen(request, timeout=5) as answer:  # nosec B310 - loopback
                    health = json.loads(answer.read())
                    if health.get("status") in ("ok", "error"):
                        return health
            except OSError:
                pass
            time.sleep(2)
        return "no answer from /v1/health in 300 s"
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    sys.exit(main())

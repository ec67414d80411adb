"""“Set up backend”: a managed venv for the backend, made from the plugin zip alone (plus PyPI for dependencies).

Steps, each a command run by ``BackendSetup`` one after the other in a QProcess (QGIS stays responsive):
create the venv, upgrade pip, install torch + torchvision (the CPU or the CUDA build, from PyTorch's index),
install the ``think2seg`` wheel the plugin zip carries (``backend/think2seg-*.whl``, built by ``make package``)
with its dependencies from PyPI, then sam2 without build isolation (it compiles against the venv's torch; its
CUDA extension is optional and skipped). Everything is written to a log; a failed step ends the set-up with one
sentence that names the step and the log.

When QGIS's interpreter cannot hold the backend (it cannot make a venv, or torch has no wheel for its version:
newer than torch's newest wheels, 3.14 today, or past 3.12 on Intel Macs), the set-up installs ``uv`` from PyPI
into ``<folder>/../tools/uv`` (its wheel holds the binary), lets it fetch a standalone CPython (``uv python
install``; offline sites list their own archives and sha256 in ``UV_PYTHON_DOWNLOADS_JSON_URL``), and makes the
venv with that Python (``python_choice`` decides, and its reason is logged and told in the last sentence).

``reuse_site_packages`` adds an existing environment's site-packages to the new venv (a ``.pth`` file): pip then
finds torch & co. already installed and downloads nothing. It serves offline machines that already have the
heavy packages, and the tests.
"""

from __future__ import annotations

import platform
import shutil
import subprocess  # nosec B404  # python_choice probes an interpreter with a fixed command, never a shell
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QObject, QProcess, QProcessEnvironment, pyqtSignal

from .child_env import child_environment
from .errors import SETUP_FAILED, Think2SegError
from .i18n import tr
from .resource_files import PLUGIN_DIR

TORCH_CPU = "cpu"
TORCH_CUDA = "cuda"
TORCH_INDEXES = {
    TORCH_CPU: "https://download.pytorch.org/whl/cpu",
    TORCH_CUDA: "https://download.pytorch.org/whl/cu126",
}
SAM2_REQUIREMENT = "sam2==1.1.0"
TORCH_INSTALL = PLUGIN_DIR / "torch_install.py"
WHEEL_DIRS = (PLUGIN_DIR / "backend", PLUGIN_DIR.parent / "build" / "backend-wheel")
#: pip's words for why it got no package, the most specific cause first (a proxy that cannot be reached is the
#: proxy's fault, not the network's; a refused certificate is neither).
NETWORK_CAUSES = (
    # pip's truststore (pip 24.2+, QGIS 3.40's Python 3.13) cannot check an HTTPS index given as an IP address
    ("address", ("check_hostname requires server_hostname",)),
    ("certificate", ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "SSLCertVerificationError",
                     "SSLError", "WRONG_VERSION_NUMBER")),
    ("proxy", ("ProxyError", "Cannot connect to proxy", "Tunnel connection failed", "407 Proxy Authentication")),
    ("offline", ("Temporary failure in name resolution", "Name or service not known", "nodename nor servname",
                 "getaddrinfo failed", "No address associated with hostname", "Network is unreachable",
                 "NewConnectionError", "Connection refused", "RemoteDisconnected", "Connection aborted",
                 "Connection reset", "ConnectTimeoutError", "Read timed out", "timed out")),
    # the index answered, with no such package or with a page that is no index (pip fails decoding it)
    ("index", ("No matching distribution found", "Could not find a version that satisfies", "UnicodeDecodeError",
               "JSONDecodeError")),
)  # fmt: skip


def default_venv_dir() -> str:
    """``<QGIS profile>/think2seg/backend-venv``: removed with the profile, never inside the plugin folder
    (a plugin upgrade replaces that folder)."""
    return str(Path(QgsApplication.qgisSettingsDirPath()) / "think2seg" / "backend-venv")


def bundled_wheel() -> str:
    """The think2seg wheel the plugin carries; empty when this is not a packaged plugin."""
    for folder in WHEEL_DIRS:
        wheels = sorted(folder.glob("think2seg-*.whl")) if folder.is_dir() else []
        if wheels:
            return str(wheels[-1])
    return ""


#: Python versions torch publishes wheels for (QGIS's interpreter outside them gets a standalone one from uv):
#: PyPI has torch 2.14.1 cp314 manylinux wheels (checked 2026-12-02 with `pip install --dry-run --python-version`),
#: so QGIS 3.44's and QGIS 4's Python 3.14 keep their own interpreter
TORCH_PYTHONS = ((3, 10), (3, 14))
TORCH_PYTHONS_INTEL_MAC = ((3, 10), (3, 12))  # torch's last Intel-Mac wheels (2.2) stop at 3.12
STANDALONE_PYTHON = "3.12"
UV_REQUIREMENT = "uv"
#: What a Python is asked before the set-up builds on it (its version, and whether it can make a venv with pip)
PYTHON_PROBE = (
    "import sys, importlib.util as u; "
    "print('%d.%d' % sys.version_info[:2], int(bool(u.find_spec('venv') and u.find_spec('ensurepip'))))"
)


def standalone_reason(version: tuple[int, int] | None, can_venv: bool, platform: str, machine: str) -> str:
    """Why QGIS's Python cannot hold the backend ("" when it can): a pure function of what was probed."""
    if version is None:
        return tr("no Python 3.10 or newer was found next to QGIS")
    low, high = TORCH_PYTHONS_INTEL_MAC if platform == "darwin" and machine == "x86_64" else TORCH_PYTHONS
    shown = f"{version[0]}.{version[1]}"
    if not low <= version <= high:
        return tr("torch publishes no wheel for QGIS's Python {version} on this system").format(version=shown)
    if not can_venv:
        return tr("QGIS's Python {version} cannot make a virtual environment (no venv/ensurepip)").format(version=shown)
    return ""


def python_choice(python: str = "") -> tuple[str, str]:
    """(interpreter, why): the Python the venv is made with. An empty interpreter means a standalone CPython
    from uv (`why` says what is wrong with QGIS's). Asks the interpreter itself (a fraction of a second)."""
    python = python or base_python()
    version, can_venv = None, False
    if python:
        try:
            probe = subprocess.run(  # nosec B603  # the interpreter and a fixed probe
                [python, "-c", PYTHON_PROBE], capture_output=True, text=True, timeout=30, check=False,
                env=child_environment(proxy={}),
            )  # fmt: skip
            major, minor, flag = probe.stdout.replace(".", " ").split()
            version, can_venv = (int(major), int(minor)), flag == "1"
        except (OSError, ValueError, subprocess.SubprocessError):
            version = None
    reason = standalone_reason(version, can_venv, sys.platform, platform.machine())
    if reason:
        return "", reason
    return python, tr("QGIS's Python {version} ({python})").format(version=f"{version[0]}.{version[1]}", python=python)


def base_python() -> str:
    """A Python (3.10+) to create the venv with. Inside QGIS ``sys.executable`` may be QGIS itself."""
    candidates = [sys.executable] if Path(sys.executable).name.lower().startswith("python") else []
    if sys.platform == "win32":
        candidates += [str(Path(sys.prefix) / "python.exe"), shutil.which("python") or ""]
    else:
        candidates += [shutil.which("python3") or "", "/usr/bin/python3"]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    return ""


def venv_python(venv_dir: str) -> str:
    folder = Path(venv_dir)
    return str(folder / "Scripts" / "python.exe") if sys.platform == "win32" else str(folder / "bin" / "python")


@dataclass
class SetupStep:
    title: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class SetupPlan:
    venv_dir: str
    wheel: str
    torch: str = TORCH_CPU
    python: str = ""  # the base interpreter; empty: base_python()
    reuse_site_packages: str = ""  # an existing site-packages to build on (see the module's docstring)
    standalone_python: str = ""  # e.g. "3.12": a CPython from uv instead of `python` (python_choice)
    python_reason: str = ""  # which Python and why, for the log and the last sentence

    @property
    def tools_dir(self) -> str:
        """Where uv and its Pythons go: beside the venv (``<profile>/think2seg/tools``), never in the plugin."""
        return str(Path(self.venv_dir).parent / "tools")

    def uv(self) -> str:
        return str(Path(self.tools_dir, "uv", "bin", "uv.exe" if sys.platform == "win32" else "uv"))

    def uv_env(self) -> dict[str, str]:
        tools = Path(self.tools_dir)
        return {"UV_PYTHON_INSTALL_DIR": str(tools / "python"), "UV_CACHE_DIR": str(tools / "uv-cache"),
                "UV_NO_CONFIG": "1"}  # fmt: skip

    def steps(self) -> list[SetupStep]:
        python = venv_python(self.venv_dir)
        pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]
        if self.standalone_python:
            uv, env = self.uv(), self.uv_env()
            installer = self.python or base_python() or "python3"
            steps = [
                SetupStep(tr("Installing uv"), [installer, "-m", "pip", "install", "--disable-pip-version-check",
                                                "--upgrade", "--target", str(Path(self.tools_dir, "uv")),
                                                UV_REQUIREMENT]),
                SetupStep(tr("Installing Python {version}").format(version=self.standalone_python),
                          [uv, "python", "install", "--no-bin", self.standalone_python], env),
                SetupStep(tr("Creating the environment"),
                          [uv, "venv", "--python", self.standalone_python, "--allow-existing", self.venv_dir],
                          {**env, "UV_PYTHON_DOWNLOADS": "never", "UV_MANAGED_PYTHON": "1"}),  # never a system one
                # pip from the Python's own bundled wheel: no index needed (uv's --seed would ask one)
                SetupStep(tr("Adding pip"), [python, "-m", "ensurepip", "--upgrade"]),
            ]  # fmt: skip
        else:
            steps = [SetupStep(tr("Creating the environment"), [self.python or base_python(), "-m", "venv",
                                                                self.venv_dir])]  # fmt: skip
        if self.reuse_site_packages:
            code = (
                "import sysconfig, pathlib; "
                "pathlib.Path(sysconfig.get_paths()['purelib'], 'think2seg_reuse.pth')"
                f".write_text({self.reuse_site_packages!r} + '\\n')"
            )
            steps.append(SetupStep(tr("Reusing the installed packages"), [python, "-c", code]))
        steps += [
            # PyTorch's index is asked once first (torch_install.py): unreachable, pip would retry it for minutes
            SetupStep(tr("Installing torch ({kind})").format(kind=self.torch.upper()),
                      [python, str(TORCH_INSTALL), TORCH_INDEXES[self.torch], "--disable-pip-version-check", "torch",
                       "torchvision"], {"THINK2SEG_TORCH_UNREACHABLE": torch_unreachable_sentence(self.torch)}),
            # The package itself into this venv first (--ignore-installed: never touch a reused environment),
            # then its dependencies, which pip takes from PyPI unless already there.
            SetupStep(tr("Installing the Think2Seg backend"), pip + ["--ignore-installed", "--no-deps", self.wheel]),
            SetupStep(tr("Installing its dependencies"), pip + [self.wheel]),
            SetupStep(tr("Installing SAM2"), pip + ["--no-build-isolation", SAM2_REQUIREMENT],
                      {"SAM2_BUILD_CUDA": "0"}),
            SetupStep(tr("Checking the installation"), [python, "-m", "think2seg", "--version"]),
        ]  # fmt: skip
        return steps


class BackendSetup(QObject):
    """Runs a SetupPlan. ``progress(step_index, step_count, title)``, ``output(text)``, ``finished(ok, sentence)``."""

    progress = pyqtSignal(int, int, str)
    output = pyqtSignal(str)
    finished = pyqtSignal(bool, str)

    def __init__(self, plan: SetupPlan, log_file: str, parent: QObject | None = None):
        super().__init__(parent)
        self.plan = plan
        self.log_file = log_file
        self.steps = plan.steps()
        self.index = -1
        self.process: QProcess | None = None
        self.ok: bool | None = None
        self._step_output = ""  # what the running step printed: a failure's cause is read from it

    def start(self) -> None:
        if not self.plan.wheel or not Path(self.plan.wheel).is_file():
            raise Think2SegError(
                SETUP_FAILED,
                tr("This copy of the plugin carries no backend package (think2seg-*.whl); install the plugin "
                   "from its release zip, or point at an existing backend environment instead."),
            )  # fmt: skip
        if not (self.plan.python or base_python() or self.plan.standalone_python):
            raise Think2SegError(
                SETUP_FAILED,
                tr("No Python 3.10 or newer was found to create the backend's environment with: install one "
                   "from python.org, or point at an existing backend environment instead."),
            )  # fmt: skip
        Path(self.log_file).parent.mkdir(parents=True, exist_ok=True)
        Path(self.plan.venv_dir).parent.mkdir(parents=True, exist_ok=True)
        self._log(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} set-up of {self.plan.venv_dir}\n")
        if self.plan.python_reason:
            self._log(self._python_sentence() + "\n")
        self._next()

    def _python_sentence(self) -> str:
        if self.plan.standalone_python:
            return tr("Python: a standalone CPython {version} installed by uv in {folder}, because {why}.").format(
                version=self.plan.standalone_python, folder=self.plan.tools_dir, why=self.plan.python_reason
            )
        return tr("Python: {why}.").format(why=self.plan.python_reason)

    def cancel(self) -> None:
        if self.process is not None:
            self.process.kill()

    def _log(self, text: str) -> None:
        with open(self.log_file, "a", encoding="utf-8") as handle:
            handle.write(text)
        self.output.emit(text)

    def _next(self) -> None:
        self.index += 1
        if self.index >= len(self.steps):
            self.ok = True
            done = tr("The backend is installed in {folder}.").format(folder=self.plan.venv_dir)
            self.finished.emit(True, done + (" " + self._python_sentence() if self.plan.python_reason else ""))
            return
        step = self.steps[self.index]
        self.progress.emit(self.index, len(self.steps), step.title)
        self._log(f"\n$ {' '.join(step.command)}\n")
        self._step_output = ""
        process = QProcess(self)
        environment = QProcessEnvironment()  # not QGIS's PYTHONHOME, PYTHONPATH, PROJ_LIB...: child_env
        env = child_environment(extra={"PYTHONUNBUFFERED": "1", "PIP_NO_INPUT": "1", **step.env})
        if env.get("PIP_RETRIES", "").strip() == "0":
            env["PIP_RETRIES"] = "1"  # pip names a failed connection only in its retry warning: else "no such package"
        for key, value in env.items():
            environment.insert(key, value)
        process.setProcessEnvironment(environment)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        process.readyReadStandardOutput.connect(self._read)
        process.finished.connect(self._step_finished)
        process.errorOccurred.connect(self._step_error)
        self.process = process
        process.start(step.command[0], step.command[1:])

    def _read(self) -> None:
        if self.process is not None:
            text = bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
            self._step_output += text
            self._log(text)

    def _step_error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._fail(tr("could not run {program}").format(program=self.steps[self.index].command[0]))

    def _step_finished(self, code: int, _status) -> None:
        self._read()
        if self.ok is not None:
            return
        if code != 0:
            cause = network_failure(self._step_output)
            if cause:
                self._fail(*network_sentences()[cause])
            else:
                self._fail(tr("it exited with code {code}").format(code=code))
            return
        self._next()

    def _fail(self, why: str, advice: str = "") -> None:
        if self.ok is not None:
            return
        self.ok = False
        step = self.steps[self.index]
        sentence = tr("Setting up the backend failed at “{step}”: {why}. The details are in {log}.").format(
            step=step.title, why=why, log=self.log_file
        )
        if advice:
            sentence += " " + advice
        self._log(f"\n{sentence}\n")
        self.finished.emit(False, sentence)


def torch_unreachable_sentence(kind: str) -> str:
    """What the torch step prints when PyTorch's index does not answer (torch_install.py)."""
    build = tr("the CPU build") if kind == TORCH_CPU else tr("the CUDA build")
    return tr(
        "PyTorch's index ({url}) cannot be reached, so torch comes from PyPI instead, which may not be {build} "
        "(on Linux PyPI's torch is the CUDA build, about 3 GB more; on Windows it is the CPU build). For {build}, "
        "let this computer reach download.pytorch.org, or put its wheels in a folder named by PIP_FIND_LINKS."
    ).format(url=TORCH_INDEXES[kind], build=build)


def network_failure(output: str) -> str:
    """Why pip got no package, from what it printed: "address", "certificate", "proxy", "offline", "index",
    or ""."""
    for cause, marks in NETWORK_CAUSES:
        if any(mark in output for mark in marks):
            return cause
    return ""


def network_sentences() -> dict[str, tuple[str, str]]:
    """Per cause of network_failure: (what happened, what to do), for the set-up's last sentence."""
    offline_sites = tr(
        "On a site without internet, point pip at a mirror (PIP_INDEX_URL) or at a folder of wheels "
        "(PIP_FIND_LINKS with PIP_NO_INDEX=1) before starting QGIS."
    )
    return {
        "address": (
            tr("pip could not check the certificate of a package index named by its IP address (pip's use of "
               "the system's certificates needs a host name)"),
            tr("Name the index by its host name in PIP_INDEX_URL, or set PIP_USE_DEPRECATED=legacy-certs before "
               "starting QGIS, then press Install again."),
        ),
        "certificate": (
            tr("a certificate was refused on the way to the package index (a firewall or proxy that inspects "
               "HTTPS, or a mirror with its own certificate)"),
            tr("Give pip your organisation's certificate (PIP_CERT or SSL_CERT_FILE, set before QGIS starts), "
               "then press Install again."),
        ),
        "proxy": (
            tr("the proxy refused the connection or could not be reached"),
            tr("Check the proxy under QGIS's Settings > Options > Network (host, port, user and password), "
               "then press Install again."),
        ),
        "offline": (
            tr("pip could not reach the Python package index (no network, or a firewall in between)"),
            tr("Connect this computer to the internet, or set your proxy under QGIS's Settings > Options > "
               "Network, then press Install again.") + " " + offline_sites,
        ),
        "index": (
            tr("the package index answered, but with no usable version of a package (a mirror that lacks it, or "
               "a page that is no package index, such as a network's log-in page)"),
            tr("If PIP_INDEX_URL names a mirror, check that it carries torch and the backend's dependencies for "
               "this Python, then press Install again.") + " " + offline_sites,
        ),
    }  # fmt: skip

"""What plugins.qgis.org's upload scan runs, on the plugin zip: a zip that passes here passes there.

Usage: python3 scripts/check_publish.py dist/think2seg_qgis.zip --tools build/publish-venv/bin

The site extracts the zip and runs Bandit (``-r -f json``), detect-secrets (``scan --all-files``, metadata.txt
excluded) and flake8 (``--max-line-length=120``, the error classes chosen by the site's admins), and flags Python
files with the executable bit, hidden files and executables/scripts (.sh, .exe, .so, ...). Here a version is
refused on: any Bandit finding of medium or high severity (low ones are listed; deliberate ones carry
``# nosec BXXX  # reason`` in the source), any detect-secrets finding, any flake8 error of the classes that mean
broken code (E9, F63, F7, F82), a call to exec/eval, an executable ``.py``, a hidden file, a script or binary,
``.pyc``/``__pycache__``, more than 25 MB, and metadata.txt without what the site requires (plus
``qgisMaximumVersion`` 4.99: the site no longer reads supportsQt6, so that key is what offers the plugin to
QGIS 4). Exit status 0: publishable; 1: the problems, one a line.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import json
import os
import subprocess  # nosec B404  # runs the scanners the plugin site runs, from the publish venv
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import plugin_package  # noqa: E402

MAX_BYTES = 25 * 1024 * 1024
FLAKE8_ERRORS = "E9,F63,F7,F82"
HIDDEN_ALLOWED = {".gitignore", ".gitattributes", ".bandit", ".secrets.baseline", ".flake8"}
SCRIPT_SUFFIXES = (".exe", ".dll", ".so", ".dylib", ".bat", ".sh", ".ps1", ".cmd")
QGIS_MAXIMUM = (4, 99)


def file_problems(path: Path) -> list[str]:
    """The checks on the zip's entries and metadata (no external tool needed)."""
    problems = []
    size = path.stat().st_size
    if size > MAX_BYTES:
        problems.append(f"the zip is {size / 1e6:.1f} MB; plugins.qgis.org takes at most 25 MB")
    problems += plugin_package.check_zip(path)
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename
            base = os.path.basename(name.rstrip("/"))
            mode = info.external_attr >> 16
            if name.endswith(".py") and mode & 0o111:
                problems.append(f"{name}: a Python file with the executable bit (chmod -x it)")
            if base.startswith(".") and base not in HIDDEN_ALLOWED:
                problems.append(f"{name}: a hidden file")
            if name.lower().endswith(SCRIPT_SUFFIXES):
                problems.append(f"{name}: a script or binary, which the site flags")
            if "__pycache__" in name.split("/") or name.endswith((".pyc", ".pyo")):
                problems.append(f"{name}: compiled Python")
            if name.endswith(".py"):
                problems += [f"{name}:{line}: {what}" for line, what in exec_eval_calls(archive.read(name))]
        meta_name = f"{plugin_package.PLUGIN}/metadata.txt"
        if meta_name in archive.namelist():
            parser = configparser.ConfigParser(interpolation=None)
            parser.read_string(archive.read(meta_name).decode("utf-8"))
            maximum = parser.get("general", "qgisMaximumVersion", fallback="")
            try:
                ok = tuple(int(part) for part in maximum.split(".")[:2]) >= QGIS_MAXIMUM
            except ValueError:
                ok = False
            if not ok:
                problems.append(f"metadata.txt: qgisMaximumVersion is {maximum!r}; 4.99 offers the plugin to QGIS 4")
    return problems


def exec_eval_calls(source: bytes) -> list[tuple[int, str]]:
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        return [(error.lineno or 0, f"does not parse: {error.msg}")]
    return [
        (node.lineno, f"calls {node.func.id}(), which the site flags")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("exec", "eval")
    ]


def tool(tools: Path, name: str) -> str:
    exe = tools / name
    if not exe.is_file():
        raise SystemExit(f"{exe} is missing: `make check-publish` creates the publish venv with it.")
    return str(exe)


def run(cmd: list[str], cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)  # nosec B603  # our own tools


def tool_problems(folder: str, tools: Path) -> tuple[list[str], list[str]]:
    """Bandit, detect-secrets and flake8 on the extracted zip: (problems, notes)."""
    problems, notes = [], []
    py_files = sorted(str(p) for p in Path(folder).rglob("*.py"))
    result = run([tool(tools, "bandit"), "-r", folder, "-f", "json", "-q"], folder)
    try:
        findings = json.loads(result.stdout)["results"]
    except (ValueError, KeyError):
        return [f"Bandit gave no report: {result.stderr.strip()[:400]}"], notes
    for item in findings:
        where = f"{os.path.relpath(item['filename'], folder)}:{item['line_number']}"
        line = f"{where}: Bandit {item['test_id']} {item['issue_severity']}: {item['issue_text']}"
        (notes if item["issue_severity"] == "LOW" else problems).append(line)
    result = run(
        [tool(tools, "detect-secrets"), "scan", "--all-files", "--exclude-files", r"metadata\.txt", "."],
        folder,
    )
    try:
        secrets = json.loads(result.stdout)["results"]
    except (ValueError, KeyError):
        return problems + [f"detect-secrets gave no report: {result.stderr.strip()[:400]}"], notes
    for name, found in secrets.items():
        problems += [f"{name}:{s.get('line_number', 0)}: detect-secrets: {s.get('type')}" for s in found]
    result = run([tool(tools, "flake8"), "--max-line-length=120", f"--select={FLAKE8_ERRORS}", *py_files], folder)
    problems += [line.replace(folder + os.sep, "") for line in result.stdout.splitlines() if line.strip()]
    if result.returncode not in (0, 1):
        problems.append(f"flake8 failed: {result.stderr.strip()[:400]}")
    return problems, notes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zip")
    parser.add_argument("--tools", default="build/publish-venv/bin", help="folder with bandit, detect-secrets, flake8")
    args = parser.parse_args(argv[1:])
    started = time.monotonic()
    path = Path(args.zip)
    if not path.is_file():
        print(f"{path} does not exist: `make package` builds it.", file=sys.stderr)
        return 1
    problems = file_problems(path)
    with tempfile.TemporaryDirectory(prefix="think2seg-publish-") as folder:
        with zipfile.ZipFile(path) as archive:
            archive.extractall(folder)
        found, notes = tool_problems(folder, Path(args.tools).resolve())
    problems += found
    for note in notes:
        print(f"  low (accepted): {note}")
    if problems:
        print(f"{path}: plugins.qgis.org would flag or refuse it:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(
        f"{path}: publishable ({path.stat().st_size / 1e6:.1f} MB; Bandit: no medium/high, {len(notes)} low; "
        f"detect-secrets: none; flake8 {FLAKE8_ERRORS}: none; {time.monotonic() - started:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

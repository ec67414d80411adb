"""The zip `make package` builds is what plugins.qgis.org and QGIS 4 accept, with the publishing fields filled."""

from __future__ import annotations

import ast
import configparser
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import plugin_package  # noqa: E402


def make_defaults() -> list[str]:
    """The --meta arguments mk/qgis.mk passes (its PLUGIN_* defaults), read from the makefile itself."""
    text = (ROOT / "mk" / "qgis.mk").read_text()
    values = dict(re.findall(r"^PLUGIN_([A-Z]+) \?= (.+)$", text, flags=re.MULTILINE))
    values = {k: re.sub(r"\$\(PLUGIN_([A-Z]+)\)", lambda m: values[m.group(1)], v) for k, v in values.items()}
    assert {"AUTHOR", "EMAIL", "REPOSITORY", "HOMEPAGE", "TRACKER"} <= set(values)
    return [arg for key, value in values.items() for arg in ("--meta", f"{key.lower()}={value}")]


def build(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plugin_package.py"), str(tmp_path / "plugin.zip"), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_zip_is_publishable(tmp_path):
    wheel = tmp_path / "think2seg-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:  # stands in for the wheel build: only its carrying is checked
        archive.writestr("think2seg/__init__.py", "")
    result = build(tmp_path, *make_defaults(), "--backend-wheel", str(wheel))
    assert result.returncode == 0, result.stderr
    target = tmp_path / "plugin.zip"
    assert plugin_package.check_zip(target) == []
    with zipfile.ZipFile(target) as archive:
        names = set(archive.namelist())
        metadata = configparser.ConfigParser(interpolation=None)
        metadata.read_string(archive.read("think2seg_qgis/metadata.txt").decode())
    general = metadata["general"]
    assert general["supportsQt6"] == "True"
    assert general["qgisMaximumVersion"] == "4.99"
    assert general["category"] == "Raster"  # the menu entry lives in the Raster menu
    assert general["tracker"].startswith("https://") and general["repository"].startswith("https://")
    assert "think2seg_qgis/LICENSE" in names
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    assert "think2seg_qgis/i18n/think2seg_qgis.ts" in names
    assert f"think2seg_qgis/backend/{wheel.name}" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_unfilled_publishing_fields_refuse_the_zip(tmp_path):
    result = build(tmp_path, "--meta", "author=Someone")
    assert result.returncode == 2
    assert "@PLUGIN_EMAIL@" in result.stderr
    assert not (tmp_path / "plugin.zip").exists()


def test_the_translation_template_is_current():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plugin_i18n.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


# Calls whose text a user reads (messages, log lines, labels, tool tips), and the index of their first text argument.
USER_TEXT_CALLS = {
    "Think2SegError": 1,
    "QgsProcessingException": 0,
    "RuntimeError": 0,
    "logMessage": 0,
    "pushInfo": 0,
    "pushWarning": 0,
    "reportError": 0,
    "setText": 0,
    "setToolTip": 0,
    "setWindowTitle": 0,
    "setPlaceholderText": 0,
    "QLabel": 0,
    "QPushButton": 0,
    "QCheckBox": 0,
    "QToolButton": 0,
}


def _untranslated_words(node: ast.expr) -> str:
    """The literal words of a string or f-string argument (HTML tags and URLs are not words to translate)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.JoinedStr):
        text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
    else:
        return ""  # tr(...), a variable, a call: translated where it was made
    text = re.sub(r"<[^>]*>|\S+://\S+", " ", text)
    return text if re.search(r"[A-Za-z]{2,}", text) else ""


def test_user_visible_strings_go_through_tr():
    """A sentence written straight into a message, log line or widget would stay English in every language."""
    bare = []
    for path in sorted((ROOT / "think2seg_qgis").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", "")
            if name in USER_TEXT_CALLS:
                for argument in node.args[USER_TEXT_CALLS[name] :]:
                    if _untranslated_words(argument):
                        bare.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(argument)[:80]}")
    assert not bare, "wrap these in tr(...):\n" + "\n".join(bare)


PUBLISH_TOOLS = ROOT / "build" / "publish-venv" / "bin"


def _bad_zip(tmp_path: Path) -> Path:
    """A publishable zip, then what plugins.qgis.org's scan flags added to it."""
    result = build(tmp_path, *make_defaults())
    assert result.returncode == 0, result.stderr
    good, bad = tmp_path / "plugin.zip", tmp_path / "bad.zip"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(bad, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item))
        runner = zipfile.ZipInfo("think2seg_qgis/runner.py")
        runner.external_attr = 0o100755 << 16
        target.writestr(runner, "import subprocess\n\n\ndef go(text):\n    subprocess.call(text, shell=True)\n"
                        "    return eval(text)\n")  # fmt: skip
        target.writestr("think2seg_qgis/.env", "x=1\n")
        target.writestr("think2seg_qgis/keys.py", 'AWS = "AKIAIOSFODNN7EXAMPLE"\n')
        target.writestr("think2seg_qgis/__pycache__/x.cpython-311.pyc", b"")
    return bad


def test_the_publish_check_refuses_what_the_site_flags(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import check_publish

    problems = "\n".join(check_publish.file_problems(_bad_zip(tmp_path)))
    assert "runner.py: a Python file with the executable bit" in problems
    assert "runner.py:6: calls eval()" in problems
    assert "think2seg_qgis/.env: a hidden file" in problems
    assert "compiled Python" in problems
    assert check_publish.file_problems(tmp_path / "plugin.zip") == []


def test_the_publish_scanners_refuse_a_high_finding_and_a_secret(tmp_path):
    if not (PUBLISH_TOOLS / "bandit").is_file():
        pytest.skip(f"the publish venv is not built ({PUBLISH_TOOLS}): `make check-publish` builds it")
    probe = subprocess.run([str(PUBLISH_TOOLS / "bandit"), "--version"], capture_output=True, timeout=60)
    if probe.returncode != 0:  # e.g. in a QGIS chroot: the venv was made with the host's Python
        pytest.skip(f"the publish venv ({PUBLISH_TOOLS}) does not run on this Python; `make check-publish` on the host")
    bad = _bad_zip(tmp_path)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_publish.py"), str(bad), "--tools", str(PUBLISH_TOOLS)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Bandit B602 HIGH" in result.stderr
    assert "keys.py:1: detect-secrets: AWS Access Key" in result.stderr
    ok = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_publish.py"), str(tmp_path / "plugin.zip"), "--tools",
         str(PUBLISH_TOOLS)], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "publishable" in ok.stdout

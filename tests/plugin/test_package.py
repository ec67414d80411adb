"""The zip `make package` builds is what plugins.qgis.org and QGIS 4 accept, with the publishing fields filled."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
import zipfile
from pathlib import Path

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

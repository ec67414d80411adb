"""Build the plugin zip that QGIS's "Install from ZIP" and plugins.qgis.org accept: one top folder, think2seg_qgis/.

Usage: python3 scripts/plugin_package.py dist/think2seg_qgis.zip [--meta KEY=VALUE ...] [--backend-wheel WHL]

The zip holds the package's Python files, metadata.txt (its ``@PLUGIN_*@`` placeholders filled from ``--meta``,
which mk/qgis.mk sets in one place), LICENSE, the translation template, the run-time resources (icons, QML
styles) and, when given, the backend's wheel (``backend/``) that "Set up backend" installs from. ``check_zip``
is what plugins.qgis.org checks, so tests and the Makefile refuse a zip it would reject.
"""

from __future__ import annotations

import argparse
import configparser
import re
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "think2seg_qgis"
RESOURCE_DIRS = ("icons", "styles")
BACKEND_DIR = "backend"  # inside the plugin folder: where "Set up backend" finds the wheel
PLACEHOLDER = re.compile(r"@PLUGIN_[A-Z_]+@")
REQUIRED_METADATA = (
    "name", "qgisMinimumVersion", "qgisMaximumVersion", "description", "about", "version", "author", "email",
    "repository", "tracker", "homepage", "license", "category", "icon", "supportsQt6",
)  # fmt: skip
FORBIDDEN_PARTS = ("__pycache__", ".git", ".pytest_cache")
FORBIDDEN_SUFFIXES = (".pyc", ".pyo")


def fill_metadata(text: str, values: dict[str, str]) -> str:
    """metadata.txt with every ``@PLUGIN_KEY@`` replaced; raises ValueError naming any left unfilled."""
    for key, value in values.items():
        text = text.replace(f"@PLUGIN_{key.upper()}@", value)
    left = sorted(set(PLACEHOLDER.findall(text)))
    if left:
        raise ValueError(f"metadata.txt placeholders without a value (set them in mk/qgis.mk): {', '.join(left)}")
    return text


def plugin_files() -> list[tuple[Path, str]]:
    files = []
    for path in sorted((ROOT / PLUGIN).rglob("*")):
        parts = path.relative_to(ROOT / PLUGIN).parts
        if path.is_file() and not set(parts) & set(FORBIDDEN_PARTS) and path.suffix not in FORBIDDEN_SUFFIXES:
            files.append((path, f"{PLUGIN}/{path.relative_to(ROOT / PLUGIN).as_posix()}"))
    for name in RESOURCE_DIRS:
        folder = ROOT / "resources" / name
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            if path.is_file():
                files.append((path, f"{PLUGIN}/resources/{name}/{path.name}"))
    files.append((ROOT / "LICENSE", f"{PLUGIN}/LICENSE"))
    if (ROOT / "README.md").is_file():
        files.append((ROOT / "README.md", f"{PLUGIN}/README.md"))
    return files


def check_zip(path: Path) -> list[str]:
    """What plugins.qgis.org would reject in this zip (empty: nothing)."""
    problems = []
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        tops = {name.split("/", 1)[0] for name in names}
        if tops != {PLUGIN}:
            problems.append(f"one top folder {PLUGIN}/ expected, found {sorted(tops)}")
        for name in names:
            if set(name.split("/")) & set(FORBIDDEN_PARTS) or name.endswith(FORBIDDEN_SUFFIXES):
                problems.append(f"not allowed in a plugin zip: {name}")
        for needed in ("__init__.py", "metadata.txt", "LICENSE"):
            if f"{PLUGIN}/{needed}" not in names:
                problems.append(f"missing {PLUGIN}/{needed}")
        if f"{PLUGIN}/metadata.txt" in names:
            parser = configparser.ConfigParser(interpolation=None)
            parser.read_string(archive.read(f"{PLUGIN}/metadata.txt").decode("utf-8"))
            general = parser["general"] if parser.has_section("general") else {}
            for key in REQUIRED_METADATA:
                value = str(general.get(key, "")).strip()
                if not value or PLACEHOLDER.search(value) or "example.org" in value:
                    problems.append(f"metadata.txt: {key} is missing or a placeholder ({value!r})")
            icon = str(general.get("icon", "")).strip()
            if icon and f"{PLUGIN}/{icon}" not in names:
                problems.append(f"metadata.txt: the icon {icon} is not in the zip")
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", default=str(ROOT / "dist" / f"{PLUGIN}.zip"))
    parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--backend-wheel", default="", help="the think2seg wheel to carry for 'Set up backend'")
    args = parser.parse_args(argv[1:])
    values = dict(item.split("=", 1) for item in args.meta)
    try:
        metadata = fill_metadata((ROOT / "metadata.txt").read_text(encoding="utf-8"), values)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    target = Path(args.target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".zip.tmp")
    files = plugin_files()
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in files:
            archive.write(path, name)
        archive.writestr(f"{PLUGIN}/metadata.txt", metadata)
        if args.backend_wheel:
            wheel = Path(args.backend_wheel)
            archive.write(wheel, f"{PLUGIN}/{BACKEND_DIR}/{wheel.name}")
    problems = check_zip(tmp)
    if problems:
        tmp.unlink()
        print("The zip would be rejected:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    tmp.replace(target)
    print(f"{target}: {len(files) + 1 + bool(args.backend_wheel)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

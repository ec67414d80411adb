"""Build the plugin zip that QGIS's "Install from ZIP" accepts: one top folder, think2seg_qgis/.

Usage: python3 scripts/plugin_package.py dist/think2seg_qgis.zip
The zip holds the package's Python files, metadata.txt and the run-time resources (icons, QML styles).
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "think2seg_qgis"
RESOURCE_DIRS = ("icons", "styles", "ui")


def plugin_files() -> list[tuple[Path, str]]:
    files = []
    for path in sorted((ROOT / PLUGIN).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            files.append((path, f"{PLUGIN}/{path.relative_to(ROOT / PLUGIN).as_posix()}"))
    files.append((ROOT / "metadata.txt", f"{PLUGIN}/metadata.txt"))
    for name in RESOURCE_DIRS:
        folder = ROOT / "resources" / name
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            if path.is_file():
                files.append((path, f"{PLUGIN}/resources/{name}/{path.name}"))
    for extra in ("LICENSE", "README.md"):
        if (ROOT / extra).is_file():
            files.append((ROOT / extra, f"{PLUGIN}/{extra}"))
    return files


def main(argv: list[str]) -> int:
    target = Path(argv[1] if len(argv) > 1 else ROOT / "dist" / f"{PLUGIN}.zip")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in plugin_files():
            archive.write(path, name)
    tmp.replace(target)
    print(f"{target}: {len(plugin_files())} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

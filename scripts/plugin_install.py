"""Install the plugin zip into a QGIS profile and enable it there.

Usage: python3 scripts/plugin_install.py dist/think2seg_qgis.zip PROFILE_DIR
PROFILE_DIR is a profile folder, e.g. ~/.local/share/QGIS/QGIS3/profiles/default. The plugin goes to
PROFILE_DIR/python/plugins/think2seg_qgis (replacing an older copy) and PROFILE_DIR/QGIS/QGIS3.ini gets
``[PythonPlugins] think2seg_qgis=true``. The INI is edited as text, line by line, so that QGIS's own
entries (QSettings escapes, byte arrays) stay exactly as they are.
"""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

PLUGIN = "think2seg_qgis"


def enable_in_ini(ini: Path, key: str = PLUGIN) -> None:
    ini.parent.mkdir(parents=True, exist_ok=True)
    lines = ini.read_text(encoding="utf-8").splitlines() if ini.exists() else []
    out, in_section, done, seen_section = [], False, False, False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if in_section and not done:
                out.append(f"{key}=true")
                done = True
            in_section = stripped == "[PythonPlugins]"
            seen_section = seen_section or in_section
        elif in_section and stripped.split("=", 1)[0].strip() == key:
            if not done:
                out.append(f"{key}=true")
                done = True
            continue
        out.append(line)
    if in_section and not done:
        out.append(f"{key}=true")
        done = True
    if not seen_section:
        if out and out[-1].strip():
            out.append("")
        out += ["[PythonPlugins]", f"{key}=true"]
    ini.write_text("\n".join(out) + "\n", encoding="utf-8")


def install(zip_path: Path, profile: Path) -> Path:
    plugins = profile / "python" / "plugins"
    target = plugins / PLUGIN
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)
    plugins.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(plugins)
    enable_in_ini(profile / "QGIS" / "QGIS3.ini")
    return target


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    target = install(Path(argv[1]), Path(argv[2]).expanduser())
    print(f"installed {target} and enabled it in {Path(argv[2]).expanduser() / 'QGIS' / 'QGIS3.ini'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

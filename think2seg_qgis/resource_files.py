"""Where the plugin's icons and QML styles are: inside the plugin folder once packaged, ../resources in the repo."""

from __future__ import annotations

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
_CANDIDATES = (PLUGIN_DIR / "resources", PLUGIN_DIR.parent / "resources")


def resource_path(kind: str, name: str) -> str:
    """The path of ``resources/<kind>/<name>`` (kind: ``styles`` or ``icons``); empty when missing."""
    for root in _CANDIDATES:
        path = root / kind / name
        if path.is_file():
            return str(path)
    return ""


def style_path(name: str) -> str:
    return resource_path("styles", name)


def icon_path(name: str) -> str:
    return resource_path("icons", name)


def plugin_metadata(key: str) -> str:
    """A value of the packaged plugin's metadata.txt (filled by `make package`); empty when unset or unfilled."""
    import configparser

    for path in (PLUGIN_DIR / "metadata.txt", PLUGIN_DIR.parent / "metadata.txt"):
        if path.is_file():
            parser = configparser.ConfigParser(interpolation=None)
            parser.read(path, encoding="utf-8")
            value = parser.get("general", key, fallback="").strip()
            return "" if value.startswith("@") else value
    return ""

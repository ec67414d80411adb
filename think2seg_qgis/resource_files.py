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

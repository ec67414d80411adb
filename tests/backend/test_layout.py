"""The package layout: the QGIS plugin never imports the model stack or the backend, the backend never imports
the plugin. Imports are read with `ast` (every import statement, at any depth, including inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "think2seg_qgis"
BACKEND = ROOT / "backend" / "think2seg"

#: What QGIS's own Python does not have (or must not load): the model stack, the backend's raster stack and
#: the backend itself. The plugin talks to the backend over HTTP only.
FORBIDDEN_IN_PLUGIN = {
    "torch", "torchvision", "transformers", "sam2", "rasterio", "shapely", "pyogrio", "pyarrow", "fastapi",
    "uvicorn", "huggingface_hub", "accelerate", "peft", "trl", "ray", "think2seg",
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def violations(folder: Path, forbidden: set[str]) -> list[str]:
    out = []
    for path in sorted(folder.rglob("*.py")):
        for line, module in imported_modules(path):
            if module in forbidden:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return out


def test_the_scan_sees_imports_at_any_depth(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import os\nfrom . import sibling\n\ndef f():\n    from torch.nn import Linear\n"
                   "    import sam2.build_sam as b\n")
    assert imported_modules(src) == [(1, "os"), (5, "torch"), (6, "sam2")]


@pytest.mark.parametrize("folder, forbidden", [
    (PLUGIN, FORBIDDEN_IN_PLUGIN),
    (BACKEND, {"think2seg_qgis", "qgis", "PyQt5"}),
], ids=["plugin-imports-no-model-stack-nor-backend", "backend-imports-no-plugin"])
def test_layout(folder, forbidden):
    assert folder.is_dir()
    assert violations(folder, forbidden) == []

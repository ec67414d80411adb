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
    "torch",
    "torchvision",
    "transformers",
    "sam2",
    "rasterio",
    "shapely",
    "pyogrio",
    "pyarrow",
    "fastapi",
    "uvicorn",
    "huggingface_hub",
    "accelerate",
    "peft",
    "trl",
    "ray",
    "think2seg",
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
    src.write_text(
        "import os\nfrom . import sibling\n\ndef f():\n    from torch.nn import Linear\n"
        "    import sam2.build_sam as b\n"
    )
    assert imported_modules(src) == [(1, "os"), (5, "torch"), (6, "sam2")]


@pytest.mark.parametrize(
    "folder, forbidden",
    [
        (PLUGIN, FORBIDDEN_IN_PLUGIN),
        (BACKEND, {"think2seg_qgis", "qgis", "PyQt5"}),
    ],
    ids=["plugin-imports-no-model-stack-nor-backend", "backend-imports-no-plugin"],
)
def test_layout(folder, forbidden):
    assert folder.is_dir()
    assert violations(folder, forbidden) == []


# -- the backend's own import graph ---------------------------------------------------------------------------
def module_name(path: Path, root: Path = BACKEND) -> str:
    """think2seg.a.b for backend/think2seg/a/b.py (a package's __init__ is the package)."""
    parts = ["think2seg", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_imports(path: Path, modules: set[str], root: Path = BACKEND) -> list[tuple[int, str]]:
    """(line, module) of every import of a think2seg module in a file, at any depth (inside functions too),
    relative imports resolved; `from pkg import name` counts `pkg.name` when that is a module, else `pkg`."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []

    def nearest(mod: str) -> str | None:  # the module itself, or the package that holds the name
        while mod and mod not in modules:
            mod = mod.rpartition(".")[0]
        return mod or None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        for t in targets:
            if t == "think2seg" or t.startswith("think2seg."):
                m = nearest(t)
                if m is not None and m != name:
                    found.append((node.lineno, m))
    return found


def import_graph(root: Path = BACKEND) -> dict[str, set[str]]:
    files = sorted(root.rglob("*.py"))
    modules = {module_name(p, root) for p in files}
    return {module_name(p, root): {m for _, m in internal_imports(p, modules, root)} for p in files}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan): each holds an import circle.
    A package importing its own submodules (an `__init__` re-exporting them) is not a circle when the
    submodules do not import the package back; one that does is."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_resolves_relative_imports_and_submodules(tmp_path):
    pkg = tmp_path / "think2seg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from .b import X\n")
    (pkg / "sub" / "b.py").write_text("X = 1\ndef g():\n    from think2seg import a\n    from ..a import f\n")
    graph = import_graph(pkg)
    assert graph["think2seg.a"] == {"think2seg.sub.b"}
    assert graph["think2seg.sub"] == {"think2seg.sub.b"}
    assert graph["think2seg.sub.b"] == {"think2seg.a"}
    assert import_cycles(graph) == [["think2seg.a", "think2seg.sub.b"]]


def test_the_backend_has_no_import_circle():
    """Counting imports inside functions: a circle held open by a late import is still a circle."""
    cycles = import_cycles(import_graph())
    assert cycles == [], "import circles among the backend's modules: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_product_code_does_not_import_the_test_fixtures():
    """think2seg.testing holds fixtures (tiny models, scenes, stand-ins): the product must not need them."""
    files = sorted(BACKEND.rglob("*.py"))
    modules = {module_name(p) for p in files}
    bad = [
        f"{p.relative_to(ROOT)}:{line} imports {m}"
        for p in files
        if not module_name(p).startswith("think2seg.testing")
        for line, m in internal_imports(p, modules)
        if m.startswith("think2seg.testing")
    ]
    assert bad == []

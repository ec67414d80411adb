"""QGIS 4 readiness: every Qt/QGIS enum the plugin names is scoped, resolves here, and (Qt) resolves in PyQt6.

The plugin's source is read with ``ast``: each attribute chain rooted at a name imported from ``qgis.*``
(``Qt.AlignmentFlag.AlignLeft``, ``QgsWkbTypes.GeometryType.PolygonGeometry``) is resolved against the running
QGIS. An enum member must be reached through its enum type (PyQt6 has no unscoped members). Chains rooted in
``qgis.PyQt`` are also resolved against PyQt6 in a separate interpreter when one is given
($THINK2SEG_PYQT6_PYTHON, e.g. by ``make check-qt6``), since PyQt5 and PyQt6 cannot share one process.
Lines marked ``# qt5-only`` (the QVariant fallback in compat.py) are what only QGIS 3 ever runs.
"""

from __future__ import annotations

import ast
import enum
import importlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "think2seg_qgis"
QT5_ONLY = "# qt5-only"
PYQT6_PYTHON = "THINK2SEG_PYQT6_PYTHON"


@dataclass(frozen=True)
class Chain:
    module: str  # where the root name is imported from, e.g. qgis.PyQt.QtCore
    parts: tuple[str, ...]  # ("Qt", "AlignmentFlag", "AlignLeft")
    where: str  # file:line

    @property
    def text(self) -> str:
        return ".".join(self.parts)


def _chain(node: ast.Attribute) -> tuple[str, ...] | None:
    parts = []
    current: ast.AST = node
    while isinstance(current, ast.Attribute):
        parts.append(current.attr)
        current = current.value
    if not isinstance(current, ast.Name):
        return None
    parts.append(current.id)
    return tuple(reversed(parts))


def chains_in(source: str, rel: str) -> list[Chain]:
    """The attribute chains rooted at a name imported from ``qgis.*`` in one file's source."""
    chains: list[Chain] = []
    lines = source.splitlines()
    tree = ast.parse(source)
    imported = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qgis"):
            for alias in node.names:
                imported[alias.asname or alias.name] = node.module
    inner = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            inner.add(id(node.value))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or id(node) in inner:
            continue
        parts = _chain(node)
        if not parts or parts[0] not in imported or QT5_ONLY in lines[node.lineno - 1]:
            continue
        chains.append(Chain(imported[parts[0]], parts, f"{rel}:{node.lineno}"))
    return chains


def plugin_sources() -> list[tuple[str, str]]:
    return [(p.read_text(encoding="utf-8"), p.relative_to(ROOT).as_posix()) for p in sorted(PLUGIN.rglob("*.py"))]


def collect_chains() -> list[Chain]:
    return [chain for source, rel in plugin_sources() for chain in chains_in(source, rel)]


def _is_enum_member(value: object) -> bool:
    if isinstance(value, enum.Enum):
        return True
    # sip (PyQt5 and QGIS 3 bindings): enum members are int subclasses whose type's metatype is sip's enumtype.
    return isinstance(value, int) and type(value) not in (int, bool) and "enumtype" in type(type(value)).__name__


def _resolve(chain: Chain) -> list[object]:
    """The objects along the chain (root first); raises AttributeError where it breaks."""
    objects = [getattr(importlib.import_module(chain.module), chain.parts[0])]
    for name in chain.parts[1:]:
        objects.append(getattr(objects[-1], name))
    return objects


CHAINS = collect_chains()


def test_the_collector_sees_the_plugins_enums():
    texts = {c.text for c in CHAINS}
    # A few the plugin certainly uses: if the collector missed them, the checks below would prove nothing.
    assert "QgsTask.Flag.CanCancel" in texts
    assert "Qgis.MessageLevel.Critical" in texts
    assert "QgsWkbTypes.GeometryType.PolygonGeometry" in texts
    assert len(CHAINS) > 50


def check_chains(chains: list[Chain]) -> tuple[list[str], list[str]]:
    """(names that do not resolve under this QGIS, enum members reached without their enum type)."""
    broken, unscoped = [], []
    for chain in chains:
        try:
            objects = _resolve(chain)
        except AttributeError:
            broken.append(f"{chain.where}: {chain.text}")
            continue
        for position in range(1, len(objects)):
            value, parent = objects[position], objects[position - 1]
            if (
                _is_enum_member(value)
                and parent is not type(value)
                and not (isinstance(parent, type) and issubclass(parent, enum.Enum))
            ):
                unscoped.append(f"{chain.where}: {chain.text} (use {type(value).__name__}.{chain.parts[position]})")
                break
    return broken, unscoped


def test_every_qt_and_qgis_name_resolves_and_enum_members_are_scoped():
    broken, unscoped = check_chains(CHAINS)
    assert not broken, "names that do not resolve under this QGIS:\n" + "\n".join(broken)
    assert not unscoped, "unscoped enum members (PyQt6 rejects them):\n" + "\n".join(unscoped)


def test_the_checks_catch_what_qgis_4_rejects():
    """The checks above and below fail on the Qt5-only spellings (else they would pass on anything)."""
    sample = (
        "from qgis.PyQt.QtCore import Qt, QVariant\n"
        "from qgis.PyQt.QtWidgets import QMessageBox\n"
        "from qgis.core import Qgis\n"
        "a = Qt.AlignLeft\n"
        "b = QMessageBox.Yes\n"
        "c = Qgis.Critical\n"
        "d = QVariant.String\n"
        "dialog.exec_()\n"
    )
    _, unscoped = check_chains(chains_in(sample, "sample.py"))
    assert {u.split(" ")[1] for u in unscoped} >= {"Qt.AlignLeft", "QMessageBox.Yes", "Qgis.Critical"}
    assert [w for w, _ in qt5_spellings(sample, "sample.py", "exec_")] == ["sample.py:8"]
    assert [w for w, _ in qt5_spellings(sample, "sample.py", "QVariant")] == ["sample.py:1", "sample.py:7"]


def qt5_spellings(source: str, rel: str, name: str) -> list[tuple[str, str]]:
    """Where ``name`` is used (a name, an attribute or an import) on a line not marked ``# qt5-only``."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        hit = (
            (isinstance(node, ast.Name) and node.id == name)
            or (isinstance(node, ast.Attribute) and node.attr == name)
            or (isinstance(node, ast.alias) and name in (node.name, node.asname))
        )
        if hit and QT5_ONLY not in lines[node.lineno - 1]:
            found.append((f"{rel}:{node.lineno}", lines[node.lineno - 1].strip()))
    return sorted(set(found))


def test_no_exec_underscore():
    """``exec_()``/``print_()`` are gone in PyQt6 (QGIS 4): ``exec()`` works on PyQt5 5.15 too."""
    found = [
        w for source, rel in plugin_sources() for name in ("exec_", "print_") for w in qt5_spellings(source, rel, name)
    ]
    assert not found, "PyQt5-only method names (use exec()/print()):\n" + "\n".join(f"{w}: {s}" for w, s in found)


def test_qvariant_only_inside_the_version_gate():
    """QVariant (no QVariant.Type under Qt6) only on compat.py's ``# qt5-only`` lines, the branch QGIS < 3.38 runs."""
    found = [w for source, rel in plugin_sources() for w in qt5_spellings(source, rel, "QVariant")]
    assert not found, "QVariant outside compat.py's version gate:\n" + "\n".join(f"{w}: {s}" for w, s in found)
    marked = [rel for source, rel in plugin_sources() if QT5_ONLY in source and not rel.endswith("/compat.py")]
    assert not marked, f"'{QT5_ONLY}' belongs to compat.py's version gate only, found in {marked}"
    compat = (PLUGIN / "compat.py").read_text()
    assert "_USE_QMETATYPE = Qgis.QGIS_VERSION_INT >= 33800" in compat


def test_no_qvariant_field_types_outside_the_compat_helper():
    offenders = [c.where for c in CHAINS if c.parts[0] == "QVariant"]
    assert not offenders, f"QVariant types break under Qt6; use compat.make_field: {offenders}"


_PYQT6_RESOLVER = """
import importlib, json, sys
missing = []
for module, parts in json.load(sys.stdin):
    try:
        obj = importlib.import_module(module)
        for name in parts:
            obj = getattr(obj, name)
    except (ImportError, AttributeError):
        missing.append(".".join(parts))
print(json.dumps(missing))
"""


def test_qt_names_resolve_in_pyqt6():
    python = os.environ.get(PYQT6_PYTHON, "").strip()
    if not python:
        pytest.skip(f"set ${PYQT6_PYTHON} to a Python with PyQt6 (make check-qt6 does) to check Qt6 names")
    qt_chains = [c for c in CHAINS if c.module.startswith("qgis.PyQt.")]
    assert qt_chains
    payload = [[c.module.replace("qgis.PyQt.", "PyQt6."), list(c.parts)] for c in qt_chains]
    result = subprocess.run(
        [python, "-c", _PYQT6_RESOLVER], input=json.dumps(payload), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    missing = sorted(set(json.loads(result.stdout)))
    where = {c.text: c.where for c in qt_chains}
    assert not missing, "Qt names PyQt6 does not have:\n" + "\n".join(f"{where[m]}: {m}" for m in missing)

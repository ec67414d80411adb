"""Write the translation template think2seg_qgis/i18n/think2seg_qgis.ts from every tr("...") in the plugin.

pylupdate5 does not know our module-level ``tr`` (it reads ``self.tr`` in a class context), and pylupdate6 is not
packaged with QGIS 3, so the template is built from the source's syntax tree: each literal argument of ``tr`` or
``tr_noop`` becomes a message of the ``Think2Seg`` context, in Qt Linguist's TS format. A translator copies the
file to think2seg_qgis_<lang>.ts, translates it in Qt Linguist and releases think2seg_qgis_<lang>.qm next to it.

Usage: python3 scripts/plugin_i18n.py [--check]   (--check: exit 1 when the committed template is out of date)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "think2seg_qgis"
TEMPLATE = PLUGIN / "i18n" / "think2seg_qgis.ts"
CONTEXT = "Think2Seg"
MARKERS = ("tr", "tr_noop")


def collect_messages() -> list[tuple[str, str]]:
    """(text, file:line) of each distinct translatable literal, in source order."""
    seen: dict[str, str] = {}
    for path in sorted(PLUGIN.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in MARKERS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                text = node.args[0].value
                seen.setdefault(text, f"{path.relative_to(ROOT).as_posix()}:{node.lineno}")
    return sorted(seen.items(), key=lambda item: item[1])


def render(messages: list[tuple[str, str]]) -> str:
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<!DOCTYPE TS>", '<TS version="2.1">', "<context>",
             f"    <name>{CONTEXT}</name>"]  # fmt: skip
    for text, where in messages:
        filename = where.rsplit(":", 1)[0]  # no line number: the template changes only when a text does
        lines += [
            "    <message>",
            f'        <location filename="../../{escape(filename)}"/>',
            f"        <source>{escape(text)}</source>",
            '        <translation type="unfinished"></translation>',
            "    </message>",
        ]
    lines += ["</context>", "</TS>", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    content = render(collect_messages())
    if "--check" in argv:
        current = TEMPLATE.read_text(encoding="utf-8") if TEMPLATE.is_file() else ""
        if current != content:
            print(f"{TEMPLATE.relative_to(ROOT)} is out of date: run `make i18n`", file=sys.stderr)
            return 1
        return 0
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    TEMPLATE.write_text(content, encoding="utf-8")
    print(f"{TEMPLATE.relative_to(ROOT)}: {len(collect_messages())} messages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The few places where QGIS 3.22 (Qt5) and QGIS 4 (Qt6) need different spellings, each in one helper.

Everything else in the plugin uses the scoped enum names (``Qt.AlignmentFlag.AlignLeft``), which PyQt5 and PyQt6
both accept; tests/plugin/test_qt6_names.py checks that no unscoped member access creeps back in. Lines that
only Qt5 ever runs carry the marker ``# qt5-only`` so that the check skips them.
"""

from __future__ import annotations

from qgis.core import Qgis, QgsField

# QgsField takes a QMetaType.Type from QGIS 3.38 on (and only that under Qt6); QVariant.Type before.
_USE_QMETATYPE = Qgis.QGIS_VERSION_INT >= 33800

FIELD_STRING = "string"
FIELD_INT = "int"
FIELD_DOUBLE = "double"
FIELD_DATETIME = "datetime"
FIELD_BOOL = "bool"


def _field_type(kind: str):
    if _USE_QMETATYPE:
        from qgis.PyQt.QtCore import QMetaType

        return {
            FIELD_STRING: QMetaType.Type.QString,
            FIELD_INT: QMetaType.Type.Int,
            FIELD_DOUBLE: QMetaType.Type.Double,
            FIELD_DATETIME: QMetaType.Type.QDateTime,
            FIELD_BOOL: QMetaType.Type.Bool,
        }[kind]
    from qgis.PyQt.QtCore import QVariant  # qt5-only

    return {
        FIELD_STRING: QVariant.String,  # qt5-only
        FIELD_INT: QVariant.Int,  # qt5-only
        FIELD_DOUBLE: QVariant.Double,  # qt5-only
        FIELD_DATETIME: QVariant.DateTime,  # qt5-only
        FIELD_BOOL: QVariant.Bool,  # qt5-only
    }[kind]


def make_field(name: str, kind: str) -> QgsField:
    """A QgsField of ``kind`` (FIELD_STRING, FIELD_INT, FIELD_DOUBLE, FIELD_DATETIME, FIELD_BOOL) on any QGIS
    3.22-4.x."""
    return QgsField(name, _field_type(kind))

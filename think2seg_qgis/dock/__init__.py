"""The dock panel (widgets only; the work runs in think2seg_qgis.task)."""

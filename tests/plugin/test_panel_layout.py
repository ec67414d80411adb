"""The panel at the dock's minimum width: nothing clipped, even with a long layer name and query."""

from __future__ import annotations

from plugin_testing import NAIP, load_raster
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import QPushButton

from think2seg_qgis import classFactory
from think2seg_qgis.dock.panel import MIN_WIDTH


def test_nothing_is_clipped_at_the_minimum_width(iface, project):
    plugin = classFactory(iface)
    plugin.initGui()
    try:
        panel = plugin.show_panel()
        layer = load_raster(NAIP, "a very long raster layer name from a national agriculture imagery survey 2020")
        project.addMapLayer(layer)
        panel.layer_combo.setLayer(layer)
        panel.set_query("the wetlands that hold water all year round and the ponds next to the farm roads")
        panel.backend_box.settings_box.setCollapsed(False)
        panel.options_box.setCollapsed(False)
        panel.setFloating(True)  # a docked widget takes the width its dock area gives
        panel.resize(MIN_WIDTH, 900)
        for _ in range(5):
            QCoreApplication.processEvents()
        scroll = panel.widget()
        body = scroll.widget()
        assert panel.width() == MIN_WIDTH
        assert body.minimumSizeHint().width() <= scroll.viewport().width(), (
            body.minimumSizeHint().width(),
            scroll.viewport().width(),
        )
        # Every visible button lies inside the visible part of the panel.
        right = scroll.viewport().width()
        for button in body.findChildren(QPushButton):
            if button.isVisible():
                edge = button.mapTo(body, button.rect().topRight()).x()
                assert edge <= right, (button.text(), edge, right)
    finally:
        plugin.unload()

"""QGIS start-up code (qgis --code): open the Think2Seg panel on the first raster layer.

QGIS runs this file once its window and plugins are up; a short timer leaves it time to load the layers
given on the command line.
"""

from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface, plugins


def open_panel() -> None:
    plugin = plugins.get("think2seg_qgis")
    if plugin is None:
        iface.messageBar().pushWarning("Think2Seg", "The Think2Seg plugin is not enabled in this profile.")
        return
    rasters = [layer for layer in QgsProject.instance().mapLayers().values() if isinstance(layer, QgsRasterLayer)]
    if rasters:
        iface.setActiveLayer(rasters[0])
    plugin.show_panel()


QTimer.singleShot(1500, open_panel)

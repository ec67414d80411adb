"""The plugin's life cycle: Processing provider, toolbar button, menu entry, dock panel; unload undoes it all."""

from __future__ import annotations

from qgis.core import QgsApplication, QgsSettings
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .backend_launcher import BackendLauncher
from .i18n import install_translator, remove_translator, tr
from .processing.provider import PROVIDER_ID, Think2SegProvider
from .resource_files import icon_path

MENU = "&Think2Seg"
PANEL_OPEN_KEY = "think2seg/panel/open"


def _value_true(value) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes")


class Think2SegPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider: Think2SegProvider | None = None
        self.action: QAction | None = None
        self.panel = None
        self.launcher: BackendLauncher | None = None

    # -- Processing (no GUI code: also called by qgis_process and headless QGIS) ---------------------------
    def initProcessing(self) -> None:  # noqa: N802 - QGIS naming
        if self.provider is not None:
            return
        registry = QgsApplication.processingRegistry()
        stale = registry.providerById(PROVIDER_ID)
        if stale is not None:  # left behind by an instance that was not unloaded
            registry.removeProvider(stale)
        self.provider = Think2SegProvider()
        registry.addProvider(self.provider)

    # -- GUI ----------------------------------------------------------------------------------------------
    def initGui(self) -> None:  # noqa: N802 - QGIS naming
        install_translator()
        self.initProcessing()
        if self.action is not None:
            return
        self.action = QAction(
            QIcon(icon_path("think2seg.svg")), tr("Think2Seg reasoning segmentation"), self.iface.mainWindow()
        )
        self.action.setObjectName("think2segShowPanel")
        self.action.setCheckable(True)
        self.action.setToolTip(tr("Think2Seg: find what a sentence describes in a raster (opens the panel)"))
        self.action.toggled.connect(self._toggle_panel)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu(MENU, self.action)  # Raster menu: metadata's category=Raster
        if _value_true(QgsSettings().value(PANEL_OPEN_KEY, False)):
            # Open when QGIS last closed: back once QGIS has finished starting (its window and docks restored).
            QTimer.singleShot(0, self._reopen_panel)

    def _reopen_panel(self) -> None:
        if self.action is not None and self.panel is None:
            self.show_panel()

    def _ensure_panel(self):
        if self.panel is None:
            from .dock.panel import Think2SegPanel

            self.launcher = BackendLauncher()
            self.panel = Think2SegPanel(self.iface, self.launcher)
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.panel)
            self.panel.visibilityChanged.connect(self._panel_visibility)
            self.panel.hide()
        return self.panel

    def show_panel(self):
        first = self.panel is None
        panel = self._ensure_panel()
        panel.show()
        panel.raise_()
        if first and hasattr(self.iface.mainWindow(), "resizeDocks"):
            self.iface.mainWindow().resizeDocks([panel], [430], Qt.Orientation.Horizontal)
        if self.action is not None and not self.action.isChecked():
            self.action.blockSignals(True)
            self.action.setChecked(True)
            self.action.blockSignals(False)
        return panel

    def _toggle_panel(self, checked: bool) -> None:
        if checked:
            self.show_panel()
        elif self.panel is not None:
            self.panel.hide()

    def _panel_visibility(self, visible: bool) -> None:
        if self.action is not None and self.action.isChecked() != visible:
            self.action.blockSignals(True)
            self.action.setChecked(visible)
            self.action.blockSignals(False)

    def unload(self) -> None:
        # QGIS unloads its plugins when it quits: remember whether the panel was open, to open it next time.
        QgsSettings().setValue(PANEL_OPEN_KEY, bool(self.panel is not None and self.panel.isVisible()))
        if self.panel is not None:
            self.panel.shutdown()
            self.iface.removeDockWidget(self.panel)
            self.panel.setParent(None)
            self.panel.deleteLater()
            self.panel = None
        if self.launcher is not None:
            self.launcher.stop()
            self.launcher.deleteLater()
            self.launcher = None
        if self.action is not None:
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            try:
                QgsApplication.processingRegistry().removeProvider(self.provider)
            except RuntimeError:  # already deleted by a newer instance that replaced it
                pass
            self.provider = None
        remove_translator()

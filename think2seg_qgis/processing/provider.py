"""The ``think2seg`` Processing provider."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..i18n import tr
from ..resource_files import icon_path
from .segment_algorithm import SegmentAlgorithm

PROVIDER_ID = "think2seg"


class Think2SegProvider(QgsProcessingProvider):
    def id(self) -> str:
        return PROVIDER_ID

    def name(self) -> str:
        return "Think2Seg"

    def longName(self) -> str:
        return tr("Think2Seg reasoning segmentation")

    def icon(self) -> QIcon:
        return QIcon(icon_path("think2seg.svg"))

    def loadAlgorithms(self) -> None:
        self.addAlgorithm(SegmentAlgorithm())

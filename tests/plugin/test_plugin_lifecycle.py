"""The plugin loads, unloads and loads again without leaving or duplicating anything."""

from __future__ import annotations

import configparser
from pathlib import Path

from qgis.core import QgsApplication

from think2seg_qgis import classFactory
from think2seg_qgis.plugin import MENU

ROOT = Path(__file__).resolve().parents[2]


def _providers() -> list:
    return [p for p in QgsApplication.processingRegistry().providers() if p.id() == "think2seg"]


def _our_actions(iface) -> list:
    return [a for a in iface.toolbar_actions() if a.objectName() == "think2segShowPanel"]


def test_metadata_is_complete():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "metadata.txt", encoding="utf-8")
    general = parser["general"]
    for key in (
        "name",
        "qgisMinimumVersion",
        "description",
        "about",
        "version",
        "author",
        "email",
        "repository",
    ):
        assert general.get(key), key
    assert general["hasProcessingProvider"] == "yes"
    assert (ROOT / "resources" / general["icon"].split("resources/", 1)[1]).is_file()


def test_init_processing_alone_registers_the_algorithm(qgis_app):
    plugin = classFactory(None)  # headless: no iface needed for Processing
    plugin.initProcessing()
    try:
        assert len(_providers()) == 1
        algorithm = QgsApplication.processingRegistry().algorithmById("think2seg:segment")
        assert algorithm is not None
        assert algorithm.displayName() == "Reasoning segmentation"
        names = [d.name() for d in algorithm.parameterDefinitions()]
        for name in (
            "INPUT",
            "QUERY",
            "EXTENT",
            "SAM_MODEL",
            "MAX_REASONING_TOKENS",
            "OUTPUT",
            "OUTPUT_POINTS",
            "OUTPUT_BOXES",
            "BACKEND_URL",
            "MAX_IMAGE_SIZE",
        ):
            assert name in names
        assert algorithm.parameterDefinition("EXTENT").flags() & algorithm.parameterDefinition("EXTENT").FlagOptional
        assert algorithm.parameterDefinition("SAM_MODEL").options()[1] == "Small"  # readable labels
        assert algorithm.parameterDefinition("SAM_MODEL").defaultValue() == 4  # the backend's own size
    finally:
        plugin.unload()
    assert _providers() == []


def test_load_unload_twice_leaves_no_duplicates(iface):
    plugin = classFactory(iface)
    plugin.initGui()
    plugin.initGui()  # QGIS may call it again (reload): still one of each
    assert len(_providers()) == 1
    assert len(_our_actions(iface)) == 1
    assert len(iface.menus[MENU]) == 1
    panel = plugin.show_panel()
    assert panel.isVisible()
    assert plugin.action.isChecked()
    plugin.unload()
    assert _providers() == []
    assert _our_actions(iface) == []
    assert iface.menus[MENU] == []
    assert iface.docks == []

    second = classFactory(iface)
    second.initGui()
    second.show_panel()
    assert len(_providers()) == 1
    assert len(_our_actions(iface)) == 1
    assert len(iface.docks) == 1
    second.unload()
    assert _providers() == [] and _our_actions(iface) == [] and iface.docks == []


def test_a_forgotten_instance_does_not_duplicate_the_provider(iface):
    first = classFactory(iface)
    first.initProcessing()
    second = classFactory(iface)
    second.initProcessing()
    assert len(_providers()) == 1
    second.unload()
    first.unload()  # its provider was replaced: unloading must not fail
    assert _providers() == []


def test_toolbar_action_toggles_the_panel(iface):
    plugin = classFactory(iface)
    plugin.initGui()
    try:
        plugin.action.trigger()
        assert plugin.panel is not None and plugin.panel.isVisible()
        plugin.action.trigger()
        assert not plugin.panel.isVisible()
    finally:
        plugin.unload()

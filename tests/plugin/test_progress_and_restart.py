"""Issue 23 items 9 and 16 from the panel, against the real service on the tiny models: a tiled run's progress
moves tile by tile, in sentences; a result saved in a project is refined after QGIS and the backend restart."""

from __future__ import annotations

import pytest
from plugin_testing import wait_until
from test_panel_e2e import _prepare, panel  # noqa: F401 - the panel fixture

pytestmark = pytest.mark.slow


def test_a_tiled_run_moves_the_task_progress_tile_by_tile(panel, iface, project):  # noqa: F811
    """Item 9: the bar sat at 10 % (the area read) until it jumped to 100 % (one batch of tiles)."""
    _prepare(panel, iface, project)
    panel.run_settings.tiled_max_size = 8192
    panel.max_size_spin.setValue(512)  # NAIP is 934 x 723 px: 512 px tiles, a 2 x 2 grid, one batch of 4
    values, messages, outcomes = [], [], []
    panel.finished.connect(lambda outcome, result: outcomes.append(outcome))
    task = panel.run()
    assert task is not None, panel.status_label.text()
    task.progressChanged.connect(values.append)
    task.status_message.connect(messages.append)
    assert wait_until(lambda: outcomes, timeout=300), "the run did not finish"
    assert outcomes[0].error is None and outcomes[0].tiled, outcomes[0].error
    running = sorted({round(v, 3) for v in values if 0 < v < 100})
    assert len(running) > 2, (values, messages)
    assert values == sorted(values), values
    reasoning = [m for m in messages if m.startswith("Reasoning on tiles 1–4 of 4…")]
    assert reasoning and "Tile 3 of 4 done…" in messages, messages
    assert any("tokens written: " in m for m in reasoning), messages  # the bar moves as the reasoner writes
    assert not [m for m in messages if ".tif" in m or ".upload" in m or ": tile" in m], messages


def _click_instance_0(dock, iface, masks, boxes, at: float = 0.3):
    """Refine instance 0 with one positive click inside the model's box (the tool on ``masks``): its answer."""
    from qgis.core import QgsPointXY
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtTest import QTest
    from test_refine_tool import features, screen

    canvas = iface.mapCanvas()
    iface.setActiveLayer(masks)
    dock.refine.action.setChecked(True)
    tool = dock.refine.tool
    combo = dock.refine.instance_combo
    combo.setCurrentIndex(combo.count() - 1)
    combo.setCurrentIndex(0)  # instance 0: the model's prompts, or the ones kept in the layers
    done, errors = [], []
    tool.refined.connect(done.append)
    tool.failed.connect(errors.append)
    (model_box,) = features(boxes, 0, "model")
    bb = model_box.geometry().boundingBox()
    click = QgsPointXY(bb.xMinimum() + bb.width() * at, bb.yMinimum() + bb.height() * (1 - at))
    QTest.mouseClick(canvas.viewport(), Qt.LeftButton, Qt.NoModifier, screen(canvas, click))
    assert wait_until(lambda: done or errors, timeout=180), "no refine answer"
    assert not errors, errors
    body = tool.prompts.request(0)
    dock.refine.action.setChecked(False)
    return body


def test_a_saved_result_is_refined_after_qgis_and_the_backend_restart(iface, project, tmp_path, monkeypatch):
    """Item 16: the answer's view lived in the backend's memory only; now the backend keeps it on disk (its
    work folder), so the view id the project keeps in the masks layer still names it after both restart."""
    import shutil

    from conftest import TINY, backend_python
    from plugin_testing import NAIP, open_panel, run_panel
    from qgis.core import QgsGeometry, QgsProject
    from think2seg.testing.live_service import live_service

    from think2seg_qgis.client import BackendClient
    from think2seg_qgis.layers import ROLE_PROPERTY, VIEW_PROPERTY, _geometry_from_geojson
    from think2seg_qgis.refine_tool import ResultGroup

    args = ["--model", str(TINY / "reasoner"), "--sam", str(TINY / "sam2.1_hiera_t.pt"), "--device", "cpu"]
    folder, raster = tmp_path / "backend", tmp_path / NAIP.name
    shutil.copy(NAIP, raster)
    saved = tmp_path / "project.qgz"
    monkeypatch.setenv("THINK2SEG_TOKEN_FILE", str(folder / "token"))
    with live_service(args, folder, python=backend_python()) as svc:
        monkeypatch.setenv("THINK2SEG_BACKEND_URL", svc.url)
        with open_panel(iface) as dock:
            _prepare(dock, iface, project, path=raster)
            dock.sam_combo.setCurrentText("tiny")  # the size the service holds
            dock.destination_combo.setCurrentIndex(dock.destination_combo.findData("geopackage"))
            outcome, result = run_panel(dock, timeout=300)
            assert outcome.error is None and result is not None, dock.status_label.text()
            view_id = outcome.answer["view_id"]
            body = _click_instance_0(dock, iface, result.masks, result.boxes)
            (edited,) = [f for f in result.masks.getFeatures() if f["instance"] == 0]
            before = QgsGeometry(edited.geometry())
            assert edited["edited"] and not before.isEmpty()
            assert QgsProject.instance().write(str(saved))
        QgsProject.instance().clear()
        iface.setActiveLayer(None)  # as QGIS does when the project is closed (the test's iface does not)

    with live_service(args, folder, python=backend_python()) as svc:  # a new backend process, same folder
        monkeypatch.setenv("THINK2SEG_BACKEND_URL", svc.url)
        with open_panel(iface) as dock:  # a new plugin instance on the saved project
            assert QgsProject.instance().read(str(saved))
            (masks,) = [
                layer
                for layer in QgsProject.instance().mapLayers().values()
                if layer.customProperty(ROLE_PROPERTY) == "masks"
            ]
            group = ResultGroup.of_layer(masks)
            assert group is not None and group.view_id == view_id == masks.customProperty(VIEW_PROPERTY)
            # the same prompts give the same mask as before the restarts
            again = BackendClient(svc.url, svc.token).refine(view_id, body)
            assert again["reembedded"] is True
            after = _geometry_from_geojson(again["geometry"])
            assert before.symDifference(after).area() <= 1e-6 * before.area(), (before.area(), after.area())
            # and the map tool refines it (another click: the edit goes on from the prompts the layers keep)
            _click_instance_0(dock, iface, group.masks, group.boxes, at=0.6)
        QgsProject.instance().clear()

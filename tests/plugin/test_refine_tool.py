"""The refine map tool in real QGIS (offscreen) against the real service on the tiny models: mouse events on
the canvas change one instance's polygon and provenance, and leave the other instances alone."""

from __future__ import annotations

import pytest
from plugin_testing import wait_until
from qgis.core import QgsPointXY, QgsRectangle
from qgis.PyQt.QtCore import QPoint, Qt
from qgis.PyQt.QtTest import QTest
from test_panel_e2e import _prepare, panel, run_panel  # noqa: F401 - the panel fixture

from think2seg_qgis.refine_tool import RefineMapTool


def screen(canvas, layer_xy: QgsPointXY) -> QPoint:
    """Layer (= canvas, here) coordinates -> a canvas pixel."""
    p = canvas.getCoordinateTransform().transform(layer_xy)
    return QPoint(int(round(p.x())), int(round(p.y())))


def features(layer, instance: int, source: str | None = None):
    out = [f for f in layer.getFeatures() if f["instance"] == instance]
    return [f for f in out if source is None or f["source"] == source]


def geometry(masks, instance: int):
    (f,) = features(masks, instance)
    return f.geometry()


@pytest.fixture()
def refining(panel, iface, project):  # noqa: F811
    _prepare(panel, iface, project, area="layer")
    panel.sam_combo.setCurrentText("tiny")  # the size the service holds (its tiny checkpoint)
    outcome, result = run_panel(panel)
    assert outcome.error is None and result is not None, panel.status_label.text()
    assert result.masks.customProperty("think2seg/view_id") == outcome.answer["view_id"]
    iface.setActiveLayer(result.masks)
    panel.refine.action.setChecked(True)
    tool = panel.refine.tool
    assert isinstance(tool, RefineMapTool) and iface.mapCanvas().mapTool() is tool
    done: list[int] = []
    errors: list[str] = []
    tool.refined.connect(done.append)
    tool.failed.connect(errors.append)

    def wait(n: int) -> None:
        assert wait_until(lambda: len(done) >= n or errors, timeout=120), "no refine answer"
        assert not errors, errors
        assert tool.task is None

    yield panel, result, tool, wait
    panel.refine.action.setChecked(False)


def test_clicks_positive_negative_drag_undo_edit_one_instance(refining, iface):
    dock, result, tool, wait = refining
    canvas, viewport = iface.mapCanvas(), iface.mapCanvas().viewport()
    masks, points, boxes = result.masks, result.points, result.boxes
    (model_box,) = features(boxes, 0, "model")
    model_points = features(points, 0, "model")
    bb = model_box.geometry().boundingBox()
    original = geometry(masks, 0)

    # "New instance": a drag in the raster's lower-left, outside the model's box, adds instance 1
    combo = dock.refine.instance_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["Instance 0", "New instance"]
    combo.setCurrentIndex(1)
    extent = masks.extent()
    ext = canvas.extent()
    corner_a = QgsPointXY(ext.xMinimum() + ext.width() * 0.05, ext.yMinimum() + ext.height() * 0.3)
    corner_b = QgsPointXY(ext.xMinimum() + ext.width() * 0.25, ext.yMinimum() + ext.height() * 0.05)
    QTest.mousePress(viewport, Qt.LeftButton, Qt.NoModifier, screen(canvas, corner_a))
    QTest.mouseMove(viewport, screen(canvas, corner_b))
    QTest.mouseRelease(viewport, Qt.LeftButton, Qt.NoModifier, screen(canvas, corner_b))
    wait(1)
    assert sorted(f["instance"] for f in masks.getFeatures()) == [0, 1]
    (added,) = features(masks, 1)
    assert added["edited"] is True and (features(boxes, 1, "user"))
    other = QgsRectangle(corner_a, corner_b)
    other.normalize()
    assert not added.geometry().isEmpty()
    new_instance = QgsRectangle(added.geometry().boundingBox())
    other_geometry = added.geometry()

    # back to the model's instance 0
    combo.setCurrentIndex(0)
    assert tool.prompts.box == bb and len(tool.prompts.positive) == len(model_points)
    centre = bb.center()
    positive = QgsPointXY(bb.xMinimum() + bb.width() * 0.3, bb.yMinimum() + bb.height() * 0.7)
    QTest.mouseClick(viewport, Qt.LeftButton, Qt.NoModifier, screen(canvas, positive))
    wait(2)
    after_positive = geometry(masks, 0)
    (f0,) = features(masks, 0)
    assert f0["edited"] is True
    # only the user's own click is a user point; the model's points stay as source = model
    assert [(f["label"], f["source"]) for f in features(points, 0, "user")] == [(1, "user")]

    QTest.mouseClick(viewport, Qt.RightButton, Qt.NoModifier, screen(canvas, centre))
    wait(3)
    after_negative = geometry(masks, 0)
    assert sorted(f["label"] for f in features(points, 0, "user")) == [0, 1]
    assert not after_negative.equals(after_positive) or not after_positive.equals(original)

    a = QgsPointXY(bb.xMinimum() + bb.width() * 0.4, bb.yMinimum() + bb.height() * 0.2)
    b = QgsPointXY(bb.xMaximum(), bb.yMaximum() - bb.height() * 0.1)
    QTest.mousePress(viewport, Qt.LeftButton, Qt.NoModifier, screen(canvas, a))
    QTest.mouseMove(viewport, screen(canvas, b))
    QTest.mouseRelease(viewport, Qt.LeftButton, Qt.NoModifier, screen(canvas, b))
    wait(4)
    after_box = geometry(masks, 0)
    (user_box,) = features(boxes, 0, "user")
    assert user_box.geometry().boundingBox().xMinimum() == pytest.approx(a.x(), abs=bb.width() * 0.01)
    changes = [not g.equals(h) for g, h in ((after_positive, original), (after_negative, after_positive),
                                            (after_box, after_negative))]
    assert sum(changes) >= 2, changes  # the random-weight SAM2 may ignore one edit, not most of them

    tool.undo()  # drops the box: the prompts, and so the mask, are those after the negative click
    wait(5)
    assert geometry(masks, 0).equals(after_negative)
    assert not features(boxes, 0, "user")
    # the model's prompts are kept beside the user's, and the other instance was never touched
    assert len(features(points, 0, "model")) == len(model_points) and len(features(boxes, 0, "model")) == 1
    assert geometry(masks, 1).equals(other_geometry) and features(masks, 1)[0]["edited"] is True
    assert QgsRectangle(features(masks, 1)[0].geometry().boundingBox()) == new_instance
    assert extent is not None

    tool.reset()  # the model's polygon exactly, no user prompts
    wait(6)
    (f0,) = features(masks, 0)
    assert f0.geometry().equals(original) and f0["edited"] is False
    assert not features(points, 0, "user")

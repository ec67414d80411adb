"""The refine map tool in real QGIS (offscreen) against the real service on the tiny models: mouse events on
the canvas change one instance's polygon and provenance, and leave the other instances alone."""

from __future__ import annotations

import pytest
from plugin_testing import wait_until
from qgis.core import QgsGeometry, QgsPointXY, QgsRectangle
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


def drag(viewport, canvas, a: QgsPointXY, b: QgsPointXY) -> None:
    QTest.mousePress(viewport, Qt.LeftButton, Qt.NoModifier, screen(canvas, a))
    QTest.mouseMove(viewport, screen(canvas, b))
    QTest.mouseRelease(viewport, Qt.LeftButton, Qt.NoModifier, screen(canvas, b))


def _refining(dock, iface, project, tiled: bool):
    _prepare(dock, iface, project, area="layer")
    dock.sam_combo.setCurrentText("tiny")  # the size the service holds (its tiny checkpoint)
    if tiled:  # NAIP read at 480 px and sent in 256 px tiles: a 2 x 2 grid, a tiled job
        dock.max_size_spin.setValue(256)
        dock.run_settings.tiled_max_size = 480
    outcome, result = run_panel(dock, timeout=300)
    assert outcome.error is None and result is not None, dock.status_label.text()
    assert ((outcome.answer.get("read") or {}).get("mode") == "tiled") == tiled
    assert result.masks.customProperty("think2seg/view_id") == outcome.answer["view_id"]
    iface.setActiveLayer(result.masks)
    dock.refine.action.setChecked(True)
    tool = dock.refine.tool
    assert isinstance(tool, RefineMapTool) and iface.mapCanvas().mapTool() is tool
    done: list[int] = []
    errors: list[str] = []
    tool.refined.connect(done.append)
    tool.failed.connect(errors.append)

    def wait(n: int) -> None:
        assert wait_until(lambda: len(done) >= n or errors, timeout=120), "no refine answer"
        assert not errors, errors
        assert tool.task is None

    yield dock, result, tool, wait, outcome.answer
    dock.refine.action.setChecked(False)


@pytest.fixture()
def refining(panel, iface, project):  # noqa: F811
    yield from _refining(panel, iface, project, tiled=False)


@pytest.fixture()
def refining_tiled(panel, iface, project):  # noqa: F811
    yield from _refining(panel, iface, project, tiled=True)


def test_clicks_positive_negative_drag_undo_edit_one_instance(refining, iface):
    dock, result, tool, wait, _ = refining
    canvas, viewport = iface.mapCanvas(), iface.mapCanvas().viewport()
    masks, points, boxes = result.masks, result.points, result.boxes
    (model_box,) = features(boxes, 0, "model")
    model_points = features(points, 0, "model")
    bb = model_box.geometry().boundingBox()
    original = geometry(masks, 0)

    # "New instance": a drag in the raster's lower-left, outside the model's box, adds instance 1
    combo = dock.refine.instance_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["Feature 1", "New feature"]
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
    # the picker lists the added instance at once, as the one under edit
    assert [combo.itemText(i) for i in range(combo.count())] == ["Feature 1", "Feature 2", "New feature"]
    assert combo.currentData() == 1 and tool.edit.instance == 1 and len(tool.edit.history) == 2
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
    changes = [
        not g.equals(h)
        for g, h in ((after_positive, original), (after_negative, after_positive), (after_box, after_negative))
    ]
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


@pytest.mark.slow
def test_a_tiled_result_is_refined_across_tile_borders_and_reset_to_the_models_prompts(refining_tiled, iface):
    dock, result, tool, wait, answer = refining_tiled
    canvas, viewport = iface.mapCanvas(), iface.mapCanvas().viewport()
    masks, points, boxes = result.masks, result.points, result.boxes
    assert len(answer["tiles"]) == 4
    # The layers number the prompts as the merged masks: every tile's prompts of a merged instance are its own
    # (per tile, the answer numbers them 0 in each tile).
    mask_instances = sorted(f["instance"] for f in masks.getFeatures())
    assert {f["instance"] for f in points.getFeatures()} <= set(mask_instances)
    spanning = [f for f in answer["mask"]["features"] if len(f["properties"]["tiles"]) > 1]
    assert spanning, "the tiny models' answer has an instance across a tile border"
    k = spanning[0]["properties"]["instance"]
    parts = spanning[0]["properties"]["parts"]
    held = [i for i in answer["instances"] if f"{i['tile']}:{i['instance']}" in parts]
    model_boxes, model_points = features(boxes, k, "model"), features(points, k, "model")
    assert len(model_boxes) == len(held) > 1 and len(model_points) == sum(len(i["points_crs"]) for i in held)
    assert sorted(f["point"] for f in model_points) == list(range(len(model_points)))

    # The instance's model prompts: all its points, the bounding box of its tiles' boxes
    combo = dock.refine.instance_combo
    combo.setCurrentIndex(combo.findData(k))
    union = QgsRectangle(model_boxes[0].geometry().boundingBox())
    for f in model_boxes[1:]:
        union.combineExtentWith(f.geometry().boundingBox())
    model_prompts = tool.prompts.copy()
    assert model_prompts.box == union and len(model_prompts.positive) == len(model_points)

    # a new instance inside one tile first: the refine below must leave it alone
    combo.setCurrentIndex(combo.count() - 1)
    assert combo.currentText() == "New feature"
    ext = canvas.extent()
    drag(
        viewport,
        canvas,
        QgsPointXY(ext.xMinimum() + ext.width() * 0.05, ext.yMinimum() + ext.height() * 0.3),
        QgsPointXY(ext.xMinimum() + ext.width() * 0.2, ext.yMinimum() + ext.height() * 0.05),
    )
    wait(1)
    new = max(mask_instances) + 1
    assert combo.currentData() == new and not geometry(masks, new).isEmpty()
    new_geometry = geometry(masks, new)

    # a positive click on the instance, next to the vertical core border (the middle of the raster)
    combo.setCurrentIndex(combo.findData(k))
    original = geometry(masks, k)
    r = masks.extent()
    QTest.mouseClick(
        viewport,
        Qt.LeftButton,
        Qt.NoModifier,
        screen(canvas, QgsPointXY(r.center().x() - r.width() * 0.02, r.center().y() + r.height() * 0.1)),
    )
    wait(2)
    (f,) = features(masks, k)
    edited = f.geometry()
    assert f["edited"] is True and not edited.equals(original) and edited.isGeosValid()
    # seamless: no two parts of the refined instance share a stretch of border (the backend dissolved them)
    parts_after = [QgsGeometry(p.clone()) for p in edited.constParts()]
    for i, a in enumerate(parts_after):
        for b in parts_after[i + 1 :]:
            assert a.intersection(b).length() == 0
    assert [(p["label"], p["source"]) for p in features(points, k, "user")] == [(1, "user")]
    assert geometry(masks, new).equals(new_geometry)  # the other instance untouched

    tool.reset()  # the model's polygon and prompts for that instance, no user prompts
    wait(3)
    (f,) = features(masks, k)
    assert f.geometry().equals(original) and f["edited"] is False and not features(points, k, "user")
    assert tool.prompts.box == model_prompts.box and tool.prompts.positive == model_prompts.positive
    assert len(features(boxes, k, "model")) == len(held) and geometry(masks, new).equals(new_geometry)

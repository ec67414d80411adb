"""Refine an answer by clicking: a map tool that edits one instance's prompts and re-segments it in place.

Left click adds a positive point, right click a negative one, a drag replaces the box. Each edit sends the
instance's prompts (in the result layers' CRS, the raster's) to the backend's refine endpoint
(``POST /v1/views/{view_id}/refine``: SAM2's decoder on the answer's cached embedding, no reasoner) in a
background task, and the instance's polygon is replaced in the masks layer. Provenance: the edited polygon
gets ``edited`` = true, the user's points go to the prompt points layer with ``source`` = "user" and their
``label`` (1 positive, 0 negative), a replaced box to the prompt boxes layer with ``source`` = "user"; the
model's own prompts stay beside them. Undo steps back one edit; Reset restores the model's polygon exactly
(kept from before the first edit, no backend call); Done leaves the tool.

A tiled answer (a job over a big raster) works the same way: its layers number the prompts as the merged
masks (``layers.prompt_items``), so an instance's model prompts are those of every tile it spans; the tool
starts from their points and from the bounding box of their boxes (the request takes one box), and the
backend re-segments the tiles the prompts reach and re-merges them with the instance's other pieces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from qgis.core import (
    QgsApplication,
    QgsFeature,
    QgsFeatureRequest,
    QgsFillSymbol,
    QgsGeometry,
    QgsLayerTreeGroup,
    QgsMarkerSymbol,
    QgsMessageLog,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
    QgsRuleBasedRenderer,
    QgsTask,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.gui import QgsGui, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import QPoint, Qt, QTimer, pyqtSignal
from qgis.PyQt.QtGui import QColor, QKeySequence
from qgis.PyQt.QtWidgets import (
    QAction,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .client import BackendClient
from .compat import FIELD_BOOL, FIELD_INT, FIELD_STRING, make_field
from .errors import VIEW_NOT_FOUND, Think2SegError
from .i18n import tr
from .layers import AREA_FIELD, ROLE_PROPERTY, VIEW_PROPERTY, _geometry_from_geojson, area_m2, pixel_text, pixel_value

LOG_TAG = "Think2Seg"
#: A press and release further apart than this (screen pixels) is a drag (a box), not a click.
DRAG_PIXELS = 5
#: The default shortcut of Refine. Not Ctrl+Alt+R: QGIS's Processing > Results Viewer has that one. Registered with
#: QGIS's shortcuts manager (Settings > Keyboard Shortcuts), so a user can change it; when the default is taken by
#: another action there, the next candidate is used.
SHORTCUT = "Ctrl+Alt+E"
SHORTCUT_CANDIDATES = (SHORTCUT, "Ctrl+Shift+Alt+E")
MODEL, USER = "model", "user"


@dataclass
class Prompts:
    """One instance's prompts in the layers' CRS."""

    box: QgsRectangle | None = None
    positive: list[QgsPointXY] = field(default_factory=list)
    negative: list[QgsPointXY] = field(default_factory=list)

    def copy(self) -> Prompts:
        return Prompts(
            QgsRectangle(self.box) if self.box is not None else None, list(self.positive), list(self.negative)
        )

    def is_empty(self) -> bool:
        return self.box is None and not self.positive and not self.negative

    def request(self, instance: int | None) -> dict:
        b = self.box
        return {
            "frame": "crs",
            "box": None if b is None else [b.xMinimum(), b.yMinimum(), b.xMaximum(), b.yMaximum()],
            "positive_points": [[p.x(), p.y()] for p in self.positive],
            "negative_points": [[p.x(), p.y()] for p in self.negative],
            "instance": instance,
        }


@dataclass
class ResultGroup:
    """The three layers of one answer, found by their role property, and the answer's view on the backend."""

    masks: QgsVectorLayer
    points: QgsVectorLayer
    boxes: QgsVectorLayer
    view_id: str

    @classmethod
    def of_layer(cls, layer, project: QgsProject | None = None) -> ResultGroup | None:
        """The result group holding ``layer`` (any of its three layers); None for any other layer."""
        if not isinstance(layer, QgsVectorLayer) or not layer.customProperty(ROLE_PROPERTY):
            return None
        project = project or QgsProject.instance()
        node = project.layerTreeRoot().findLayer(layer.id())
        parent = node.parent() if node is not None else None
        roles = {}
        if isinstance(parent, QgsLayerTreeGroup):
            for child in parent.findLayers():
                other = child.layer()
                if isinstance(other, QgsVectorLayer) and other.customProperty(ROLE_PROPERTY):
                    roles.setdefault(str(other.customProperty(ROLE_PROPERTY)), other)
        if not {"masks", "points", "boxes"} <= set(roles):
            return None
        view_id = str(roles["masks"].customProperty(VIEW_PROPERTY) or "")
        return cls(roles["masks"], roles["points"], roles["boxes"], view_id) if view_id else None

    def instances(self) -> list[int]:
        return sorted({int(f["instance"]) for f in self.masks.getFeatures()})

    def _features(self, layer: QgsVectorLayer, instance: int, source: str | None = None) -> list[QgsFeature]:
        out = []
        for f in layer.getFeatures(QgsFeatureRequest().setFilterExpression(f'"instance" = {int(instance)}')):
            has_source = layer.fields().indexOf("source") >= 0
            if source is None or (has_source and (f["source"] or MODEL) == source):
                out.append(f)
        return out

    def model_prompts(self, instance: int) -> Prompts:
        """The model's prompts for ``instance``: its points and its box (a tiled instance's boxes, one per
        tile it spans: their bounding box, as the refine request takes one box)."""
        boxes = self._features(self.boxes, instance, MODEL)
        points = sorted(self._features(self.points, instance, MODEL), key=lambda f: f["point"] or 0)
        box = None
        for f in boxes:
            if box is None:
                box = QgsRectangle(f.geometry().boundingBox())
            else:
                box.combineExtentWith(f.geometry().boundingBox())
        return Prompts(box, [f.geometry().asPoint() for f in points], [])


def style_prompt_points(layer: QgsVectorLayer) -> None:
    """The model's points as before; the user's: green + (positive) and red × (negative)."""
    if isinstance(layer.renderer(), QgsRuleBasedRenderer) or layer.renderer() is None:
        return
    model_symbol = layer.renderer().symbol().clone() if hasattr(layer.renderer(), "symbol") else None
    root = QgsRuleBasedRenderer.Rule(None)
    rules = [
        ('"source" IS NULL OR "source" = \'model\'', tr("model"), model_symbol),
        (
            '"source" = \'user\' AND "label" = 1',
            tr("user: positive"),
            QgsMarkerSymbol.createSimple(
                {"name": "cross_fill", "color": "0,200,83,255", "outline_color": "255,255,255,255", "size": "4"}
            ),
        ),
        (
            '"source" = \'user\' AND "label" = 0',
            tr("user: negative"),
            QgsMarkerSymbol.createSimple(
                {
                    "name": "cross2",
                    "color": "213,0,0,255",
                    "outline_color": "213,0,0,255",
                    "outline_width": "0.8",
                    "size": "4",
                }
            ),
        ),
    ]
    for expression, label, symbol in rules:
        if symbol is None:
            symbol = QgsMarkerSymbol.createSimple({"name": "circle", "color": "230,25,75,255"})
        root.appendChild(QgsRuleBasedRenderer.Rule(symbol, 0, 0, expression, label))
    layer.setRenderer(QgsRuleBasedRenderer(root))
    layer.triggerRepaint()


def style_prompt_boxes(layer: QgsVectorLayer) -> None:
    """The model's boxes as before; a box the user drew: a solid green outline."""
    if isinstance(layer.renderer(), QgsRuleBasedRenderer) or not hasattr(layer.renderer(), "symbol"):
        return
    root = QgsRuleBasedRenderer.Rule(None)
    root.appendChild(
        QgsRuleBasedRenderer.Rule(
            layer.renderer().symbol().clone(), 0, 0, '"source" IS NULL OR "source" = \'model\'', tr("model")
        )
    )
    user = QgsFillSymbol.createSimple(
        {"style": "no", "outline_color": "0,200,83,255", "outline_width": "0.8", "outline_width_unit": "MM"}
    )
    root.appendChild(QgsRuleBasedRenderer.Rule(user, 0, 0, "\"source\" = 'user'", tr("user")))
    layer.setRenderer(QgsRuleBasedRenderer(root))
    layer.triggerRepaint()


class RefineTask(QgsTask):
    """One refine call in the background; ``on_done(answer, error)`` on the main thread."""

    def __init__(
        self,
        client: BackendClient,
        view_id: str,
        body: dict,
        on_done: Callable[[dict | None, Think2SegError | None], None],
    ):
        super().__init__(tr("Think2Seg: refine"))
        self.client, self.view_id, self.body, self.on_done = client, view_id, body, on_done
        self.answer: dict | None = None
        self.error: Think2SegError | None = None

    def run(self) -> bool:
        try:
            self.answer = self.client.refine(self.view_id, self.body)
            return True
        except Think2SegError as error:
            self.error = error
        except Exception as error:  # noqa: BLE001 - a task must report, never raise into the task manager
            self.error = Think2SegError("internal", tr("Unexpected error while refining: {error}").format(error=error))
        return False

    def finished(self, result: bool) -> None:  # main thread
        try:
            self.on_done(self.answer, self.error)
        except Exception as error:  # noqa: BLE001 - keep QGIS alive; say what happened
            QgsMessageLog.logMessage(tr("Could not apply the refined mask: {error}").format(error=repr(error)), LOG_TAG)


@dataclass
class InstanceEdit:
    """One instance under edit: its prompt history (the first entry is the model's) and its original feature."""

    instance: int
    history: list[Prompts]
    original: QgsFeature | None  # None for an instance the user added


class RefineMapTool(QgsMapTool):
    """``refined(instance)`` after each answer is applied; ``failed(sentence)`` when a refine fails."""

    refined = pyqtSignal(int)
    failed = pyqtSignal(str)

    def __init__(self, canvas, group: ResultGroup, client_factory: Callable[[], BackendClient]):
        super().__init__(canvas)
        self.group = group
        self.client_factory = client_factory
        self.edit: InstanceEdit | None = None
        self.task: RefineTask | None = None
        self._dirty = False  # an edit arrived while a refine was in flight: send the latest prompts after it
        self._press: QPoint | None = None
        self._band = QgsRubberBand(canvas, QgsWkbTypes.GeometryType.PolygonGeometry)
        self._band.setColor(QColor(0, 229, 255, 60))
        self._band.setStrokeColor(QColor(0, 229, 255))
        self._band.setWidth(2)
        self.setCursor(Qt.CursorShape.CrossCursor)
        style_prompt_points(group.points)
        style_prompt_boxes(group.boxes)

    # -- which instance ------------------------------------------------------------------------------------
    def pick(self, instance: int | None) -> int:
        """Edit ``instance`` (None: a new one, numbered after the answer's); returns the instance id."""
        if instance is None:
            instance = max(self.group.instances(), default=-1) + 1
            self.edit = InstanceEdit(instance, [Prompts()], None)
            return instance
        features = self.group._features(self.group.masks, instance)
        if not features:
            raise Think2SegError(
                "bad_request", tr("This answer has no feature {instance}.").format(instance=instance + 1)
            )
        self.edit = InstanceEdit(instance, [self.group.model_prompts(instance)], QgsFeature(features[0]))
        return instance

    @property
    def prompts(self) -> Prompts:
        return self.edit.history[-1] if self.edit else Prompts()

    @property
    def busy(self) -> bool:
        return self.task is not None

    # -- edits -----------------------------------------------------------------------------------------------
    def add_point(self, point: QgsPointXY, positive: bool) -> None:
        """A click, in the layers' CRS."""
        p = self.prompts.copy()
        (p.positive if positive else p.negative).append(QgsPointXY(point))
        self._push(p)

    def set_box(self, box: QgsRectangle) -> None:
        """A drag, in the layers' CRS: replaces the box."""
        p = self.prompts.copy()
        p.box = QgsRectangle(box)
        p.box.normalize()
        self._push(p)

    def undo(self) -> None:
        if self.edit is None or len(self.edit.history) < 2:
            return
        self.edit.history.pop()
        self._changed()

    def reset(self) -> None:
        if self.edit is None:
            return
        del self.edit.history[1:]
        self._changed()

    def done(self) -> None:
        self.canvas().unsetMapTool(self)

    def _push(self, prompts: Prompts) -> None:
        if self.edit is None:
            self.pick(None)
        self.edit.history.append(prompts)
        self._changed()

    def _changed(self) -> None:
        if len(self.edit.history) == 1:  # back to the model's: its own polygon, exactly, without a call
            self._dirty = False
            self._restore()
            return
        if self.task is not None:
            self._dirty = True
            return
        self._submit()

    def _submit(self) -> None:
        edit = self.edit
        body = self.prompts.request(edit.instance if edit.original is not None else None)
        self.task = RefineTask(
            self.client_factory(),
            self.group.view_id,
            body,
            lambda answer, error, k=edit.instance: self._on_answer(k, answer, error),
        )
        QgsApplication.taskManager().addTask(self.task)

    def _on_answer(self, instance: int, answer: dict | None, error: Think2SegError | None) -> None:
        self.task = None
        if self._dirty and self.edit is not None:
            self._dirty = False
            if len(self.edit.history) > 1:
                self._submit()  # this answer is for prompts the user has already changed
            return
        if error is not None:
            if error.code == VIEW_NOT_FOUND:  # not the backend's sentence: it names the view by its hex id
                self.failed.emit(
                    tr(
                        "The backend no longer keeps the image of this result (newer answers took its place in its "
                        "store, or it runs with another work folder), so it cannot be refined: run the query again, "
                        "then refine the new result."
                    )
                )
                return
            self.failed.emit(error.message)
            return
        if self.edit is None or self.edit.instance != instance:
            return
        self._apply(instance, answer or {}, self.prompts)
        self.refined.emit(instance)

    # -- the layers --------------------------------------------------------------------------------------
    def _mask_feature(self, instance: int) -> QgsFeature | None:
        features = self.group._features(self.group.masks, instance)
        return features[0] if features else None

    def _apply(self, instance: int, answer: dict, prompts: Prompts) -> None:
        masks = self.group.masks
        geometry = _geometry_from_geojson(answer["geometry"]) if answer.get("geometry") else QgsGeometry()
        if not geometry.isEmpty():
            geometry.convertToMultiType()
        # The area by the layers' own rule (the same as a fresh answer's features), in the layer's CRS.
        area = area_m2(geometry, masks.crs()) if not geometry.isEmpty() else 0.0
        values = {"edited": True, "score": answer.get("score"), AREA_FIELD: area}
        feature = self._mask_feature(instance)
        if feature is None:
            feature = self._new_mask_feature(instance)
            feature.setGeometry(geometry)
            for name, value in values.items():
                if masks.fields().indexOf(name) >= 0:
                    feature[name] = value
            masks.dataProvider().addFeatures([feature])
        else:
            self._ensure_field(masks, "edited")
            masks.dataProvider().changeGeometryValues({feature.id(): geometry})
            masks.dataProvider().changeAttributeValues(
                {
                    feature.id(): {
                        masks.fields().indexOf(k): v for k, v in values.items() if masks.fields().indexOf(k) >= 0
                    }
                }
            )
        self._write_user_prompts(instance, prompts, answer)
        for layer in (masks, self.group.points, self.group.boxes):
            layer.updateExtents()
            layer.triggerRepaint()

    def _new_mask_feature(self, instance: int) -> QgsFeature:
        masks = self.group.masks
        feature = QgsFeature(masks.fields())
        template = next(masks.getFeatures(), None)
        for name in ("query", "source_layer", "reasoner", "segmenter", "sam_size", "created"):
            if template is not None and masks.fields().indexOf(name) >= 0:
                feature[name] = template[name]
        feature["instance"] = instance
        if masks.fields().indexOf("reasoning") >= 0:
            feature["reasoning"] = tr("Added by the user (refine).")
        return feature

    def _write_user_prompts(self, instance: int, prompts: Prompts | None, answer: dict | None) -> None:
        """Replace the instance's user points and box by ``prompts`` (None: remove them)."""
        points, boxes = self.group.points, self.group.boxes
        for layer in (points, boxes):
            for name, kind in (("source", FIELD_STRING), ("label", FIELD_INT)):
                if layer is boxes and name == "label":
                    continue
                self._ensure_field(layer, name, kind)
            old = [f.id() for f in self.group._features(layer, instance, USER)]
            if old:
                layer.dataProvider().deleteFeatures(old)
        if prompts is None:
            return
        template = self._mask_feature(instance)
        pixels = (answer or {}).get("points_pixel") or []  # the request's points: positives, then negatives
        model_points = self.edit.history[0].positive if self.edit else []
        signed = [(p, 1, i) for i, p in enumerate(prompts.positive)]
        signed += [(p, 0, len(prompts.positive) + i) for i, p in enumerate(prompts.negative)]
        new_points = []
        for xy, label, index in signed:
            if label == 1 and xy in model_points:
                continue  # the model's own point: already in the layer as source = model
            f = self._prompt_feature(points, template, instance)
            f.setGeometry(QgsGeometry.fromPointXY(xy))
            f["point"], f["source"], f["label"] = index, USER, label
            if index < len(pixels) and points.fields().indexOf("x_pixel") >= 0:
                f["x_pixel"], f["y_pixel"] = pixel_value(pixels[index][0]), pixel_value(pixels[index][1])
            new_points.append(f)
        points.dataProvider().addFeatures(new_points)
        model_box = self.edit.history[0].box if self.edit else None
        if prompts.box is not None and (model_box is None or prompts.box != model_box):
            f = self._prompt_feature(boxes, template, instance)
            f.setGeometry(QgsGeometry.fromRect(prompts.box))
            f["source"] = USER
            if boxes.fields().indexOf("box_pixel") >= 0 and (answer or {}).get("box_pixel"):
                f["box_pixel"] = pixel_text(answer["box_pixel"])
            if boxes.fields().indexOf("score") >= 0:
                f["score"] = (answer or {}).get("score")
            boxes.dataProvider().addFeatures([f])

    @staticmethod
    def _prompt_feature(layer: QgsVectorLayer, template: QgsFeature | None, instance: int) -> QgsFeature:
        f = QgsFeature(layer.fields())
        for name in ("query", "source_layer", "reasoner", "segmenter", "sam_size", "created"):
            if template is not None and layer.fields().indexOf(name) >= 0 and template.fields().indexOf(name) >= 0:
                f[name] = template[name]
        f["instance"] = instance
        return f

    @staticmethod
    def _ensure_field(layer: QgsVectorLayer, name: str, kind: str = FIELD_BOOL) -> None:
        """Layers from before refine existed (an older GeoPackage) get the provenance field on first edit."""
        if layer.fields().indexOf(name) >= 0:
            return
        layer.dataProvider().addAttributes([make_field(name, kind)])
        layer.updateFields()

    def _restore(self) -> None:
        """The instance as the model left it: its original polygon and attributes, no user prompts."""
        edit = self.edit
        masks = self.group.masks
        current = self._mask_feature(edit.instance)
        if edit.original is None:
            if current is not None:
                masks.dataProvider().deleteFeatures([current.id()])
        elif current is not None:
            masks.dataProvider().changeGeometryValues({current.id(): QgsGeometry(edit.original.geometry())})
            attrs = dict(enumerate(edit.original.attributes()))
            masks.dataProvider().changeAttributeValues({current.id(): attrs})
        self._write_user_prompts(edit.instance, None, None)
        for layer in (masks, self.group.points, self.group.boxes):
            layer.updateExtents()
            layer.triggerRepaint()
        self.refined.emit(edit.instance)

    # -- the mouse -----------------------------------------------------------------------------------------
    def _layer_point(self, pos: QPoint) -> QgsPointXY:
        return self.toLayerCoordinates(self.group.masks, self.toMapCoordinates(pos))

    def canvasPressEvent(self, event) -> None:  # noqa: N802 - Qt naming
        self._press = event.pos()

    def canvasMoveEvent(self, event) -> None:  # noqa: N802 - Qt naming
        if self._press is None or (event.pos() - self._press).manhattanLength() < DRAG_PIXELS:
            return
        a, b = self.toMapCoordinates(self._press), self.toMapCoordinates(event.pos())
        self._band.setToGeometry(QgsGeometry.fromRect(QgsRectangle(a, b)), None)

    def canvasReleaseEvent(self, event) -> None:  # noqa: N802 - Qt naming
        press, self._press = self._press, None
        self._band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)
        if press is None:
            return
        if (event.pos() - press).manhattanLength() >= DRAG_PIXELS:
            a, b = self._layer_point(press), self._layer_point(event.pos())
            self.set_box(QgsRectangle(a, b))
        elif event.button() == Qt.MouseButton.RightButton:
            self.add_point(self._layer_point(event.pos()), positive=False)
        elif event.button() == Qt.MouseButton.LeftButton:
            self.add_point(self._layer_point(event.pos()), positive=True)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt naming
        if event.matches(QKeySequence.StandardKey.Undo):
            self.undo()
        elif event.key() == Qt.Key.Key_Escape:
            self.done()

    def deactivate(self) -> None:
        self._band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)
        super().deactivate()


def free_shortcut() -> str:
    """The first of SHORTCUT_CANDIDATES that no other action registered with QGIS uses (QGIS's own, other plugins')."""
    manager = QgsGui.shortcutsManager()
    for candidate in SHORTCUT_CANDIDATES:
        owner = manager.objectForSequence(QKeySequence(candidate))
        if owner is None or owner.objectName() == "think2segRefine":
            return candidate
    return SHORTCUT


class RefineControls(QWidget):
    """The panel's refine row: the tool button (with its shortcut), the instance picker, Undo, Reset, Done.

    ``group_for()`` gives the result group to edit (the active layer's, else the panel's last result)."""

    #: after each applied refine (and reset): the group whose masks changed
    edited = pyqtSignal(object)

    def __init__(
        self,
        iface,
        group_for: Callable[[], ResultGroup | None],
        client_factory: Callable[[], BackendClient],
        say: Callable[[str], None],
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.iface, self.group_for, self.client_factory, self.say = iface, group_for, client_factory, say
        self.tool: RefineMapTool | None = None
        self.action = QAction(tr("Refine"), self)
        self.action.setObjectName("think2segRefine")
        self.action.setCheckable(True)
        self.action.setShortcut(QKeySequence(free_shortcut()))
        QgsGui.shortcutsManager().registerAction(self.action, self.action.shortcut().toString())
        self._previous_tool = None  # the map tool before Refine, given back on Done
        self.action.setToolTip(
            tr(
                "Refine a feature of the selected result with clicks ({shortcut}): left click adds, right click "
                "removes, a drag redraws the box"
            ).format(shortcut=self.action.shortcut().toString(QKeySequence.SequenceFormat.NativeText))
        )
        self.action.toggled.connect(self._toggled)
        button = QToolButton()
        button.setDefaultAction(self.action)
        self.instance_combo = QComboBox()
        self.instance_combo.setObjectName("think2segRefineInstance")
        self.instance_combo.currentIndexChanged.connect(self._instance_changed)
        self.undo_button, self.reset_button = QPushButton(tr("Undo")), QPushButton(tr("Reset"))
        self.done_button = QPushButton(tr("Done"))
        self.undo_button.setToolTip(tr("Step back one edit"))
        self.reset_button.setToolTip(tr("Back to the model's prompts and polygon"))
        self.undo_button.clicked.connect(lambda: self.tool and self.tool.undo())
        self.reset_button.clicked.connect(lambda: self.tool and self.tool.reset())
        self.done_button.clicked.connect(lambda: self.action.setChecked(False))
        self.status = QLabel("")
        self.status.setWordWrap(True)
        # Two rows, and a combo that may shrink, so the dock's minimum width shows every control
        self.instance_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.instance_combo.setMinimumContentsLength(8)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widgets in ((button, self.instance_combo), (self.undo_button, self.reset_button, self.done_button)):
            row = QHBoxLayout()
            row.setContentsMargins(0, 0, 0, 0)
            for w in widgets:
                row.addWidget(w)
            layout.addLayout(row)
        layout.addWidget(self.status)
        self._enable(False)

    def _enable(self, on: bool) -> None:
        for w in (self.instance_combo, self.undo_button, self.reset_button, self.done_button):
            w.setEnabled(on)

    def unregister(self) -> None:
        """Out of QGIS's shortcuts manager (the plugin unloads)."""
        try:
            QgsGui.shortcutsManager().unregisterAction(self.action)
        except RuntimeError:  # already deleted
            pass

    def _restore_previous_tool(self, canvas) -> None:
        previous, self._previous_tool = self._previous_tool, None
        if previous is None:
            return
        try:
            canvas.setMapTool(previous)  # the pan (or whatever the user had): the map must not feel frozen
        except RuntimeError:  # that tool was deleted meanwhile
            pass

    def _uncheck(self) -> None:
        self.action.setChecked(False)

    def _toggled(self, checked: bool) -> None:
        canvas = self.iface.mapCanvas()
        if not checked:
            current = canvas.mapTool()
            if self.tool is not None and current is self.tool:
                canvas.unsetMapTool(self.tool)
                current = canvas.mapTool()
            if current is None:  # Done, Escape or the button: not when the user picked another tool themselves
                self._restore_previous_tool(canvas)
            self._previous_tool = None
            self.tool = None
            self._enable(False)
            self.status.setText("")
            return
        group = self.group_for()
        if group is None:
            self.say(tr("Select a layer of a Think2Seg result (its masks, points or boxes) to refine it."))
            self.action.setChecked(False)
            return
        self.tool = RefineMapTool(canvas, group, self.client_factory)
        self.tool.refined.connect(self._refined)
        self.tool.failed.connect(self.say)
        # After the canvas has finished switching: then it tells whether the user chose another tool (keep it) or
        # the tool left by itself (Escape: give the previous tool back).
        self.tool.deactivated.connect(lambda: QTimer.singleShot(0, self._uncheck))
        self._list_instances(group.instances()[0] if group.instances() else None)
        self._instance_changed()
        current = canvas.mapTool()
        if current is not None and not isinstance(current, RefineMapTool):
            self._previous_tool = current
        canvas.setMapTool(self.tool)
        self._enable(True)
        self.status.setText(tr("Left click: add; right click: remove; drag: redraw the box."))

    def _list_instances(self, current: int | None) -> None:
        """The picker: the masks layer's instances, then "New instance"; ``current`` selected (when listed),
        without picking again (that would restart the edit's history)."""
        instances = self.tool.group.instances() if self.tool is not None else []
        combo = self.instance_combo
        combo.blockSignals(True)
        combo.clear()
        for k in instances:
            combo.addItem(tr("Feature {instance}").format(instance=k + 1), k)  # counted from 1, as people do
        combo.addItem(tr("New feature"), None)
        combo.setCurrentIndex(instances.index(current) if current in instances else len(instances))
        combo.blockSignals(False)

    def _refined(self, instance: int) -> None:
        self.status.setText(tr("Feature {instance} updated.").format(instance=instance + 1))
        # A new instance's first answer adds it to the masks layer (a Reset removes it again): list it now,
        # selected, as the instance under edit.
        self._list_instances(instance)
        if self.tool is not None:
            self.edited.emit(self.tool.group)

    def _instance_changed(self, *_args) -> None:
        if self.tool is None:
            return
        try:
            self.tool.pick(self.instance_combo.currentData())
        except Think2SegError as error:  # removed meanwhile (a new instance reset): list what is there
            self.say(error.message)
            self._list_instances(None)
            self.tool.pick(None)

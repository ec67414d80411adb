"""The Think2Seg dock panel: query, raster, area, options, Run/Cancel, progress, the model's reasoning."""

from __future__ import annotations

import json
import os
import re
import tempfile

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsMapLayerProxyModel,
    QgsMessageLog,
    QgsProject,
    QgsRasterLayer,
)
from qgis.gui import QgsCollapsibleGroupBox, QgsDockWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import QCoreApplication, QEvent, QObject, Qt, pyqtSignal
from qgis.PyQt.QtGui import QFont
from qgis.PyQt.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .. import areas
from ..backend_launcher import STATE_CRASHED, STATE_FAILED, STATE_STOPPED, BackendLauncher
from ..errors import CANCELLED, CONNECTION_CODES, CRASHED, INTERNAL_CODES, UNREACHABLE, Think2SegError
from ..export import RasterSource
from ..i18n import number_text, tr, tr_noop
from ..layers import (
    PIXEL_DECIMALS,
    ROLE_PROPERTY,
    ResultContext,
    ResultLayers,
    add_to_project,
    answer_extent,
    answer_is_empty,
    build_result_layers,
    empty_sentence,
    geopackage_path_for,
    sam_size_note,
    summary_sentence,
)
from ..refine_tool import RefineControls, ResultGroup
from ..segmentation import STRICT_ANSWER_HELP, STRICT_ANSWER_LABEL, SegmentationOptions
from ..settings import (
    AREA_CANVAS,
    AREA_LAYER,
    AREA_SELECTION,
    DEFAULT_TILED_MAX_SIZE,
    DESTINATION_GEOPACKAGE,
    DESTINATION_MEMORY,
    DESTINATION_PROJECT,
    SAM_SIZE_BACKEND,
    SAM_SIZES,
    backend_token,
    load_run_settings,
    remember_query,
    save_run_settings,
)
from ..task import LOG_TAG, SegmentationRequest, SegmentationTask, TaskOutcome
from .backend_box import BackendBox

AREAS = (
    (AREA_CANVAS, tr_noop("Visible map extent")),
    (AREA_LAYER, tr_noop("Whole layer")),
    (AREA_SELECTION, tr_noop("Selected features of")),
)
DESTINATIONS = (
    (DESTINATION_PROJECT, tr_noop("GeoPackage in the project folder")),
    (DESTINATION_MEMORY, tr_noop("Temporary layers")),
    (DESTINATION_GEOPACKAGE, tr_noop("GeoPackage next to the raster")),
)


MIN_WIDTH = 340


_PROGRESS_BAR = re.compile(r"\d+%\|.*\|")  # tqdm: " 45%|████▌     | 9/20 [00:01<00:02, 4.5it/s]"
_CHATTER = ("Loaded checkpoint sucessfully", "Loaded checkpoint successfully")


def readable_log(text: str) -> str:
    """The backend's log as the Backend log tab shows it: no download bars (tqdm redraws one line many times) and
    none of sam2's own chatter; every line the backend itself wrote stays."""
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.rsplit("\r", 1)[-1]  # a bar redrawn in place: its last state only
        if _PROGRESS_BAR.search(line) or any(chatter in line for chatter in _CHATTER):
            continue
        lines.append(line)
    return "\n".join(lines).strip("\n")


_TILE_CODE = re.compile(r"^\[r(\d+)c(\d+)\]\s*", re.MULTILINE)


def readable_reasoning(text: str) -> str:
    """A tiled answer's reasoning names its tiles "[r0c1] …": as people count them, "Tile row 1, column 2: …"."""
    return _TILE_CODE.sub(
        lambda m: tr("Tile row {row}, column {col}: ").format(row=int(m.group(1)) + 1, col=int(m.group(2)) + 1), text
    )


#: What the message bar shows on one line in a docked QGIS window without cutting it off (characters).
BAR_SENTENCE_MAX = 110


def bar_sentence(sentence: str, limit: int = BAR_SENTENCE_MAX) -> tuple[str, str]:
    """(the message bar's line, the text behind its "Show more"): a short sentence whole with nothing behind;
    a long one as its first sentence (or its first words) ending in "…", the whole text behind."""
    flat = " ".join(sentence.split())
    if len(flat) <= limit:
        return flat, ""
    first = flat.split(". ", 1)[0].rstrip(".")
    if len(first) + 1 > limit:
        first = first[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return first + "…", sentence


class WheelGuard(QObject):
    """The wheel scrolls the dock, never the value of a spin box or combo box the pointer passes over: those take the
    wheel only once they have the focus (clicked or tabbed into), as in QGIS's own dialogs."""

    def __init__(self, scroll: QScrollArea):
        super().__init__(scroll)
        self.scroll = scroll

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt naming
        if event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            QCoreApplication.sendEvent(self.scroll.verticalScrollBar(), event)
            return True
        return False

    def guard(self, root: QWidget) -> None:
        for widget in root.findChildren(QAbstractSpinBox) + root.findChildren(QComboBox):
            widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # not WheelFocus: a wheel must not grab the focus
            widget.installEventFilter(self)


class Think2SegPanel(QgsDockWidget):
    """``finished(outcome, result_layers_or_None)`` fires after every run (tests and scripts wait on it)."""

    finished = pyqtSignal(object, object)

    def __init__(self, iface, launcher: BackendLauncher | None = None, parent: QWidget | None = None):
        super().__init__("Think2Seg", parent or iface.mainWindow())
        self.setObjectName("Think2SegPanel")
        self.iface = iface
        self.launcher = launcher or BackendLauncher(self)
        self.task: SegmentationTask | None = None
        self.last_result: ResultLayers | None = None
        self.run_settings = load_run_settings()
        self._backend_problems: list = []  # (sentence, message bar item) about the backend, cleared on recovery
        self._build()
        self._load_run_settings()
        if hasattr(self.iface, "currentLayerChanged"):
            self.iface.currentLayerChanged.connect(self._follow_active_layer)
        self.use_active_layer()
        self._update_buttons()

    # -- widgets --------------------------------------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget()
        layout = QVBoxLayout(body)

        self.backend_box = BackendBox(self.launcher, body)
        self.backend_box.status_changed.connect(self._on_backend_status)
        self.backend_box.log_requested.connect(self.show_backend_log)
        self.backend_box.setup_requested.connect(self.open_setup)
        self.backend_box.configured_changed.connect(self._update_buttons)
        layout.addWidget(self.backend_box)

        form = QFormLayout()
        self.query_combo = QComboBox()
        self.query_combo.setEditable(True)
        self.query_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.query_combo.setObjectName("think2segQuery")
        self.query_combo.lineEdit().setPlaceholderText(tr("e.g. the wetlands that hold water all year"))
        self.query_combo.lineEdit().returnPressed.connect(self.run)
        self.query_combo.setToolTip(tr("What to find, in words; pick one of the last queries from the list"))
        form.addRow(tr("Query"), self.query_combo)

        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)
        self.layer_combo.setObjectName("think2segRasterLayer")
        form.addRow(tr("Raster layer"), self.layer_combo)

        area_row = QHBoxLayout()
        self.area_combo = QComboBox()
        for key, label in AREAS:
            self.area_combo.addItem(tr(label), key)
        self.selection_combo = QgsMapLayerComboBox()
        self.selection_combo.setFilters(QgsMapLayerProxyModel.Filter.PolygonLayer)
        self._hide_prompt_boxes()
        QgsProject.instance().layersAdded.connect(self._hide_prompt_boxes)
        self.area_combo.currentIndexChanged.connect(self._area_changed)
        area_row.addWidget(self.area_combo)
        area_row.addWidget(self.selection_combo, 1)
        form.addRow(tr("Area"), area_row)
        layout.addLayout(form)

        self.options_box = QgsCollapsibleGroupBox(tr("Options"))
        options = QFormLayout(self.options_box)
        self.sam_combo = QComboBox()
        self.sam_combo.addItem(tr("As the backend started"), SAM_SIZE_BACKEND)
        for size in SAM_SIZES:
            self.sam_combo.addItem(size, size)
        self.sam_combo.setToolTip(tr("SAM2.1 model size: larger draws finer masks, needs more memory"))
        self.budget_spin = QSpinBox()
        self.budget_spin.setRange(16, 8192)
        self.budget_spin.setSingleStep(128)
        self.budget_spin.setSuffix(tr(" tokens"))
        self.budget_spin.setToolTip(tr("How long the model may reason before it answers"))
        self.destination_combo = QComboBox()
        for key, label in DESTINATIONS:
            self.destination_combo.addItem(tr(label), key)
        self.max_size_spin = QSpinBox()
        self.max_size_spin.setRange(256, 16384)
        self.max_size_spin.setSingleStep(256)
        self.max_size_spin.setSuffix(tr(" px"))
        self.max_size_spin.setToolTip(
            tr(
                "The long side of one image the model reads; a larger area is sent at full resolution (up to "
                "{tiled} px) and read in tiles of this size"
            ).format(tiled=number_text(DEFAULT_TILED_MAX_SIZE))
        )
        self.constrain_check = QCheckBox(tr(STRICT_ANSWER_LABEL))
        self.constrain_check.setToolTip(tr(STRICT_ANSWER_HELP))
        self.sam_combo.currentIndexChanged.connect(self._sam_size_changed)
        options.addRow(tr("SAM2 size"), self.sam_combo)
        options.addRow(tr("Reasoning budget"), self.budget_spin)
        options.addRow(tr("Results in"), self.destination_combo)
        options.addRow(tr("Image size at most"), self.max_size_spin)
        options.addRow(self.constrain_check)
        layout.addWidget(self.options_box)

        buttons = QHBoxLayout()
        self.run_button = QPushButton(tr("Run"))
        self.run_button.setObjectName("think2segRun")
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton(tr("Cancel"))
        self.cancel_button.setObjectName("think2segCancel")
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.refine = RefineControls(
            self.iface,
            self._refine_group,
            lambda: self.backend_box.settings().client(),
            lambda sentence: self._say(sentence, Qgis.MessageLevel.Warning),
            body,
        )
        self.refine.edited.connect(self._refined)
        layout.addWidget(self.refine)

        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setVisible(False)  # shown by a run: an idle 0 % bar says nothing
        layout.addWidget(self.progress)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setObjectName("think2segStatus")
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status_label)

        self.tabs = QTabWidget()
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.TypeWriter)
        self.reasoning_view = QPlainTextEdit()
        self.reasoning_view.setReadOnly(True)
        self.reasoning_view.setPlaceholderText(tr("The model's reasoning appears here after a run."))
        self.answer_view = QPlainTextEdit()
        self.answer_view.setReadOnly(True)
        self.answer_view.setFont(mono)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setFont(mono)
        self.log_view.setPlaceholderText(tr("The backend's log tail appears here when something goes wrong."))
        self.tabs.addTab(self.reasoning_view, tr("Reasoning"))
        self.tabs.addTab(self.answer_view, tr("Raw answer"))
        self.tabs.addTab(self.log_view, tr("Backend log"))
        layout.addWidget(self.tabs, 1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        self.setWidget(scroll)
        self.wheel_guard = WheelGuard(scroll)
        self.wheel_guard.guard(body)
        self.setMinimumWidth(MIN_WIDTH)
        self._fit_narrow()

    def _update_buttons(self, *_args) -> None:
        """Run needs a backend to send to (a configured or answering one) and no run going on; Refine a result."""
        if not hasattr(self, "refine"):
            return  # still building
        ready = self.backend_box.is_configured() or (
            self.backend_box.health is not None and self.backend_box.health.loaded
        )
        self.run_button.setEnabled(self.task is None and ready)
        self.run_button.setToolTip("" if ready else tr("Set up a backend first (Backend > “Set up backend…”)"))
        self.refine.action.setEnabled(self._refine_group() is not None)

    def _fit_narrow(self) -> None:
        """Narrow-safe: combo boxes size to a few characters, not to their longest item (a long layer name or query
        would otherwise widen the panel past the dock and clip its right edge)."""
        for combo in self.findChildren(QComboBox):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
        # Buttons as wide as their text, not the style's 80 px minimum: a row of four then fits.
        for button in self.findChildren(QPushButton):
            button.setMinimumWidth(button.fontMetrics().horizontalAdvance(button.text()) + 24)
        # Labels go above their fields when a row does not fit beside them.
        for form in self.findChildren(QFormLayout):
            form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)

    def _load_run_settings(self) -> None:
        run = self.run_settings
        self._fill_history()
        self.sam_combo.setCurrentIndex(max(0, self.sam_combo.findData(run.sam_size)))
        self.backend_box.sam_size = run.sam_size
        self.budget_spin.setValue(int(run.max_reasoning_tokens))
        self.destination_combo.setCurrentIndex(max(0, self.destination_combo.findData(run.destination)))
        self.area_combo.setCurrentIndex(max(0, self.area_combo.findData(run.area)))
        self.max_size_spin.setValue(int(run.export_max_size))
        self.constrain_check.setChecked(bool(run.constrain_answer))
        self._area_changed()

    def _fill_history(self) -> None:
        text = self.query_combo.currentText()
        self.query_combo.blockSignals(True)
        self.query_combo.clear()
        self.query_combo.addItems(self.run_settings.history)
        self.query_combo.setEditText(text)
        self.query_combo.blockSignals(False)

    def _sam_size_changed(self, *_args) -> None:
        self.backend_box.sam_size = self.sam_combo.currentData() or ""

    def _hide_prompt_boxes(self, *_args) -> None:
        """Our prompt boxes are polygons, but no area to search in: keep them out of the area picker. (A result's
        masks stay: searching inside an earlier answer is a use.)"""
        try:
            boxes = [
                layer
                for layer in QgsProject.instance().mapLayers().values()
                if layer.customProperty(ROLE_PROPERTY) == "boxes"
            ]
            self.selection_combo.setExceptedLayerList(boxes)
        except RuntimeError:  # the panel is being deleted
            pass

    def _area_changed(self, *_args) -> None:
        self.selection_combo.setVisible(self.area_combo.currentData() == AREA_SELECTION)

    def use_active_layer(self) -> None:
        layer = self.iface.activeLayer() if hasattr(self.iface, "activeLayer") else None
        if isinstance(layer, QgsRasterLayer):
            self.layer_combo.setLayer(layer)

    def _follow_active_layer(self, layer) -> None:
        if isinstance(layer, QgsRasterLayer) and (self.task is None):
            self.layer_combo.setLayer(layer)
        self._update_buttons()  # a result layer made active: Refine has something to refine

    def set_query(self, text: str) -> None:
        self.query_combo.setEditText(text)

    # -- messages -------------------------------------------------------------------------------------------
    def _say(
        self,
        sentence: str,
        level=Qgis.MessageLevel.Info,
        log_tail: str = "",
        duration: int = 8,
        backend_problem: bool = False,
    ) -> None:
        if level == Qgis.MessageLevel.Critical:
            duration = 0  # a failure stays in the message bar until the user closes it
        self.status_label.setText(sentence)
        if log_tail:
            self.log_view.setPlainText(readable_log(log_tail))
            self.tabs.setCurrentWidget(self.log_view)
        bar = self.iface.messageBar() if hasattr(self.iface, "messageBar") else None
        if bar is not None:
            line, more = bar_sentence(sentence)
            if more:  # the bar is one line: a short sentence there, the whole text behind QGIS's "Show more"
                bar.pushMessage("Think2Seg", line, more, level=level, duration=duration)
            else:
                bar.pushMessage("Think2Seg", line, level=level, duration=duration)
            if backend_problem and bar.currentItem() is not None:
                self._backend_problems.append((sentence, bar.currentItem()))
        elif backend_problem:
            self._backend_problems.append((sentence, None))
        QgsMessageLog.logMessage(sentence, LOG_TAG, level=level)

    def _clear_backend_problems(self) -> None:
        """The backend answers again: the sentences about it not answering (or refusing the token) are stale."""
        problems, self._backend_problems = self._backend_problems, []
        bar = self.iface.messageBar() if hasattr(self.iface, "messageBar") else None
        for sentence, item in problems:
            if self.status_label.text() == sentence:
                self.status_label.setText("")
            if bar is not None and item is not None:
                try:
                    if item in bar.items():
                        bar.popWidget(item)
                except RuntimeError:  # closed by the user (deleted)
                    pass

    def _on_backend_status(self, kind: str, sentence: str, log_tail: str) -> None:
        if log_tail:
            self.log_view.setPlainText(readable_log(log_tail))
        if kind == "ok":
            self._clear_backend_problems()
        if kind == "bad" and self.launcher.state in (STATE_CRASHED, STATE_FAILED):
            self._say(sentence, Qgis.MessageLevel.Critical, log_tail, backend_problem=True)

    def show_backend_log(self) -> None:
        tail = readable_log(self.launcher.log_tail(120))
        self.log_view.setPlainText(
            tail
            or tr("No backend log yet ({path}): the panel writes one when it starts a backend.").format(
                path=self.launcher.log_file
            )
        )
        self.tabs.setCurrentWidget(self.log_view)
        self.log_view.verticalScrollBar().setValue(self.log_view.verticalScrollBar().maximum())

    def open_setup(self):
        """The guided first run: install a backend into a managed venv, or connect to a running one."""
        from .setup_dialog import SetupDialog

        current = getattr(self, "setup_dialog", None)
        try:
            if current is not None and current.isVisible():  # one set-up at a time: bring it to the front
                current.raise_()
                current.activateWindow()
                return current
        except RuntimeError:  # deleted
            pass
        dialog = SetupDialog(self.backend_box, self)
        dialog.show()
        self.setup_dialog = dialog
        return dialog

    # -- run ------------------------------------------------------------------------------------------------
    def _collect_run_settings(self) -> None:
        run = self.run_settings
        run.sam_size = self.sam_combo.currentData() or SAM_SIZE_BACKEND
        run.max_reasoning_tokens = self.budget_spin.value()
        run.destination = self.destination_combo.currentData()
        run.area = self.area_combo.currentData()
        run.export_max_size = self.max_size_spin.value()
        run.constrain_answer = self.constrain_check.isChecked()

    def run(self) -> SegmentationTask | None:
        """Start a run in the background; returns the task, or None with a sentence shown."""
        if self.task is not None:
            self._say(tr("A run is already going on: wait for it or press Cancel."), Qgis.MessageLevel.Warning)
            return None
        query = " ".join(self.query_combo.currentText().split())
        if not query:
            self._say(tr("Type a query first: what should be found in the raster?"), Qgis.MessageLevel.Warning)
            return None
        layer = self.layer_combo.currentLayer()
        if not isinstance(layer, QgsRasterLayer):
            self._say(tr("Choose a raster layer to read (add one to the project first)."), Qgis.MessageLevel.Warning)
            return None
        self._collect_run_settings()
        try:
            source = RasterSource.from_layer(layer)
            area, clip = self._area(source)
        except Think2SegError as error:
            self._say(error.message, Qgis.MessageLevel.Warning)
            return None
        backend = self.backend_box.settings()
        token = backend_token(backend)  # the same credential Processing sends
        remember_query(self.run_settings, query)
        save_run_settings(self.run_settings)
        self._fill_history()
        self.query_combo.setEditText(query)

        request = SegmentationRequest(
            query=query,
            source=source,
            area=area,
            options=SegmentationOptions(
                sam_size=self.run_settings.sam_size,
                max_reasoning_tokens=self.run_settings.max_reasoning_tokens,
                constrain_answer=self.run_settings.constrain_answer,
            ),
            url=backend.effective_url(),
            token=token,
            connect_timeout=backend.connect_timeout,
            request_timeout=backend.request_timeout,
            max_size=self.run_settings.export_max_size,
            tiled_max_size=self.run_settings.tiled_max_size,
            clip_geometry=clip,
        )
        self.task = SegmentationTask(request, self._on_done)
        self.task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        self.task.status_message.connect(self.status_label.setText)
        self.reasoning_view.clear()
        self.answer_view.clear()
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.status_label.setText(tr("Running “{query}” on “{layer}”…").format(query=query, layer=source.name))
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def _area(self, source: RasterSource):
        mode = self.area_combo.currentData()
        if mode == AREA_LAYER:
            return areas.whole_layer(source), None
        if mode == AREA_SELECTION:
            return areas.selected_polygons(self.selection_combo.currentLayer(), source)
        canvas = self.iface.mapCanvas()
        return areas.map_extent(canvas.extent(), canvas.mapSettings().destinationCrs(), source), None

    def cancel(self) -> None:
        if self.task is not None:
            self.status_label.setText(tr("Cancelling…"))
            self.task.cancel()

    def _on_done(self, outcome: TaskOutcome) -> None:
        self.task = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.backend_box.check()  # the queue changed: never leave "1 running" on screen after the run
        result = None
        try:
            result = self._show_outcome(outcome)
        finally:
            self.progress.setVisible(outcome.error is None)  # 100 % after an answer; no 0 % bar after a failure
            self._update_buttons()
            self.finished.emit(outcome, result)

    def _show_outcome(self, outcome: TaskOutcome) -> ResultLayers | None:
        request = outcome.request
        if outcome.error is not None:
            self.progress.setValue(0)
            error = outcome.error
            if error.code == CANCELLED:
                self._say(error.message, Qgis.MessageLevel.Info)
                return None
            crashed = self.launcher.state == STATE_CRASHED
            # The log tail helps only when this panel started the backend (its log is the one we know).
            ours = self.launcher.state != STATE_STOPPED
            tail = self.launcher.log_tail() if ours and (error.code in INTERNAL_CODES or crashed) else ""
            if error.code == UNREACHABLE and crashed:
                error = Think2SegError(
                    CRASHED,
                    tr("The local backend stopped unexpectedly; see its log ({log}).").format(
                        log=self.launcher.log_file
                    ),
                )
            elif error.code == UNREACHABLE:  # advice that matches the buttons the panel shows (no Start in URL mode)
                error = Think2SegError(UNREACHABLE, self.backend_box.unreachable_state()[1])
            self._say(
                error.message,
                Qgis.MessageLevel.Critical,
                tail,
                backend_problem=error.code in CONNECTION_CODES or error.code == CRASHED,
            )
            self.backend_box.check()
            return None
        self._clear_backend_problems()  # it answered: whatever was said about it not answering is over
        answer = outcome.answer or {}
        self.progress.setValue(100)
        self.reasoning_view.setPlainText(readable_reasoning(str(answer.get("reasoning") or "")))
        self.answer_view.setPlainText(_raw_answer_text(answer))
        self.tabs.setCurrentWidget(self.reasoning_view)
        if answer_is_empty(answer):
            self._say(empty_sentence(answer, request.query, request.source.name), Qgis.MessageLevel.Info)
            return None
        context = ResultContext(
            query=request.query,
            source_layer=request.source.name,
            crs=request.source.crs,
            sam_size=request.options.sam_size,
            clip_geometry=request.clip_geometry,
        )
        geopackage = None
        destination = self.run_settings.destination
        temporary_note = ""
        if destination == DESTINATION_PROJECT:
            home = QgsProject.instance().homePath() if QgsProject.instance().fileName() else ""
            if home and os.access(home, os.W_OK):
                destination, geopackage = DESTINATION_GEOPACKAGE, os.path.join(home, "think2seg_results.gpkg")
            else:
                destination = DESTINATION_MEMORY
                temporary_note = tr(
                    "These are temporary layers (QGIS drops them on quit): save the project, and the next results go "
                    "to a GeoPackage in its folder."
                )
        elif destination == DESTINATION_GEOPACKAGE:
            home = QgsProject.instance().homePath() or tempfile.gettempdir()
            geopackage = geopackage_path_for(
                request.source.file_path, home if os.access(home, os.W_OK) else tempfile.gettempdir()
            )
        try:
            result = build_result_layers(answer, context, destination, geopackage)
        except Think2SegError as error:
            self._say(error.message, Qgis.MessageLevel.Critical)
            return None
        if result.masks.featureCount() == 0:
            self._say(
                tr("Nothing matches “{query}” inside the selected polygons.").format(query=request.query),
                Qgis.MessageLevel.Info,
            )
            return None
        group = add_to_project(result)
        view = self.iface.layerTreeView() if hasattr(self.iface, "layerTreeView") else None
        if view is not None:  # the view may draw a new group collapsed; show its three layers
            index = view.layerTreeModel().node2index(group)
            view.expand(view.proxyModel().mapFromSource(index) if hasattr(view, "proxyModel") else index)
        self.last_result = result
        self._zoom_to(result)
        where = tr(" (saved in {path})").format(path=geopackage) if geopackage else ""
        note = " ".join(part for part in (sam_size_note(answer, request.options.sam_size), temporary_note) if part)
        self._say(
            tr("{message} for “{query}” in “{layer}”{where}. {note}")
            .format(
                message=result.message.rstrip("."),
                query=request.query,
                layer=request.source.name,
                where=where,
                note=note,
            )
            .strip(),
            Qgis.MessageLevel.Success,
        )
        return result

    def _refined(self, group: ResultGroup) -> None:
        """A refine changed a result: its count and area, as the masks layer now holds them."""
        self.status_label.setText(
            tr("“{layer}”: {summary}").format(layer=group.masks.name(), summary=summary_sentence(group.masks, True))
        )

    def _refine_group(self) -> ResultGroup | None:
        """The result to refine: the active layer's group, else the last result."""
        layer = self.iface.activeLayer() if hasattr(self.iface, "activeLayer") else None
        group = ResultGroup.of_layer(layer)
        if group is None and self.last_result is not None:
            group = ResultGroup.of_layer(self.last_result.masks)
        return group

    def _zoom_to(self, result: ResultLayers) -> None:
        canvas = self.iface.mapCanvas()
        extent = answer_extent(result, canvas.mapSettings().destinationCrs())
        if extent is not None:
            canvas.setExtent(extent)
            canvas.refresh()

    # -- life cycle -----------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel a running task and stop watching; the plugin calls this from unload()."""
        if self.task is not None:
            self.task.on_done = lambda _outcome: None
            self.task.cancel()
            self.task = None
        self.backend_box.timer.stop()
        self.refine.unregister()
        try:
            QgsProject.instance().layersAdded.disconnect(self._hide_prompt_boxes)
        except (TypeError, RuntimeError):
            pass
        try:  # a health answer still on its way must not reach a panel being deleted
            self.backend_box.configured_changed.disconnect(self._update_buttons)
            self.backend_box.status_changed.disconnect(self._on_backend_status)
        except (TypeError, RuntimeError):
            pass
        if hasattr(self.iface, "currentLayerChanged"):
            try:
                self.iface.currentLayerChanged.disconnect(self._follow_active_layer)
            except (TypeError, RuntimeError):
                pass

    def showEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().showEvent(event)
        self.backend_box.check()
        self.backend_box.timer.start()

    def hideEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().hideEvent(event)
        self.backend_box.timer.stop()


def _rounded(value):
    """Floats as people read them in the Answer tab (289.2, not 289.20000000000005; seconds to the hundredth)."""
    if isinstance(value, float):
        return round(value, PIXEL_DECIMALS)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _raw_answer_text(answer: dict) -> str:
    raw = str(answer.get("answer") or "")
    keys = ("status", "message", "models", "timings", "read", "epsg", "area_unit")
    summary = _rounded({k: answer.get(k) for k in keys})
    return f"{raw}\n\n{json.dumps(summary, indent=2, ensure_ascii=False)}".strip()

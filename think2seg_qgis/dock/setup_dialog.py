"""The guided first run: install the backend into a managed environment, or connect to a running backend."""

from __future__ import annotations

import shutil
import subprocess  # nosec B404  # nvidia-smi is asked which GPU there is; its command is fixed, never a shell

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from ..backend_launcher import resolve_interpreter
from ..backend_setup import (
    STANDALONE_PYTHON,
    TORCH_CPU,
    TORCH_CUDA,
    BackendSetup,
    SetupPlan,
    bundled_wheel,
    default_venv_dir,
    python_choice,
)
from ..errors import Think2SegError
from ..i18n import tr
from ..settings import default_log_file


def nvidia_gpu() -> str:
    """The first NVIDIA GPU ``nvidia-smi -L`` lists ("GPU 0: NVIDIA H200 (UUID: …)"), or "" when there is none."""
    program = shutil.which("nvidia-smi")
    if not program:
        return ""
    try:
        listed = subprocess.run([program, "-L"], capture_output=True, text=True, timeout=5, check=False)  # nosec B603  # nvidia-smi -L, no shell
    except (OSError, subprocess.SubprocessError):
        return ""
    first = next((line for line in listed.stdout.splitlines() if line.startswith("GPU")), "")
    return first.split(":", 1)[1].split("(UUID", 1)[0].strip() if ":" in first else ""


class SetupDialog(QDialog):
    def __init__(self, backend_box, parent=None):
        super().__init__(parent)
        self.setWindowTitle(tr("Set up the Think2Seg backend"))
        self.setObjectName("think2segSetupDialog")
        self.box = backend_box
        self.wheel = bundled_wheel()
        self.reuse_site_packages = ""  # see backend_setup.SetupPlan
        self.setup: BackendSetup | None = None
        self.setup_log = default_log_file().replace("backend-qgis.log", "backend-setup.log")
        self._build()
        # as tall as the choices need (a fixed 480 px squashed the install form's rows into each other on 3.44)
        self.resize(max(560, self.sizeHint().width()), self.sizeHint().height())

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        intro = QLabel(
            tr(
                "Think2Seg runs its models (torch, transformers, SAM2) in a Python environment of their own, "
                "never inside QGIS. Install one here (a few GB, from PyPI), or connect to a backend that already "
                "runs on this machine or a server."
            )
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)

        self.install_radio = QRadioButton(tr("Install a backend on this computer"))
        self.connect_radio = QRadioButton(tr("Connect to a running backend"))
        self.install_radio.setChecked(True)
        layout.addWidget(self.install_radio)

        self.install_widget = QWidget()
        install_form = QFormLayout(self.install_widget)
        self.folder_widget = QgsFileWidget()
        self.folder_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.folder_widget.setFilePath(default_venv_dir())
        self.folder_widget.setToolTip(tr("Where the environment goes (default: inside your QGIS profile)"))
        self.torch_combo = QComboBox()
        self.torch_combo.addItem(tr("CPU only (works everywhere, slow)"), TORCH_CPU)
        self.torch_combo.addItem(tr("NVIDIA GPU (CUDA)"), TORCH_CUDA)
        gpu = nvidia_gpu()
        if gpu:  # found one: the GPU build is what this machine wants
            self.torch_combo.setCurrentIndex(self.torch_combo.findData(TORCH_CUDA))
        self.gpu_label = QLabel(
            tr("Found {gpu}.").format(gpu=gpu) if gpu else tr("No NVIDIA GPU found (nvidia-smi): CPU it is.")
        )
        self.size_label = QLabel(
            tr(
                "Download: about 1 GB (CPU) or 6 GB (NVIDIA GPU) now, then about 8 GB of model weights when the "
                "backend first starts."
            )
        )
        for label in (self.gpu_label, self.size_label):
            label.setWordWrap(True)
        install_form.addRow(tr("Folder"), self.folder_widget)
        install_form.addRow(tr("Compute"), self.torch_combo)
        install_form.addRow(self.gpu_label)
        install_form.addRow(self.size_label)
        layout.addWidget(self.install_widget)

        # README promises it: a backend environment made before (by hand, or by an earlier set-up).
        self.existing_radio = QRadioButton(tr("Use an existing backend environment"))
        self.existing_widget = QWidget()
        existing_form = QFormLayout(self.existing_widget)
        self.existing_widget_path = QgsFileWidget()
        self.existing_widget_path.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.existing_widget_path.setToolTip(tr("A venv folder, or a project folder that has a .venv"))
        existing_form.addRow(tr("Folder"), self.existing_widget_path)
        layout.addWidget(self.existing_radio)
        layout.addWidget(self.existing_widget)

        layout.addWidget(self.connect_radio)
        self.connect_widget = QWidget()
        connect_form = QFormLayout(self.connect_widget)
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText("http://gpu-server:8765")
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText(tr("the content of the backend's token file"))
        connect_form.addRow(tr("URL"), self.url_edit)
        connect_form.addRow(tr("Token"), self.token_edit)
        layout.addWidget(self.connect_widget)

        buttons = QHBoxLayout()
        self.go_button = QPushButton(tr("Install"))
        self.go_button.setObjectName("think2segSetupGo")
        self.go_button.clicked.connect(self.go)
        self.close_button = QPushButton(tr("Close"))
        self.close_button.setObjectName("think2segSetupClose")
        self.close_button.clicked.connect(self._close_or_cancel)
        buttons.addStretch(1)
        buttons.addWidget(self.go_button)
        buttons.addWidget(self.close_button)
        layout.addLayout(buttons)

        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setObjectName("think2segSetupStatus")
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addWidget(self.log_view, 1)
        self.progress.hide()  # no idle 0 % bar or empty log before anything runs
        self.log_view.hide()

        for radio in (self.install_radio, self.existing_radio, self.connect_radio):
            radio.toggled.connect(self._mode_changed)
        self._mode_changed()

    def _mode_changed(self, *_args) -> None:
        install = self.install_radio.isChecked()
        existing = self.existing_radio.isChecked()
        self.install_widget.setEnabled(install)
        self.existing_widget.setEnabled(existing)
        self.connect_widget.setEnabled(self.connect_radio.isChecked())
        self.go_button.setText(tr("Install") if install else tr("Use it") if existing else tr("Connect"))

    def go(self) -> None:
        if self.install_radio.isChecked():
            self.install()
        elif self.existing_radio.isChecked():
            self.use_existing()
        else:
            self.connect_remote()

    def running(self) -> bool:
        return self.setup is not None and self.setup.ok is None

    def _close_or_cancel(self) -> None:
        if self.running():
            self.cancel()
        else:
            self.close()

    def cancel(self) -> None:
        """Stop the install: pip is killed, the half-made environment stays (a new install replaces it)."""
        if self.running():
            self._cancelled = True
            self.setup.cancel()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        self.cancel()  # closing the window must not leave pip running unseen
        super().closeEvent(event)

    def use_existing(self) -> None:
        folder = self.existing_widget_path.filePath().strip()
        if not resolve_interpreter(folder):
            self.status_label.setText(
                tr(
                    "No Python environment in {folder}: choose the venv folder (it holds bin/python or "
                    "Scripts/python.exe), or a project folder that has a .venv."
                ).format(folder=folder or "…")
            )
            return
        self.box.use_local_environment(folder)
        self.status_label.setText(
            tr("Starting the backend of {folder}… (the panel shows how it goes)").format(folder=folder)
        )

    # -- install ----------------------------------------------------------------------------------------------
    def install(self) -> BackendSetup | None:
        python, why = python_choice()  # QGIS's Python, or a standalone one from uv when it cannot hold torch
        plan = SetupPlan(
            venv_dir=self.folder_widget.filePath().strip() or default_venv_dir(),
            wheel=self.wheel,
            torch=self.torch_combo.currentData(),
            python=python,
            reuse_site_packages=self.reuse_site_packages,
            standalone_python="" if python else STANDALONE_PYTHON,
            python_reason=why,
        )
        setup = BackendSetup(plan, self.setup_log, self)
        setup.progress.connect(self._on_progress)
        setup.output.connect(self._on_output)
        setup.finished.connect(self._on_finished)
        self.log_view.clear()
        self.progress.show()
        self.log_view.show()
        self.resize(self.width(), max(self.height(), 520))
        try:
            setup.start()
        except Think2SegError as error:
            self.status_label.setText(error.message)
            return None
        self.setup = setup
        self._cancelled = False
        self.go_button.setEnabled(False)
        self.close_button.setText(tr("Cancel"))
        return setup

    def _on_progress(self, index: int, count: int, title: str) -> None:
        self.progress.setValue(int(100 * index / max(1, count)))
        self.status_label.setText(tr("Step {n} of {count}: {title}…").format(n=index + 1, count=count, title=title))

    def _on_output(self, text: str) -> None:
        self.log_view.moveCursor(self.log_view.textCursor().MoveOperation.End)
        self.log_view.insertPlainText(text)

    def _on_finished(self, ok: bool, sentence: str) -> None:
        self.go_button.setEnabled(True)
        self.close_button.setText(tr("Close"))
        if getattr(self, "_cancelled", False):
            self.status_label.setText(tr("The set-up was cancelled; press Install to start it again."))
            return
        if not ok:  # the sentence names a network cause and what to do (backend_setup.network_failure)
            self.status_label.setText(sentence)
            return
        self.progress.setValue(100)
        self.status_label.setText(sentence + " " + tr("Starting it…"))
        self.box.use_local_environment(self.setup.plan.venv_dir)

    # -- connect ------------------------------------------------------------------------------------------------
    def connect_remote(self) -> None:
        url = self.url_edit.text().strip()
        if not url.startswith(("http://", "https://")):
            self.status_label.setText(tr("Type the backend's address, e.g. http://gpu-server:8765."))
            return
        self.box.use_remote(url, self.token_edit.text().strip())
        self.status_label.setText(tr("Connecting to {url}… (the panel shows the answer)").format(url=url))

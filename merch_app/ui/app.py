"""GUI entry point: ``run_gui`` creates the application and the main window."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QProgressDialog

from merch_app.memory import configure_allocator
from merch_app.paths import default_workspace, demo_workspace
from merch_app.ui.charts import configure_pyqtgraph
from merch_app.ui.compat import shield_pyside_612_refcount
from merch_app.ui.gui_gc import settle_startup_heap
from merch_app.ui.main_window import MainWindow
from merch_app.ui.workers import error_text

log = logging.getLogger(__name__)

GUI_SWITCH_INTERVAL_S = 0.001  # sys.setswitchinterval while the GUI runs (Python's default: 0.005)

# Short training run started automatically when the demo workspace has no model.
DEMO_TRAIN_OVERRIDES = {"epochs": 3}


def create_app() -> QApplication:
    """The QApplication (reused if one exists, e.g. under pytest-qt)."""
    shield_pyside_612_refcount()
    configure_allocator()  # also when the GUI is started without the merch-app entry point
    # Every Qt call releases the GIL, and taking it back from a busy worker thread waits for the
    # switch interval: a repaint of a few dozen Qt calls waited 5 ms each (GUI stalls of 50-90 ms
    # while training, in benchmarks/bench_responsiveness.py).  1 ms keeps those waits short.
    sys.setswitchinterval(GUI_SWITCH_INTERVAL_S)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("merch_app")
    app.setOrganizationName("merch_app")
    configure_pyqtgraph()
    return app


class DemoLoader:
    """Creates/imports the demo workspace in a worker behind a progress dialog, then opens it."""

    def __init__(self, window: MainWindow, path: Path, auto_train: bool = True) -> None:
        self.window = window
        self.path = Path(path)
        self.auto_train = auto_train
        self.finished = False
        self.dialog = QProgressDialog("Preparing the demo workspace…", "Cancel", 0, 1000, window)
        self.dialog.setWindowTitle("merch_app demo")
        self.dialog.setWindowModality(Qt.WindowModality.WindowModal)
        self.dialog.setMinimumDuration(300)
        self.runner = window.create_runner("demo")
        self.dialog.canceled.connect(lambda: self.runner.cancel())

    def start(self) -> None:
        # not at GUI start-up: data.demo loads the import modules (+20-30 ms), as DataScreen.start_import says
        from merch_app.data.demo import ensure_demo_workspace

        path = self.path
        self.runner.start(
            lambda ctx: ensure_demo_workspace(path, progress=ctx.progress, cancel=ctx.cancel),
            label="Preparing demo workspace",
            on_progress=self._progress,
            on_result=self._opened,
            on_error=lambda exc, _tb: self.window.show_message(
                f"The demo workspace could not be prepared: {error_text(exc)}", "error"),
            on_cancelled=lambda: self.window.show_message("Demo preparation cancelled.", "warning"),
            on_finished=self._done,
        )

    def _progress(self, p) -> None:
        if p.fraction is not None:
            self.dialog.setValue(int(p.fraction * 1000))
        if p.message:
            self.dialog.setLabelText(p.message)

    def _opened(self, path) -> None:
        if not self.window.open_workspace(path or self.path):
            return
        version, _warning = self.window.ctx.active_model()
        train = self.window.screens.get("Train")
        if version is None and self.auto_train and train is not None and hasattr(train, "has_models"):
            if not train.has_models():
                self.window.show_screen("Train")
                train.start_training(overrides=DEMO_TRAIN_OVERRIDES)
                self.window.show_message("No model yet: a short demo training has started.", "info")

    def _done(self, _state: str) -> None:
        self.finished = True
        self.dialog.reset()
        self.dialog.hide()


def build_window(workspace: Optional[Path] = None, demo: bool = False, auto_train: bool = True) -> MainWindow:
    """Create the main window and open the workspace (or start the demo loader)."""
    create_app()
    window = MainWindow()
    settle_startup_heap()
    if demo:
        window.demo_loader = DemoLoader(window, Path(workspace) if workspace else demo_workspace(), auto_train)
        window.demo_loader.start()
    else:
        window.open_workspace(Path(workspace) if workspace else default_workspace())
    return window


def run_gui(workspace: Optional[Path] = None, demo: bool = False) -> int:
    """Start the desktop app; returns the process exit code.

    Parameters
    ----------
    workspace
        Workspace file to open (default: the per-user default, or the demo
        workspace with ``demo``).
    demo
        Prepare the demo workspace on first run (import in a worker with a
        progress dialog; start a short training if no model exists).
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = create_app()
    window = build_window(workspace, demo)
    # Closing the window already stops the workers; this also covers quitting by other means.
    app.aboutToQuit.connect(lambda: [r.shutdown() for r in window.runners])
    window.show()
    return app.exec()

"""The main window: side bar of screens, File menu, status bar with the running job."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import pyqtgraph as pg
from PySide6.QtCore import QSettings, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from merch_app.data.workspace import WorkspaceError
from merch_app.paths import user_data_dir
from merch_app.ui.context import WorkspaceContext
from merch_app.ui.screens.catalogue_screen import CatalogueScreen
from merch_app.ui.screens.data_screen import DataScreen
from merch_app.ui.screens.evaluate_screen import EvaluateScreen
from merch_app.ui.screens.query_screen import QueryScreen
from merch_app.ui.screens.rules_screen import RulesScreen
from merch_app.ui.screens.search_log_screen import SearchLogScreen
from merch_app.ui.screens.train_screen import TrainScreen
from merch_app.ui.screens.users_screen import UsersScreen
from merch_app.ui.status_widgets import JobStatus, MessageBanner, PageStack
from merch_app.ui.workers import JobRunner, error_text

log = logging.getLogger(__name__)

# The screens in side-bar order.
SCREENS: list[type] = [DataScreen, TrainScreen, QueryScreen, UsersScreen, CatalogueScreen, EvaluateScreen,
                       SearchLogScreen, RulesScreen]
MAX_RECENT = 8
WORKSPACE_FILTER = "merch_app workspace (*.merch.sqlite *.sqlite *.db);;All files (*)"


def gui_settings() -> QSettings:
    """GUI preferences (recent workspaces, geometry) beside the default workspace."""
    return QSettings(str(user_data_dir() / "gui.ini"), QSettings.Format.IniFormat)


class MainWindow(QMainWindow):
    """Side bar of screens + stacked pages + File menu + status bar."""

    message_shown = Signal(str, str)  # text, level (tests listen to it)

    def __init__(self, workspace: Optional[Path] = None) -> None:
        super().__init__()
        self.ctx = WorkspaceContext(self)
        self.runners: list[JobRunner] = []
        self._ask_on_quit: list[JobRunner] = []
        self.resize(1400, 900)
        self.setAcceptDrops(False)

        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(6, 6, 6, 0)
        body = QHBoxLayout()
        outer.addLayout(body, 1)
        self.sidebar = QListWidget()
        self.sidebar.setFixedWidth(130)
        self.sidebar.setStyleSheet("QListWidget { font-size: 11pt; } QListWidget::item { padding: 8px; }")
        self.stack = PageStack()
        self.stack.currentChanged.connect(lambda _i: self.stack.updateGeometry())
        body.addWidget(self.sidebar)
        body.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.banner = MessageBanner()
        self.banner.float_over(self.stack)

        self.ws_label = QLabel()
        self.model_label = QLabel()
        self.ws_label.setMaximumWidth(320)  # long names must not widen the window
        self.model_label.setMaximumWidth(420)
        self.job_status = JobStatus()
        sb = self.statusBar()
        sb.addWidget(self.ws_label)
        sb.addWidget(QLabel("|"))
        sb.addWidget(self.model_label)
        sb.addPermanentWidget(self.job_status)
        self.job_status.panel.float_over(self.stack)
        self.banner.below = self.job_status.panel
        self.job_status.panel.placed.connect(self.banner.follow)

        self.screens: dict[str, QWidget] = {}
        self._broken_screens: list[str] = []
        for cls in SCREENS:
            self._add_screen(cls)
        self.sidebar.currentRowChanged.connect(self._show_page)

        self._build_menu()
        self.ctx.workspace_changed.connect(self._on_workspace_changed)
        self.ctx.models_changed.connect(self.refresh_model_label)
        self.ctx.busy = self.busy
        self.ctx.external_change.connect(lambda text: self.show_message(text, "info"))
        if self._broken_screens:
            self.show_message("Some screens could not start: " + "; ".join(self._broken_screens), "error")
        if workspace is not None:
            self.open_workspace(workspace)
        if self.sidebar.count():
            self.sidebar.setCurrentRow(0)

    # ---------------------------------------------------------------- screens
    def _add_screen(self, cls: type) -> None:
        try:
            screen = cls(self)
        except Exception as exc:  # noqa: BLE001 - one broken screen must not stop the others (said in a banner)
            log.exception("screen %s failed to start", cls.__name__)
            self._broken_screens.append(error_text(exc, f"the {getattr(cls, 'title', cls.__name__)} screen"))
            return
        screen.ready = True
        self.screens[screen.title] = screen
        self.stack.addWidget(screen)
        QListWidgetItem(screen.title, self.sidebar)

    def _show_page(self, row: int) -> None:
        self.stack.setCurrentIndex(row)
        page = self.stack.currentWidget()
        if hasattr(page, "on_shown"):
            page.on_shown()

    def show_screen(self, title: str) -> QWidget:
        """Switch to the screen titled ``title`` and return it."""
        screen = self.screens[title]
        self.sidebar.setCurrentRow(self.stack.indexOf(screen))
        return screen

    def open_query(self, text: str) -> None:
        """Show the Query screen searching for ``text`` (e.g. a query clicked on the Evaluate screen)."""
        screen = self.screens.get("Query")
        if screen is None:
            return
        self.show_screen("Query")
        controls = screen.controls
        controls.mode.setCurrentIndex(max(controls.mode.findData("search"), 0))
        controls.query_box.setText(text)

    # ------------------------------------------------------------------- jobs
    def create_runner(self, name: str, ask_on_quit: bool = False) -> JobRunner:
        """A job runner whose jobs show in the status bar and are awaited on quit.

        ``ask_on_quit``: its jobs are long and lose their work when cancelled (training,
        fine-tuning), so quitting while one runs asks first.
        """
        runner = JobRunner(name, self)
        if ask_on_quit:
            self._ask_on_quit.append(runner)
        runner.job_started.connect(self.job_status.started)
        runner.job_progress.connect(self.job_status.progress)
        runner.job_finished.connect(self.job_status.finished)
        runner.job_finished.connect(self.ctx.job_ended)
        runner.job_failed.connect(lambda _h, text: self.show_message(text, "error"))
        self.runners.append(runner)
        return runner

    def busy(self) -> bool:
        return any(r.is_busy() for r in self.runners)

    def long_jobs(self) -> list[str]:
        """Labels of the running jobs that quitting would throw away (training, fine-tuning)."""
        return [(r.current.label if r.current else "") or r.name for r in self._ask_on_quit if r.is_busy()]

    def confirm_quit(self, jobs: list[str]) -> bool:
        """Ask whether to quit and cancel ``jobs`` (True = quit)."""
        answer = QMessageBox.question(
            self, "Quit merch_app",
            f"{'; '.join(jobs)} is still running. Quit and cancel it? Nothing of the run is saved.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(event)
        QTimer.singleShot(0, self, self.job_status.panel.follow)  # after the layout has moved the screens
        QTimer.singleShot(0, self, self.banner.follow)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt name
        """Ask when a long job runs, then cancel running jobs, wait for their threads and close."""
        jobs = self.long_jobs()
        if jobs and not self.confirm_quit(jobs):
            event.ignore()
            return
        if self.busy():
            self.statusBar().showMessage("Waiting for running jobs to stop…")
            self.job_status.hide()
            self.job_status.panel.hide()
        for r in self.runners:
            r.cancel()
        for r in self.runners:
            r.shutdown()
        self._save_geometry()
        self.ctx.close()
        # Tear pyqtgraph scenes down now (pyqtgraph's own close()), not inside Qt's recursive
        # deletion of the window, where items can be asked for their boundingRect half-destroyed.
        for view in self.findChildren(pg.GraphicsView):
            view.close()
        super().closeEvent(event)

    def _save_geometry(self) -> None:
        gui_settings().setValue("geometry", self.saveGeometry())

    # --------------------------------------------------------------- messages
    def show_message(self, text: str, level: str = "info") -> None:
        """Show ``text`` in the inline banner (level: error | warning | info)."""
        self.banner.show_message(text, level)
        self.message_shown.emit(text, level)

    # -------------------------------------------------------------- workspace
    def open_workspace(self, path: Path | str) -> bool:
        """Open ``path``; on failure show why and keep the current workspace."""
        if self.busy():
            self.show_message("Wait for the running job to finish (or cancel it) before switching workspace.",
                              "warning")
            return False
        try:
            self.ctx.open(path)
        except (WorkspaceError, OSError) as exc:
            self.show_message(f"Cannot open workspace: {error_text(exc)}", "error")
            return False
        self._remember(self.ctx.path)
        return True

    def _on_workspace_changed(self, path: Path) -> None:
        self.setWindowTitle(f"{self.ctx.name} — merch_app")
        self.ws_label.setText(f"Workspace: {self.ctx.name}")
        self.ws_label.setToolTip(str(path))
        self.banner.hide()
        self.refresh_model_label()

    def refresh_model_label(self) -> None:
        version, warning = self.ctx.active_model()
        if warning:
            self.model_label.setText(f"Active model: {version.name} (damaged)" if version else
                                     "Active model: unreadable")
            self.show_message(warning, "warning")
        elif version is None:
            self.model_label.setText("Active model: none (text-only ranking)")
        else:
            self.model_label.setText(f"Active model: {version.name}")

    def _remember(self, path: Optional[Path]) -> None:
        if path is None:
            return
        s = gui_settings()
        recent = [p for p in (s.value("recent", []) or []) if p != str(path)]
        recent = [str(path)] + recent
        s.setValue("recent", recent[:MAX_RECENT])
        self._fill_recent()

    def recent_workspaces(self) -> list[str]:
        value = gui_settings().value("recent", []) or []
        return [value] if isinstance(value, str) else list(value)

    # ------------------------------------------------------------------- menu
    def _build_menu(self) -> None:
        m = self.menuBar().addMenu("&File")
        act = QAction("&New workspace…", self)
        act.setShortcut(QKeySequence.StandardKey.New)
        act.triggered.connect(self._new_workspace)
        m.addAction(act)
        act = QAction("&Open workspace…", self)
        act.setShortcut(QKeySequence.StandardKey.Open)
        act.triggered.connect(self._open_workspace_dialog)
        m.addAction(act)
        self.recent_menu = m.addMenu("&Recent workspaces")
        self._fill_recent()
        m.addSeparator()
        act = QAction("&Import…", self)
        act.setShortcut(QKeySequence("Ctrl+I"))
        act.triggered.connect(self._import)
        m.addAction(act)
        m.addSeparator()
        act = QAction("&Quit", self)
        act.setShortcut(QKeySequence.StandardKey.Quit)
        act.triggered.connect(self.close)
        m.addAction(act)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.recent_workspaces()
        for p in recent:
            act = self.recent_menu.addAction(p)
            act.triggered.connect(lambda _=False, p=p: self.open_workspace(p))
        self.recent_menu.setEnabled(bool(recent))

    def _start_dir(self) -> str:
        return str(self.ctx.path.parent if self.ctx.path else user_data_dir())

    def _new_workspace(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "New workspace", self._start_dir(), WORKSPACE_FILTER)
        if path:
            if not path.endswith((".sqlite", ".db")):
                path += ".merch.sqlite"
            if Path(path).exists():
                self.show_message(f"{path} already exists; use Open workspace… to open it.", "warning")
                return
            self.open_workspace(path)

    def _open_workspace_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open workspace", self._start_dir(), WORKSPACE_FILTER)
        if path:
            self.open_workspace(path)

    def _import(self) -> None:
        screen = self.screens.get("Data")
        if screen is not None:
            self.show_screen("Data")
            screen.choose_files()

"""Base class of the main window's screens."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QMessageBox, QWidget

from merch_app.data.job_marks import others_warning
from merch_app.ui.workers import error_text

if TYPE_CHECKING:
    from merch_app.ui.main_window import MainWindow

log = logging.getLogger(__name__)


class Screen(QWidget):
    """A page of the main window.

    Subclasses set ``title`` and override the ``on_*`` hooks; long work goes
    through runners made with :meth:`runner` (registered with the window so the
    status bar shows them and quitting waits for them).
    """

    title = "Screen"

    def __init__(self, window: "MainWindow") -> None:
        super().__init__()
        self.window_ = window
        self.ctx = window.ctx
        self.ready = False  # set by the window once the constructor has finished
        self._loaded = False  # see load_on_show / reload_when_shown
        self.ctx.workspace_changed.connect(lambda _p: self._safe(self.on_workspace_changed))
        self.ctx.data_changed.connect(lambda: self._safe(self.on_data_changed))
        self.ctx.models_changed.connect(lambda: self._safe(self.on_models_changed))
        self.ctx.rules_changed.connect(lambda: self._safe(self.on_rules_changed))
        self.ctx.suites_changed.connect(lambda: self._safe(self.on_suites_changed))

    def _safe(self, hook) -> None:
        """Run a hook; an error becomes a message in the window, never a crash."""
        if not self.ready:  # constructor failed: the window left this screen out
            return
        try:
            hook()
        except Exception as exc:  # noqa: BLE001
            log.exception("%s.%s failed", type(self).__name__, hook.__name__)
            self.show_error(f"{self.title}: {error_text(exc)}")

    def runner(self, name: str, ask_on_quit: bool = False):
        """A runner registered with the window; ``ask_on_quit``: quitting while it runs asks first."""
        return self.window_.create_runner(f"{self.title.lower()}-{name}", ask_on_quit=ask_on_quit)

    def confirm_alongside(self, kind: str, what: str) -> bool:
        """True to start a job of ``kind`` ("train", "finetune"): none runs in another process, or the user agrees.

        Another window or the CLI may be running the same kind of job on this workspace; both
        would save a version, so the user is asked first.
        """
        warning = others_warning(self.ctx.db, kind) if self.ctx.db is not None else None
        if warning is None:
            return True
        answer = QMessageBox.question(self, f"Start {what}?", f"{warning[0].upper()}{warning[1:]}.\n\n"
                                      f"Start {what} as well?",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def show_error(self, text: str) -> None:
        self.window_.show_message(text, level="error")

    def show_info(self, text: str) -> None:
        self.window_.show_message(text, level="info")

    # lazy loading ------------------------------------------------------------
    def load_on_show(self) -> bool:
        """Whether :meth:`on_shown` should load the screen's data now (then marks it loaded).

        True once after start-up or :meth:`reload_when_shown`, when a workspace is open.

        Returns
        -------
        bool
        """
        if self._loaded or self.ctx.path is None:
            return False
        self._loaded = True
        return True

    def reload_when_shown(self) -> None:
        """Forget the loaded data: load again now if the screen is visible, else when it is shown."""
        self._loaded = False
        if self.isVisible():
            self.on_shown()

    # hooks -----------------------------------------------------------------
    def on_workspace_changed(self) -> None:
        """A workspace was opened (also called once at start-up)."""

    def on_data_changed(self) -> None:
        """Items/events changed."""

    def on_models_changed(self) -> None:
        """Model registry changed."""

    def on_rules_changed(self) -> None:
        """Another window or program changed the merchandising rules."""

    def on_suites_changed(self) -> None:
        """Another window or program changed the judged suites (or kept a run)."""

    def on_shown(self) -> None:
        """The screen became the visible page."""

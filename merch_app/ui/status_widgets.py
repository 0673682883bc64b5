"""Parts of the main window: message banner, running-job strip, page stack."""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QStackedWidget, QToolButton, QWidget

from merch_app.jobs import Progress
from merch_app.ui.widgets import set_elided
from merch_app.ui.job_executor import JobHandle


class MessageBanner(QFrame):
    """Message strip floating over the bottom of the screen area (errors, warnings, info).

    It covers the screen instead of taking a row of the layout: showing or
    hiding a row resized every screen below it, and the Data screen's charts
    then repainted at once (60-70 ms of GUI stall after an import and again
    when the message faded, measured in bench_responsiveness).
    """

    MARGIN = 12
    MAX_WIDTH = 1100

    COLOURS = {"error": ("#fdecea", "#8a1c12"), "warning": ("#fff4e0", "#7a4b00"), "info": ("#e8f1fb", "#0d3c6e")}

    def __init__(self) -> None:
        super().__init__()
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        lay.addWidget(self.label, 1)
        lay.addWidget(close)
        self.level = "info"
        self.auto_hide = QTimer(self)  # info messages fade after a while; owned, so deleted with us
        self.auto_hide.setSingleShot(True)
        self.auto_hide.setInterval(8000)
        self.auto_hide.timeout.connect(self.hide)
        self.hide()

    def float_over(self, anchor: QWidget) -> None:
        """Float over the bottom of ``anchor`` (a sibling); the window calls :meth:`follow` when it resizes.

        (Not an event filter on ``anchor``: a Python callback for each of its
        events has to take the GIL from busy workers every time.)
        """
        self._anchor = anchor
        self.setParent(anchor.parentWidget())
        self.hide()

    def follow(self) -> None:
        """Move with the anchor (after a resize of the window)."""
        if self.isVisible():
            self._place()

    def _place(self) -> None:
        anchor = getattr(self, "_anchor", None)
        if anchor is None:
            return
        w = max(200, min(anchor.width() - 2 * self.MARGIN, self.MAX_WIDTH))
        h = self.layout().totalHeightForWidth(w)
        g = anchor.geometry()
        self.setGeometry(g.right() - self.MARGIN - w + 1, g.bottom() - self.MARGIN - h + 1, w, h)
        self.raise_()

    def show_message(self, text: str, level: str = "info") -> None:
        bg, fg = self.COLOURS.get(level, self.COLOURS["info"])
        self.level = level
        self.setStyleSheet(f"MessageBanner {{ background: {bg}; border: 1px solid {fg}; border-radius: 4px; }}"
                           f" QLabel {{ color: {fg}; }}")
        self.label.setText(text)
        self._place()
        self.show()
        if level == "info":
            self.auto_hide.start()
        else:
            self.auto_hide.stop()


class JobStatus(QWidget):
    """Status-bar strip: label of the running job, its progress bar and a cancel button."""

    LABEL_WIDTH = 460  # fixed: long progress messages are elided, never widen the window

    def __init__(self) -> None:
        super().__init__()
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.label.setFixedWidth(self.LABEL_WIDTH)
        self.label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.bar = QProgressBar()
        self.bar.setFixedWidth(180)
        self.bar.setTextVisible(True)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.clicked.connect(self._cancel)
        lay.addWidget(self.label)
        lay.addWidget(self.bar)
        lay.addWidget(self.cancel_button)
        self.handle: Optional[JobHandle] = None
        self.hide()

    def _cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            set_elided(self.label, f"{self.handle.label}: cancelling…", self.LABEL_WIDTH)

    def started(self, handle: JobHandle) -> None:
        if not handle.label:
            return
        self.handle = handle
        set_elided(self.label, handle.label, self.LABEL_WIDTH)
        self.bar.setRange(0, 0)
        self.show()

    def progress(self, handle: JobHandle, p: Progress) -> None:
        if handle is not self.handle:
            return
        frac = p.fraction
        if frac is None:
            self.bar.setRange(0, 0)
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(frac * 1000))
        eta = f" — {format_eta(p.eta_seconds)} left" if p.eta_seconds is not None else ""
        set_elided(self.label, f"{handle.label}: {p.message}{eta}" if p.message else handle.label, self.LABEL_WIDTH)

    def finished(self, handle: JobHandle) -> None:
        if handle is self.handle:
            self.handle = None
            self.hide()


class PageStack(QStackedWidget):
    """Stacked pages whose size hints are the current page's (a wide hidden page does not widen the window)."""

    def sizeHint(self):  # noqa: N802 - Qt name
        page = self.currentWidget()
        return page.sizeHint() if page is not None else super().sizeHint()

    def minimumSizeHint(self):  # noqa: N802 - Qt name
        page = self.currentWidget()
        return page.minimumSizeHint() if page is not None else super().minimumSizeHint()


def format_eta(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"

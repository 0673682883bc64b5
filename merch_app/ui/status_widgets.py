"""Parts of the main window: message banner, running-jobs strip and list, page stack."""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFrame, QHBoxLayout, QLabel, QProgressBar, QStackedWidget, QToolButton, QVBoxLayout, QWidget,
)

from merch_app.jobs import Progress
from merch_app.ui.widgets import set_elided
from merch_app.ui.job_executor import JobHandle


class FloatingPanel(QFrame):
    """A panel floating over a sibling widget (the screen area) instead of taking a layout row.

    Subclasses say where in :meth:`_place`; the window calls :meth:`follow` when it resizes.
    """

    MARGIN = 12

    def float_over(self, anchor: QWidget) -> None:
        """Float over ``anchor`` (a sibling).

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
        raise NotImplementedError


class MessageBanner(FloatingPanel):
    """Message strip floating over the bottom of the screen area (errors, warnings, info).

    It covers the screen instead of taking a row of the layout: showing or
    hiding a row resized every screen below it, and the Data screen's charts
    then repainted at once (60-70 ms of GUI stall after an import and again
    when the message faded, measured in bench_responsiveness).
    """

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
        self.below: Optional[QWidget] = None  # a floating widget it stays above (the jobs list)
        self.auto_hide = QTimer(self)  # info messages fade after a while; owned, so deleted with us
        self.auto_hide.setSingleShot(True)
        self.auto_hide.setInterval(8000)
        self.auto_hide.timeout.connect(self.hide)
        self.hide()

    def _place(self) -> None:
        anchor = getattr(self, "_anchor", None)
        if anchor is None:
            return
        w = max(200, min(anchor.width() - 2 * self.MARGIN, self.MAX_WIDTH))
        h = self.layout().totalHeightForWidth(w)
        g = anchor.geometry()
        below = self.below
        lift = below.height() + self.MARGIN // 2 if below is not None and below.isVisible() else 0
        self.setGeometry(g.right() - self.MARGIN - w + 1, g.bottom() - self.MARGIN - h + 1 - lift, w, h)
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


def job_text(handle: JobHandle, p: Optional[Progress] = None) -> str:
    """``Label: message — ETA left`` of a job's latest progress report (the label alone before any)."""
    if p is None or not p.message:
        return handle.label
    eta = f" — {format_eta(p.overall_eta)} left" if p.overall_eta is not None else ""  # whole job
    return f"{handle.label}: {p.message}{eta}"


def _show_fraction(bar: QProgressBar, p: Optional[Progress]) -> None:
    frac = p.overall if p is not None else None  # a job with phases: the whole job's fraction
    if frac is None:
        bar.setRange(0, 0)  # busy indicator
    else:
        bar.setRange(0, 1000)
        bar.setValue(int(frac * 1000))


class JobRow(QWidget):
    """One running job in the jobs list: its label and progress, a progress bar and a Cancel button."""

    LABEL_WIDTH = 330

    def __init__(self, handle: JobHandle) -> None:
        super().__init__()
        self.handle = handle
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.label.setFixedWidth(self.LABEL_WIDTH)
        self.bar = QProgressBar()
        self.bar.setFixedWidth(120)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        lay.addWidget(self.label)
        lay.addWidget(self.bar)
        lay.addWidget(self.cancel_button)
        self.show_progress(handle.last_progress)

    def show_progress(self, p: Optional[Progress]) -> None:
        _show_fraction(self.bar, p)
        text = job_text(self.handle, p)
        set_elided(self.label, f"{self.handle.label}: cancelling…" if self.handle.token.cancelled else text,
                   self.LABEL_WIDTH)

    def cancel(self) -> None:
        self.handle.cancel()
        self.cancel_button.setEnabled(False)
        self.show_progress(self.handle.last_progress)


class JobsPanel(FloatingPanel):
    """The jobs list: every running job with its progress and a Cancel button, floating over the
    bottom-right corner of the screen area (opened from the status bar; it hides when no job runs).

    It floats for the reason :class:`MessageBanner` does: a row of the layout that appears and goes
    with each job would resize every screen.
    """

    placed = Signal()  # shown, hidden or resized: the banner moves above it

    def __init__(self) -> None:
        super().__init__()
        self.setStyleSheet("JobsPanel { background: palette(window); border: 1px solid #9aa4b1; border-radius: 4px; }")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        title = QLabel("Running jobs")
        title.setStyleSheet("font-weight: bold;")
        lay.addWidget(title)
        self.rows: dict[int, JobRow] = {}
        self.hide()

    def _place(self) -> None:
        anchor = getattr(self, "_anchor", None)
        if anchor is None:
            return
        self.layout().activate()
        size = self.sizeHint()
        g = anchor.geometry()
        w = min(size.width(), max(200, anchor.width() - 2 * self.MARGIN))
        self.setGeometry(g.right() - self.MARGIN - w + 1, g.bottom() - self.MARGIN - size.height() + 1, w, size.height())
        self.raise_()
        self.placed.emit()

    def add(self, handle: JobHandle) -> None:
        row = JobRow(handle)
        self.rows[handle.seq] = row
        self.layout().addWidget(row)
        if self.isVisible():
            self._place()

    def update_job(self, handle: JobHandle, p: Progress) -> None:
        row = self.rows.get(handle.seq)
        if row is not None:
            row.show_progress(p)

    def remove(self, handle: JobHandle) -> None:
        row = self.rows.pop(handle.seq, None)
        if row is None:
            return
        self.layout().removeWidget(row)
        row.deleteLater()
        if not self.rows:
            self.set_open(False)
        elif self.isVisible():
            self._place()

    def set_open(self, on: bool) -> None:
        """Show (with at least one job) or hide the list."""
        if on and self.rows:
            self.show()
            self._place()
        else:
            self.hide()
            self.placed.emit()


class JobStatus(QWidget):
    """Status-bar strip of the running jobs: the oldest one's label, progress bar and Cancel button, and
    "+N more" opening the jobs list (:class:`JobsPanel`) when several run at once.

    Fed by the runners' ``job_started`` / ``job_progress`` / ``job_finished`` signals (only jobs with
    a label are shown).  The oldest job stays in the strip while later ones come and go, so a
    training is not replaced by a short job of another screen.
    """

    LABEL_WIDTH = 300  # fixed: long progress messages are elided, never widen the window

    def __init__(self) -> None:
        super().__init__()
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.label.setFixedWidth(self.LABEL_WIDTH)
        self.label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.bar = QProgressBar()
        self.bar.setFixedWidth(140)
        self.bar.setTextVisible(True)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.clicked.connect(self._cancel)
        self.more_button = QToolButton()
        self.more_button.setCheckable(True)
        self.more_button.setToolTip("Show every running job")
        self.more_button.toggled.connect(lambda on: self.panel.set_open(on))
        lay.addWidget(self.label)
        lay.addWidget(self.bar)
        lay.addWidget(self.cancel_button)
        lay.addWidget(self.more_button)
        self.panel = JobsPanel()
        self.handles: dict[int, JobHandle] = {}  # running jobs with a label, oldest first
        self.hide()

    @property
    def handle(self) -> Optional[JobHandle]:
        """The job the strip shows: the oldest running one."""
        return next(iter(self.handles.values()), None)

    def jobs(self) -> list[JobHandle]:
        """The running jobs listed, oldest first."""
        return list(self.handles.values())

    def _cancel(self) -> None:
        handle = self.handle
        if handle is not None:
            row = self.panel.rows.get(handle.seq)
            if row is not None:
                row.cancel()
            else:  # pragma: no cover - every listed job has a row
                handle.cancel()
            self._draw()

    def _draw(self) -> None:
        handle = self.handle
        if handle is None:
            self.more_button.setChecked(False)
            self.hide()
            return
        p = handle.last_progress
        _show_fraction(self.bar, p)
        set_elided(self.label, f"{handle.label}: cancelling…" if handle.token.cancelled else job_text(handle, p),
                   self.LABEL_WIDTH)
        self.cancel_button.setEnabled(not handle.token.cancelled)
        more = len(self.handles) - 1
        self.more_button.setVisible(more > 0)
        self.more_button.setText(f"+{more} more ▴" if more else "")
        if more == 0:
            self.more_button.setChecked(False)
        self.show()

    def started(self, handle: JobHandle) -> None:
        if not handle.label:
            return
        self.handles[handle.seq] = handle
        self.panel.add(handle)
        self._draw()

    def progress(self, handle: JobHandle, p: Progress) -> None:
        if handle.seq not in self.handles:
            return
        self.panel.update_job(handle, p)
        if handle is self.handle:
            _show_fraction(self.bar, p)
            set_elided(self.label, f"{handle.label}: cancelling…" if handle.token.cancelled else job_text(handle, p),
                       self.LABEL_WIDTH)

    def finished(self, handle: JobHandle) -> None:
        if self.handles.pop(handle.seq, None) is None:
            return
        self.panel.remove(handle)
        self._draw()


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

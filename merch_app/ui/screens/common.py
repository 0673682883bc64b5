"""Widgets and helpers shared by several screens (read-only tables, stat cards, layouts, dates)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QProgressBar, QPushButton, QTableWidget,
    QTableWidgetItem, QVBoxLayout, QWidget,
)

from merch_app.ui.widgets import shrinkable


def iso_to_epoch(ts: str) -> float:
    """'YYYY-MM-DD' or 'YYYY-MM-DDTHH:MM:SSZ' → seconds since 1970 (UTC)."""
    ts = ts.rstrip("Z")
    fmt = "%Y-%m-%dT%H:%M:%S" if "T" in ts else "%Y-%m-%d"
    return datetime.strptime(ts, fmt).replace(tzinfo=timezone.utc).timestamp()


def fill_table(table: QTableWidget, headers: list[str], rows: list[list[Any]]) -> None:
    """Replace a read-only table's content."""
    table.setSortingEnabled(False)
    table.clear()
    table.setColumnCount(len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            item = QTableWidgetItem()
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                item.setData(Qt.ItemDataRole.DisplayRole, value)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            else:
                item.setText("" if value is None else str(value))
            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
            table.setItem(r, c, item)
    table.setSortingEnabled(True)


def make_table() -> QTableWidget:
    """An empty read-only looking table: rows selected whole, no row numbers, last column stretched.

    Returns
    -------
    QTableWidget
    """
    t = QTableWidget(0, 0)
    t.verticalHeader().setVisible(False)
    t.setAlternatingRowColors(True)
    t.horizontalHeader().setStretchLastSection(True)
    t.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
    return t


def progress_row(eta_stretch: int = 2) -> tuple[QHBoxLayout, QProgressBar, QLabel]:
    """A job's progress bar (0-1000) with its ETA/status label beside it."""
    row = QHBoxLayout()
    bar = QProgressBar()
    bar.setRange(0, 1000)
    bar.setValue(0)
    label = shrinkable(QLabel("idle"))
    row.addWidget(bar, 3)
    row.addWidget(label, eta_stretch)
    return row, bar, label


def log_view(placeholder: str) -> QPlainTextEdit:
    """A read-only job log that keeps its last 2,000 lines."""
    log = QPlainTextEdit()
    log.setReadOnly(True)
    log.setMaximumBlockCount(2000)
    log.setPlaceholderText(placeholder)
    return log


def bare_column() -> tuple[QWidget, QVBoxLayout]:
    """A plain widget with a margin-free vertical layout (a page, a tab, one side of a splitter).

    Returns
    -------
    tuple of (QWidget, QVBoxLayout)
        The widget and its layout, to add children to.
    """
    widget = QWidget()
    lay = QVBoxLayout(widget)
    lay.setContentsMargins(0, 0, 0, 0)
    return widget, lay


def header_label(text: str) -> QLabel:
    """The rich-text, word-wrapped, larger title line at the top of a page or panel.

    Parameters
    ----------
    text
        The first text shown (rich text allowed).

    Returns
    -------
    QLabel
    """
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setWordWrap(True)
    label.setStyleSheet("font-size: 11pt;")
    return label


def entry_row(placeholder: str, button_text: str,
              on_submit: Callable[[], None]) -> tuple[QHBoxLayout, QLineEdit, QPushButton]:
    """A line edit and a button beside it; Return in the box and a click both call ``on_submit``.

    Parameters
    ----------
    placeholder
        Grey hint in the empty box.
    button_text
        Label of the button.
    on_submit
        Called without arguments (read the box's text there).

    Returns
    -------
    tuple of (QHBoxLayout, QLineEdit, QPushButton)
        The row to add to a layout, the box and the button.
    """
    row = QHBoxLayout()
    box = QLineEdit()
    box.setPlaceholderText(placeholder)
    box.returnPressed.connect(on_submit)
    button = QPushButton(button_text)
    button.clicked.connect(on_submit)
    row.addWidget(box, 1)
    row.addWidget(button)
    return row, box, button


class StatCard(QFrame):
    """A big number with a caption."""

    def __init__(self, caption: str) -> None:
        super().__init__()
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("StatCard { background: #f6f8fa; border-radius: 6px; }")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 6, 10, 6)
        self.value = QLabel("—")
        self.value.setStyleSheet("font-size: 16pt; font-weight: bold; color: #1f3b57;")
        cap = QLabel(caption)
        cap.setStyleSheet("color: #555;")
        lay.addWidget(self.value)
        lay.addWidget(cap)

    def set(self, text: str) -> None:
        self.value.setText(text)

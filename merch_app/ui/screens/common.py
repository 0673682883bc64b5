"""Widgets and helpers shared by several screens (read-only tables, stat cards, dates)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout


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
    t = QTableWidget(0, 0)
    t.verticalHeader().setVisible(False)
    t.setAlternatingRowColors(True)
    t.horizontalHeader().setStretchLastSection(True)
    t.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
    return t


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

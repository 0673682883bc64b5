"""Qt widget helpers shared by the Users and Catalogue screens.

Their worker-side jobs live in :mod:`merch_app.services.insight_jobs`.
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtWidgets import QGroupBox, QLabel, QTableWidget, QVBoxLayout, QWidget

def boxed(title: str, widget: QWidget) -> QGroupBox:
    """``widget`` inside a titled group box."""
    box = QGroupBox(title)
    lay = QVBoxLayout(box)
    lay.setContentsMargins(4, 4, 4, 4)
    lay.addWidget(widget)
    return box


def note_label(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("color: #555;")
    return label


def selected_text(table: QTableWidget, column: int) -> Optional[str]:
    """Text of ``column`` in the current row of ``table`` (None when nothing is selected)."""
    row = table.currentRow()
    item = table.item(row, column) if row >= 0 else None
    return item.text() if item is not None else None


def fmt_ts(ts: Optional[str]) -> str:
    return (ts or "").replace("T", " ").rstrip("Z")

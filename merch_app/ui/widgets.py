"""Small widget helpers shared by the screens."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSizePolicy


def shrinkable(label: QLabel) -> QLabel:
    """Let a one-line label be narrower than its text, so long messages never widen the window."""
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.setMinimumWidth(0)
    return label


def set_elided(label: QLabel, text: str, width: int) -> None:
    """Show ``text`` in ``label`` cut to ``width`` pixels with "…" (full text in the tooltip)."""
    metrics = label.fontMetrics()
    label.setText(metrics.elidedText(text, Qt.TextElideMode.ElideRight, width))
    label.setToolTip(text if metrics.horizontalAdvance(text) > width else "")

"""Worker-side helpers shared by the Users and Catalogue screens.

The functions named ``*_job`` run inside a :class:`~merch_app.ui.workers.JobRunner`
thread: they take the job context (its own SQLite connection, cancel token,
per-runner state) and return plain data for the GUI thread.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from PySide6.QtWidgets import QGroupBox, QLabel, QTableWidget, QVBoxLayout, QWidget

from merch_app.insights.groups import item_groups
from merch_app.services.query_engine import get_engine

GROUPS_KEY = "insight_item_groups"


def engine(ctx, path: Path, generation: int, encoder_spec: Optional[str]):
    """The Query screen's worker engine (ranker + bundle), cached in this runner's state."""
    return get_engine(ctx, path, generation, encoder_spec)


def item_groups_job(ctx, path: Path, generation: int, encoder_spec: Optional[str]):
    """Item groups (categories or named text clusters) of the engine's bundle, cached per engine."""
    eng = engine(ctx, path, generation, encoder_spec)
    hit = ctx.state.get(GROUPS_KEY)
    if hit is not None and hit[0] == eng.key:
        return hit[1]
    b = eng.ranker.bundle
    groups = item_groups(ctx.db(path), [str(i) for i in b.item_ids], b.item_vectors, cancel=ctx.cancel)
    ctx.state[GROUPS_KEY] = (eng.key, groups)
    return groups


def model_of(eng) -> Any:
    """The CF model of an engine's bundle, or None (text-only)."""
    return getattr(eng.ranker.bundle, "model", None)


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

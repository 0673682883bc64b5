"""Table model of a ranked list and the delegate drawing each score as stacked component bars."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from merch_app.ranking.types import COMPONENT_NAMES
from merch_app.ui.charts import COMPONENT_COLOURS, component_colour

COMPONENT_ORDER = ("lexical", "text", "cf", "popularity", "rules")
COLUMNS = ("rank", "change", "id", "title", "category", "price", "score", "components")
BAR_COLUMN = COLUMNS.index("components")
COMPONENTS_ROLE = Qt.ItemDataRole.UserRole + 1


def rank_change(item_id: str, rank: int, previous: Optional[dict[str, int]]) -> str:
    """'▲3', '▼2', '=' or 'new' against the previous list (empty when there is none)."""
    if previous is None:
        return ""
    before = previous.get(item_id)
    if before is None:
        return "new"
    if before == rank:
        return "="
    return f"▲{before - rank}" if before > rank else f"▼{rank - before}"


def _same_question(a, b) -> bool:
    """Two requests ask the same thing when mode, query text and related item agree (weights may differ)."""
    key = lambda r: (r.mode, " ".join((r.query or "").split()).casefold(), getattr(r, "item_id", None))  # noqa: E731
    return a is not None and b is not None and key(a) == key(b)


class ResultsModel(QAbstractTableModel):
    """Rows of a :class:`~merch_app.ranking.types.RankedList` with rank changes."""

    def __init__(self) -> None:
        super().__init__()
        self.ranked = None
        self.changes: list[str] = []
        self.scale = (0.0, 1.0)  # (largest negative sum, largest positive sum) over the rows
        self.pinned: Optional[tuple[str, dict[str, int]]] = None  # (label, item -> rank) of the baseline
        self.compared_with = ""  # what the Δ column compares with, for its tooltip

    def pin(self, label: str) -> None:
        """Make the list shown now the baseline every later list's Δ compares with."""
        if self.ranked is not None:
            self.pinned = (label, {iid: i + 1 for i, iid in enumerate(self.ranked.item_ids)})
            self._recompute(None)
            self._changes_shown()

    def unpin(self) -> None:
        self.pinned = None
        self._recompute(None)
        self._changes_shown()

    def _changes_shown(self) -> None:
        if self.rowCount():
            col = COLUMNS.index("change")
            self.dataChanged.emit(self.index(0, col), self.index(self.rowCount() - 1, col))
        self.headerDataChanged.emit(Qt.Orientation.Horizontal, 0, len(COLUMNS) - 1)

    def _recompute(self, previous_list) -> None:
        ranked = self.ranked
        if ranked is None:
            return
        if self.pinned is not None:
            self.compared_with = f"the pinned baseline “{self.pinned[0]}”"
            previous = self.pinned[1]
        elif previous_list is not None and _same_question(previous_list.request, ranked.request):
            self.compared_with = "the same query before the last change of settings"
            previous = {iid: i + 1 for i, iid in enumerate(previous_list.item_ids)}
        else:
            self.compared_with, previous = "", None
        self.changes = [rank_change(iid, i + 1, previous) for i, iid in enumerate(ranked.item_ids)]

    def set_ranked(self, ranked, compare: bool = True) -> None:
        """Show ``ranked``; Δ compares with the pinned baseline, else with the list shown before when it
        answered the same query (only weights, user or filters changed), else stays empty."""
        before = self.ranked if compare else None
        self.beginResetModel()
        self.ranked = ranked
        self._recompute(before)
        pos = np.zeros(len(ranked.item_ids))
        neg = np.zeros(len(ranked.item_ids))
        for name in COMPONENT_ORDER:
            v = np.asarray(ranked.components.get(name, np.zeros(len(pos))), float)
            pos += np.clip(v, 0, None)
            neg += np.clip(-v, 0, None)
        self.scale = (float(neg.max()) if len(neg) else 0.0, float(pos.max()) if len(pos) else 1.0)
        self.endResetModel()

    def clear(self) -> None:
        self.beginResetModel()
        self.ranked = None
        self.changes = []
        self.endResetModel()

    def item_id(self, row: int) -> Optional[str]:
        if self.ranked is None or not 0 <= row < len(self.ranked.item_ids):
            return None
        return self.ranked.item_ids[row]

    def row_of(self, item_id: str) -> Optional[int]:
        if self.ranked is None:
            return None
        try:
            return self.ranked.item_ids.index(item_id)
        except ValueError:
            return None

    # Qt model API ------------------------------------------------------------
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() or self.ranked is None else len(self.ranked.item_ids)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return {"change": "Δ", "components": "score split"}.get(COLUMNS[section], COLUMNS[section])
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            if COLUMNS[section] == "change":
                return (f"Rank change against {self.compared_with}" if self.compared_with else
                        "Rank change: pin a baseline (or change a weight, the user or a filter) to compare")
            if COLUMNS[section] == "components":
                return "  ".join(f"■ {COMPONENT_NAMES[n]}" for n in COMPONENT_ORDER)
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or self.ranked is None:
            return None
        r, col = index.row(), COLUMNS[index.column()]
        rl = self.ranked
        if role == Qt.ItemDataRole.DisplayRole:
            if col == "rank":
                return r + 1
            if col == "change":
                return self.changes[r]
            if col == "id":
                return rl.item_ids[r]
            if col == "title":
                return rl.titles[r]
            if col == "category":
                return rl.categories[r] or ""
            if col == "price":
                p = rl.prices[r]
                return "" if p is None or not np.isfinite(p) else f"{p:,.2f}"
            if col == "score":
                return f"{float(rl.scores[r]):.4f}"
            return None
        if role == COMPONENTS_ROLE:
            return {n: float(rl.components[n][r]) for n in COMPONENT_ORDER if n in rl.components}
        if role == Qt.ItemDataRole.ToolTipRole:
            if col in ("components", "score"):
                parts = {n: float(rl.components[n][r]) for n in COMPONENT_ORDER if n in rl.components}
                return "<br>".join(
                    f"<span style='color:{COMPONENT_COLOURS[n]}'>■</span> {COMPONENT_NAMES[n]}: {v:+.4f}" for n, v in parts.items()
                ) + f"<br><b>total {float(rl.scores[r]):.4f}</b>"
            if col == "title":
                return rl.titles[r]
        if role == Qt.ItemDataRole.ForegroundRole and col == "change":
            text = self.changes[r]
            if text.startswith("▲") or text == "new":
                return QColor("#1a7f37")
            if text.startswith("▼"):
                return QColor("#b42318")
        if role == Qt.ItemDataRole.TextAlignmentRole and col in ("rank", "price", "score", "change"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class ComponentBarDelegate(QStyledItemDelegate):
    """Paints a row's weighted components as stacked coloured segments.

    Positive parts stack right of a zero line, negative ones (e.g. a negative
    cosine) left of it; all rows share one scale so bar lengths compare.
    """

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, option.palette.highlight())
        parts: dict[str, float] = index.data(COMPONENTS_ROLE) or {}
        model = index.model()
        neg_max, pos_max = getattr(model, "scale", (0.0, 1.0))
        rect = QRectF(option.rect).adjusted(4, 5, -4, -5)
        span = (neg_max + pos_max) or 1.0
        unit = rect.width() / span
        zero = rect.left() + neg_max * unit
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        right, left = zero, zero
        for name, value in parts.items():
            if value == 0:
                continue
            w = abs(value) * unit
            if value > 0:
                seg = QRectF(right, rect.top(), w, rect.height())
                right += w
            else:
                left -= w
                seg = QRectF(left, rect.top(), w, rect.height())
            painter.fillRect(seg, component_colour(name))
        if neg_max > 0:
            painter.setPen(QPen(QColor("#333"), 1))
            painter.drawLine(int(zero), int(rect.top()) - 2, int(zero), int(rect.bottom()) + 2)
        painter.restore()

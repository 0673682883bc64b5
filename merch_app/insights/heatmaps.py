"""Heatmaps as labelled matrices: category × hour-of-week activity.

(The user segment × category affinity heatmap needs model vectors and lives in
:mod:`merch_app.insights.segments`.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from merch_app.insights.common import NO_CATEGORY, WEEKDAYS, placeholders

HOURS_PER_WEEK = 168


@dataclass
class HeatmapData:
    """A matrix with row and column labels; ``values[r, c]``."""

    title: str
    rows: list[str]
    cols: list[str]
    values: np.ndarray
    row_totals: Optional[np.ndarray] = None

    @property
    def empty(self) -> bool:
        return self.values.size == 0 or not np.any(self.values)

    def row_normalised(self) -> np.ndarray:
        """Each row divided by its maximum (patterns comparable across big and small rows)."""
        peak = self.values.max(axis=1, keepdims=True) if self.values.size else self.values
        return np.divide(self.values, peak, out=np.zeros_like(self.values, dtype=float), where=peak > 0)

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "rows": self.rows, "cols": self.cols,
                "values": np.round(self.values, 6).tolist()}


def hour_of_week_labels() -> list[str]:
    """'Mon 00' … 'Sun 23' (column ``d * 24 + h``; Monday first)."""
    return [f"{d} {h:02d}" for d in WEEKDAYS for h in range(24)]


def category_hour_of_week(db, event_types: Optional[Sequence[str]] = None, top: int = 12,
                          user_id: Optional[str] = None,
                          item_group: Optional[Mapping[str, str]] = None) -> HeatmapData:
    """Events per category (rows, busiest first) and hour of the week (168 columns, UTC).

    Parameters
    ----------
    event_types
        Count only these types (default: all).
    top
        Categories kept; the rest are summed into a last row "(other n)".
    user_id
        Restrict to one user's events.
    item_group
        ``{item_id: group}`` used instead of the item's category (e.g. text
        clusters from :func:`merch_app.insights.groups.item_groups`); events
        of items missing from it count as "(no category)".
    """
    where, args = ["e.ts IS NOT NULL"], []
    if event_types:
        where.append(f"e.event_type IN ({placeholders(len(event_types))})")
        args += list(event_types)
    if user_id is not None:
        where.append("e.user_id = ?")
        args.append(str(user_id))
    how = ("((CAST(strftime('%w', substr(e.ts, 1, 10)) AS INTEGER) + 6) % 7) * 24"
           " + CAST(substr(e.ts, 12, 2) AS INTEGER)")
    if item_group is None:
        sql = f"""SELECT coalesce(nullif(i.category, ''), ?) AS c, {how} AS how, count(*)
                  FROM events e LEFT JOIN items i ON i.item_id = e.item_id
                  WHERE {' AND '.join(where)} GROUP BY c, how"""
        rows = db.execute(sql, [NO_CATEGORY] + args).fetchall()
    else:
        sql = f"SELECT e.item_id, {how} AS how, count(*) FROM events e WHERE {' AND '.join(where)} GROUP BY 1, 2"
        rows = [(item_group.get(i, NO_CATEGORY) if i is not None else NO_CATEGORY, h, n)
                for i, h, n in db.execute(sql, args)]
    per_cat: dict[str, np.ndarray] = {}
    for cat, hour, n in rows:
        if hour is None or not 0 <= hour < HOURS_PER_WEEK:
            continue
        per_cat.setdefault(cat, np.zeros(HOURS_PER_WEEK))[hour] += n
    order = sorted(per_cat, key=lambda c: (-per_cat[c].sum(), c))
    keep, rest = order[:top], order[top:]
    labels = list(keep)
    matrix = [per_cat[c] for c in keep]
    if rest:
        labels.append(f"(other {len(rest)})")
        matrix.append(np.sum([per_cat[c] for c in rest], axis=0))
    values = np.array(matrix) if matrix else np.zeros((0, HOURS_PER_WEEK))
    return HeatmapData("Events by category and hour of week (UTC)", labels, hour_of_week_labels(),
                       values, values.sum(axis=1))

"""What is in a workspace, for the Data screen and ``merch-app demo`` (no Qt)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from merch_app.data.import_tx import open_db

LONG_TAIL_POINTS = 200


@dataclass
class DataSummary:
    items: int
    users: int
    events: int
    anonymous_events: int
    first_ts: Optional[str]
    last_ts: Optional[str]
    events_per_day: tuple[list[str], list[int]]  # ISO dates, counts
    events_by_type: dict[str, int]
    top_items: list[tuple[str, str, int]]  # (item_id, title, events) top 20
    long_tail: tuple[list[float], list[float]]  # item rank fraction, cumulative share of events
    imports: list[dict]  # rows of the imports table, newest first


def long_tail_curve(counts: list[int], n_items: int, points: int = LONG_TAIL_POINTS) -> tuple[list[float], list[float]]:
    """Cumulative share of events held by the top x fraction of items.

    Parameters
    ----------
    counts
        Events per item for items with events (any order).
    n_items
        Number of items in the catalogue (items without events make the flat end).
    points
        Maximum number of points returned (the curve is sampled evenly by rank).
    """
    counts = sorted((c for c in counts if c > 0), reverse=True)
    n = max(n_items, len(counts))
    total = sum(counts)
    if not n or not total:
        return [], []
    step = max(1, n // points)
    xs, ys = [0.0], [0.0]
    cum = 0
    for rank in range(1, n + 1):
        if rank <= len(counts):
            cum += counts[rank - 1]
        if rank % step == 0 or rank == n:
            xs.append(rank / n)
            ys.append(cum / total)
    return xs, ys


def data_summary(db, top_n: int = 20) -> DataSummary:
    """Counts, time series, type mix, top items and long tail of a workspace.

    Popularity (``top_items``, ``long_tail``) counts every event except impressions and
    returns; anonymous events count too.  ``db`` is an open workspace or its path.
    """
    db, close = open_db(db)
    try:
        return _summary(db, top_n)
    finally:
        if close:
            db.close()


def _summary(db, top_n: int) -> DataSummary:
    items = db.execute("SELECT count(*) FROM items").fetchone()[0]
    events, users, anonymous, first, last = db.execute(
        "SELECT count(*), count(DISTINCT user_id), sum(user_id IS NULL), min(ts), max(ts) FROM events"
    ).fetchone()
    per_day = db.execute(
        "SELECT substr(ts, 1, 10) AS day, count(*) FROM events WHERE ts IS NOT NULL GROUP BY day ORDER BY day"
    ).fetchall()
    by_type = dict(
        db.execute("SELECT event_type, count(*) FROM events GROUP BY event_type ORDER BY count(*) DESC").fetchall()
    )
    item_counts = db.execute(
        "SELECT item_id, count(*) AS n FROM events WHERE item_id IS NOT NULL AND event_type NOT IN ('return', 'impression') "
        "GROUP BY item_id ORDER BY n DESC, item_id"
    ).fetchall()
    titles = {}
    top = item_counts[:top_n]
    if top:
        marks = ",".join("?" * len(top))
        titles = dict(db.execute(
            f"SELECT item_id, title FROM items WHERE item_id IN ({marks})", [i for i, _ in top]
        ).fetchall())
    top_items = [(i, titles.get(i) or "", n) for i, n in top]
    cols = ["id", "file_name", "kind", "status", "started", "finished", "rows_read", "rows_accepted",
            "rows_rejected", "message", "sha256"]
    imports = [dict(zip(cols, r)) for r in db.execute(
        f"SELECT {', '.join(cols)} FROM imports ORDER BY id DESC").fetchall()]
    return DataSummary(
        items=items,
        users=users,
        events=events,
        anonymous_events=int(anonymous or 0),
        first_ts=first,
        last_ts=last,
        events_per_day=([d for d, _ in per_day], [n for _, n in per_day]),
        events_by_type=by_type,
        top_items=top_items,
        long_tail=long_tail_curve([n for _, n in item_counts], items),
        imports=imports,
    )

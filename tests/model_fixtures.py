"""Small planted shops for the model, training and registry tests."""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

GROUPS = {"a": "red candle wax", "b": "blue ceramic mug", "c": "green wool scarf"}


def planted_rows(n_users: int = 60, items_per_group: int = 15, buys: int = 12, days: int = 120, seed: int = 0):
    """(items, events): users of group g buy mostly items of group g, some twice, over ``days``."""
    rng = np.random.default_rng(seed)
    items = []
    for g, words in GROUPS.items():
        for j in range(items_per_group):
            items.append({"item_id": f"{g}{j:02d}", "title": f"{words} model {j}", "category": words.split()[-1]})
    start = datetime(2024, 1, 1)
    events = []
    groups = list(GROUPS)
    for n in range(n_users):
        g = groups[n % len(groups)]
        user = f"u{n:03d}"
        favourites = rng.choice(items_per_group, buys, replace=False)
        for k in range(buys):
            j = favourites[k] if rng.random() < 0.9 else rng.integers(items_per_group)
            gg = g if rng.random() < 0.92 else groups[rng.integers(len(groups))]
            t = start + timedelta(days=float(rng.uniform(0, days)))
            for _ in range(1 + (rng.random() < 0.3)):
                events.append({"user_id": user, "item_id": f"{gg}{j:02d}", "event_type": "purchase",
                               "ts": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "session_id": f"s{n}-{k}"})
                t += timedelta(days=float(rng.uniform(1, 20)))
    return items, events


def fill_workspace(db, items, events) -> None:
    """Insert rows directly (no importer needed) and index items for search."""
    from merch_app.data.workspace import rebuild_fts

    with db.conn:
        db.insert_rows("items", items)
        db.insert_rows("events", events)
        rebuild_fts(db)


def planted_workspace(db, **kw) -> None:
    fill_workspace(db, *planted_rows(**kw))

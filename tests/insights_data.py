"""Hand-made catalogue and events for the insight tests (known answers in the tests)."""
from __future__ import annotations

from merch_app.data.workspace import rebuild_fts

ITEMS = [
    # item_id, title, description, tags, category
    ("A", "Red ceramic mug", "Tea mug", "red, mug", "Kitchen"),
    ("B", "Blue ceramic mug", "", '["blue", "mug"]', "Kitchen"),
    ("C", "Garden lantern", "", "lantern|garden", "Garden"),
    ("D", "Lamp", "", "", "Lighting"),
    ("E", "", None, None, None),
    ("F", "Red ceramic mug", "Tea  mug", "", "Kitchen"),
    ("G", "Velvet cushion cover", "Soft", "", "Home"),
]

EVENTS = [
    # user, item, type, ts, query, session
    ("u1", None, "search", "2024-01-01T10:00:00Z", "red mug", "s1"),
    ("u1", "A", "view", "2024-01-01T10:01:00Z", None, "s1"),
    ("u1", "A", "click", "2024-01-01T10:02:00Z", None, "s1"),
    ("u1", "A", "cart", "2024-01-01T10:03:00Z", None, "s1"),
    ("u1", "A", "purchase", "2024-01-01T10:05:00Z", None, "s1"),
    ("u1", "C", "view", "2024-01-03T12:00:00Z", None, "s2"),
    ("u1", "A", "return", "2024-01-10T09:00:00Z", None, "s3"),
    ("u2", None, "search", "2024-01-02T10:00:00Z", "Red  Mug", "s4"),
    ("u2", "A", "view", "2024-01-02T10:01:00Z", None, "s4"),
    ("u2", "B", "view", "2024-01-02T10:02:00Z", None, "s4"),
    ("u3", "B", "purchase", "2024-01-06T15:00:00Z", None, None),
    (None, None, "search", "2024-01-07T20:00:00Z", "red mug", "s5"),
    (None, "A", "view", "2024-01-07T20:01:00Z", None, "s5"),
    (None, "A", "cart", "2024-01-07T20:02:00Z", None, "s5"),
    (None, "C", "view", "2024-01-07T21:00:00Z", None, None),
]


def fill(db) -> None:
    """Insert :data:`ITEMS` and :data:`EVENTS` into an open workspace."""
    with db.conn:
        db.insert_rows("items", 
            [dict(item_id=i, title=t, description=d, tags=g, category=c, price=1.0) for i, t, d, g, c in ITEMS],
        )
        db.insert_rows("events", 
            [dict(user_id=u, item_id=i, event_type=e, ts=ts, query=q, session_id=s, value=1.0)
             for u, i, e, ts, q, s in EVENTS]
        )
        rebuild_fts(db)


class DotModel:
    """A CF model whose score is ``U[u] · V[i]`` (the attributes the insight views read)."""

    def __init__(self, user_ids, item_ids, U, V):
        import numpy as np

        self.user_ids = np.array(user_ids, dtype=object)
        self.item_ids = np.array(item_ids, dtype=object)
        self.U = np.asarray(U, dtype=np.float32)
        self.UW = self.U
        self.V = np.asarray(V, dtype=np.float32)
        self.alpha = 1.0

    def score(self, user_id, item_idx=None, user_text=None):
        import numpy as np

        u = list(map(str, self.user_ids)).index(str(user_id))
        s = self.V @ self.U[u]
        return s if item_idx is None else s[np.asarray(item_idx)]

    def score_matrix(self, rows):
        return self.U[rows] @ self.V.T

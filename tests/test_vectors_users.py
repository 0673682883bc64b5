"""User text vectors: known answers for weights, recency, time cut-off and scale."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from merch_app.model.hashing_encoder import HashingEncoder
from merch_app.model import user_vectors
from merch_app.model.user_vectors import user_text_vectors, user_vector_from_history

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the generators live there
from synth_data import random_events  # noqa: E402

ITEM_IDS = ["i1", "i2", "i3"]
ITEM_VECS = np.eye(3, 4, dtype=np.float32)  # three orthogonal unit vectors in 4-d


def add_events(db, rows):
    cols = ("user_id", "item_id", "event_type", "value", "ts", "query")
    with db.conn:
        db.conn.executemany(
            f"INSERT INTO events ({', '.join(cols)}) VALUES (?, ?, ?, ?, ?, ?)",
            [tuple(r.get(c) for c in cols) for r in rows],
        )


def ev(user, item, etype, ts="2024-01-10T12:00:00Z", value=None, query=None):
    return {"user_id": user, "item_id": item, "event_type": etype, "ts": ts, "value": value, "query": query}


def vectors_by_user(db, **kwargs):
    users, vecs = user_text_vectors(db, ITEM_IDS, ITEM_VECS, HashingEncoder(4), **kwargs)
    return {u: v for u, v in zip(users, vecs)}


def test_weighted_mean_purchase_vs_click(ws):
    add_events(ws, [ev("u", "i1", "purchase"), ev("u", "i2", "click")])
    got = vectors_by_user(ws)
    np.testing.assert_allclose(got["u"], np.array([3, 1, 0, 0]) / np.sqrt(10), atol=1e-6)


def test_repeated_events_add_up(ws):
    add_events(ws, [ev("u", "i1", "view"), ev("u", "i1", "view"), ev("u", "i2", "view")])
    np.testing.assert_allclose(vectors_by_user(ws)["u"], np.array([2, 1, 0, 0]) / np.sqrt(5), atol=1e-6)


def test_recency_half_life(ws):
    add_events(ws, [
        ev("u", "i1", "purchase", ts="2024-01-01T00:00:00Z"),
        ev("u", "i2", "purchase", ts="2024-03-31T00:00:00Z"),  # 90 days later = one half-life
    ])
    np.testing.assert_allclose(vectors_by_user(ws)["u"], np.array([1, 2, 0, 0]) / np.sqrt(5), atol=1e-6)
    no_decay = vectors_by_user(ws, half_life_days=None)["u"]
    np.testing.assert_allclose(no_decay, np.array([1, 1, 0, 0]) / np.sqrt(2), atol=1e-6)


def test_until_ts_excludes_later_events(ws):
    add_events(ws, [
        ev("u", "i1", "purchase", ts="2024-01-01T00:00:00Z"),
        ev("u", "i2", "purchase", ts="2024-02-01T00:00:00Z"),
        ev("late", "i3", "purchase", ts="2024-02-02T00:00:00Z"),
    ])
    got = vectors_by_user(ws, until_ts="2024-02-01T00:00:00Z")
    assert set(got) == {"u"}
    np.testing.assert_allclose(got["u"], [1, 0, 0, 0], atol=1e-6)


def test_returns_anonymous_and_unknown_items_are_ignored(ws):
    add_events(ws, [
        ev("u", "i1", "click"),
        ev("u", "i2", "return"),
        ev(None, "i3", "purchase"),
        ev("u", "unknown", "purchase"),
        ev("only_returns", "i1", "return"),
    ])
    users, vecs = user_text_vectors(ws, ITEM_IDS, ITEM_VECS, HashingEncoder(4))
    assert list(users) == ["u"]
    np.testing.assert_allclose(vecs[0], [1, 0, 0, 0], atol=1e-6)


def test_rating_weight_scales_with_value(ws):
    add_events(ws, [ev("u", "i1", "rating", value=5.0), ev("u", "i2", "rating", value=2.5)])
    # weights 5/5*2 = 2 and 2.5/5*2 = 1
    np.testing.assert_allclose(vectors_by_user(ws)["u"], np.array([2, 1, 0, 0]) / np.sqrt(5), atol=1e-6)


def test_event_weight_overrides(ws):
    add_events(ws, [ev("u", "i1", "purchase"), ev("u", "i2", "view")])
    got = vectors_by_user(ws, event_weights={"purchase": 1.0, "view": 1.0})
    np.testing.assert_allclose(got["u"], np.array([1, 1, 0, 0]) / np.sqrt(2), atol=1e-6)
    with pytest.raises(ValueError, match="wishlist"):
        vectors_by_user(ws, event_weights={"wishlist": 1.0})


def test_search_queries_are_encoded_and_cached(ws):
    enc = HashingEncoder(4)
    qvec = enc.encode(["lamp"])[0]
    add_events(ws, [ev("u", None, "search", query="lamp"), ev("u", "i1", "click")])
    users, vecs = user_text_vectors(ws, ITEM_IDS, ITEM_VECS, enc)
    expected = qvec + np.array([1, 0, 0, 0])  # search 1 + click 1
    np.testing.assert_allclose(vecs[0], expected / np.linalg.norm(expected), atol=1e-6)
    assert ws.execute("SELECT count(*) FROM embeddings WHERE encoder_id='hashing-4'").fetchone()[0] == 1


def test_no_events_gives_empty_result(ws):
    users, vecs = user_text_vectors(ws, ITEM_IDS, ITEM_VECS, HashingEncoder(4))
    assert len(users) == 0 and vecs.shape == (0, 4)


def test_user_vector_from_history():
    v = user_vector_from_history(np.array([0, 1]), np.array([3.0, 1.0]), ITEM_VECS)
    np.testing.assert_allclose(v, np.array([3, 1, 0, 0]) / np.sqrt(10), atol=1e-6)
    q = np.array([[0, 0, 0, 1]], dtype=np.float32)
    v = user_vector_from_history(np.array([0]), np.array([1.0]), ITEM_VECS, query_vectors=q)
    np.testing.assert_allclose(v, np.array([1, 0, 0, 1]) / np.sqrt(2), atol=1e-6)
    v = user_vector_from_history(np.array([0]), np.array([1.0, 3.0]), ITEM_VECS, query_vectors=q)
    np.testing.assert_allclose(v, np.array([1, 0, 0, 3]) / np.sqrt(10), atol=1e-6)
    assert not user_vector_from_history(np.array([], dtype=int), np.array([]), ITEM_VECS).any()
    with pytest.raises(ValueError, match="weights"):
        user_vector_from_history(np.array([0, 1]), np.array([1.0]), ITEM_VECS)


def count_event_reads(db) -> dict:
    """Record how rows of the ``events`` table are fetched through ``db.execute`` from now on.

    Returns
    -------
    dict
        ``blocks``: the row count of every non-empty ``fetchmany``/iteration
        step, ``fetchall``: how many ``fetchall`` calls there were.
    """
    reads = {"blocks": [], "fetchall": 0}
    real_execute = db.execute

    class CountingCursor:
        def __init__(self, cur):
            self._cur = cur

        def fetchmany(self, *size):
            rows = self._cur.fetchmany(*size)
            if rows:
                reads["blocks"].append(len(rows))
            return rows

        def fetchall(self):
            reads["fetchall"] += 1
            return self._cur.fetchall()

        def __iter__(self):
            for row in self._cur:
                reads["blocks"].append(1)
                yield row

        def __getattr__(self, name):
            return getattr(self._cur, name)

    def execute(sql, *args, **kw):
        cur = real_execute(sql, *args, **kw)
        return CountingCursor(cur) if "from events" in sql.lower() else cur

    db.execute = execute
    return reads


@pytest.mark.slow
def test_4k_users_events_streamed_in_blocks(ws):
    """4,000 users over a few blocks of events: same vectors as numpy, read in one streaming pass.

    The size follows the block size (three full blocks and a partial one), so
    the streaming is exercised whatever ``_BLOCK`` is; the speed at 400,000
    events is measured by ``benchmarks/bench_limits.py``.
    """
    n_items, n_users, n_events, dim = 4000, 4000, 3 * user_vectors._BLOCK + 1_000, 384
    ev = random_events(ws, n_users, n_items, n_events, dim)
    item_ids, item_vecs, users, items, types, ts = ev.item_ids, ev.item_vecs, ev.users, ev.items, ev.types, ev.ts
    reads = count_event_reads(ws)
    got_users, vecs = user_text_vectors(ws, item_ids, item_vecs, HashingEncoder(dim))
    # bounded work: one streaming pass over the events in blocks, never all rows at once
    assert reads["fetchall"] == 0 and sum(reads["blocks"]) == n_events
    assert len(reads["blocks"]) >= 4 and max(reads["blocks"]) <= user_vectors._BLOCK
    assert len(got_users) == n_users and vecs.shape == (n_users, dim)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # spot-check three users (those of the first and the last event) against a direct numpy computation
    rows = {u: i for i, u in enumerate(got_users)}
    for u in (7, int(users[0]), int(users[-1])):
        mask = users == u
        w = np.array([{"view": 0.5, "click": 1, "cart": 2, "purchase": 3}[t] for t in types[mask]])
        secs = np.array([np.datetime64(t[:19]).astype("datetime64[s]").astype(np.int64)
                         for t in np.array(ts)[mask]])
        w = w * np.exp2(-(secs.max() - secs) / 86400 / 90)
        expected = w @ item_vecs[items[mask]]
        np.testing.assert_allclose(vecs[rows[f"U{u}"]], expected / np.linalg.norm(expected), atol=1e-5)

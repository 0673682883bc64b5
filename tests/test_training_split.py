"""Time split, test relevance, baselines and interaction/history features (hand-checked)."""
from __future__ import annotations

import numpy as np
import pytest

from merch_app.evaluation import baselines as bl
from merch_app.evaluation.split import SplitError, normalise_date, relevant_items, time_split
from merch_app.model.interactions import HistoryState, from_arrays, item_trend_features, load_interactions

EVENTS = [  # user, item, type, ts
    ("u1", "a", "purchase", "2024-01-01T00:00:00Z"),
    ("u1", "a", "purchase", "2024-01-05T00:00:00Z"),
    ("u1", "b", "purchase", "2024-01-06T00:00:00Z"),
    ("u2", "b", "view", "2024-01-02T00:00:00Z"),
    ("u2", "c", "purchase", "2024-01-03T00:00:00Z"),
    (None, "c", "purchase", "2024-01-04T00:00:00Z"),
    ("u1", "c", "purchase", "2024-01-09T00:00:00Z"),
    ("u2", "a", "purchase", "2024-01-10T00:00:00Z"),
    ("u2", "a", "purchase", "2024-01-10T12:00:00Z"),
    ("u3", "b", "purchase", "2024-01-10T00:00:00Z"),  # only after the split: not a test user
    ("u2", "d", "click", "2024-01-11T00:00:00Z"),
]


@pytest.fixture
def db(ws):
    ws["items"].insert_all([{"item_id": i, "title": i} for i in "abcd"], pk="item_id")
    ws["events"].insert_all([{"user_id": u, "item_id": i, "event_type": t, "ts": ts} for u, i, t, ts in EVENTS])
    return ws


def test_time_split_default_and_explicit(db):
    s = time_split(db)
    assert s.first_ts == "2024-01-01T00:00:00Z" and s.last_ts == "2024-01-11T00:00:00Z"
    assert s.split_ts == "2024-01-09T00:00:00Z"  # 80 % of 10 days
    assert time_split(db, "2024-01-07").split_ts == "2024-01-07T00:00:00Z"
    assert normalise_date("2024-01-07 13:45") == "2024-01-07T13:45:00Z"
    with pytest.raises(SplitError, match="not a date"):
        time_split(db, "next tuesday")
    with pytest.raises(SplitError, match="outside"):
        time_split(db, "2030-01-01")


def test_relevant_items_only_purchases_of_training_users(db):
    rel = relevant_items(db, "2024-01-07T00:00:00Z", {"u1", "u2"})
    assert rel == {"u1": {"c"}, "u2": {"a"}}


def test_interactions_history_and_trend(db):
    inter = load_interactions(db, ["a", "b", "c", "d"], until_ts="2024-01-07T00:00:00Z")
    assert list(inter.user_ids) == ["u1", "u2"] and len(inter) == 5  # anonymous row dropped
    u, i, w = inter.pairs()
    assert dict(zip(zip(u.tolist(), i.tolist()), w.tolist())) == {(0, 0): 2.0, (0, 1): 1.0, (1, 1): pytest.approx(0.1),
                                                                 (1, 2): 1.0}
    ref = inter.ts.max() + 1.0  # one day after the last event (Jan 6)
    st = HistoryState.build(inter, ref, half_life_days=2.0)
    f = st.features(np.array([0, 0, 1]), np.array([0, 3, 2]))
    assert f[0, 0] == pytest.approx(np.log1p(2.0))
    assert f[0, 1] == pytest.approx(np.log1p(2 ** (-6 / 2) + 2 ** (-2 / 2)))  # bought Jan 1 and Jan 5
    assert f[0, 2] == pytest.approx(np.exp(-2 / 30)) and f[0, 3] == 1.0
    assert np.all(f[1] == 0)  # never bought item d
    assert f[2, 3] == 1.0
    trend = item_trend_features(inter, ref)
    assert trend[0, 0] == pytest.approx(np.log1p(2.0)) and trend[3].tolist() == [0, 0, 0]


def test_baselines_known_answers():
    inter = from_arrays(["u1", "u1", "u1", "u2", "u2", "u3", "u3", "u3"],
                        ["a", "b", "b", "c", "c", "c", "b", "d"], np.arange(8.0),
                        item_ids=["a", "b", "c", "d", "e"])
    # popularity: c (3) > b (3, tie broken by catalogue order: b first) ...
    pop = bl.popularity_ranking(inter, ["u1"], k=3)
    assert pop == {"u1": ["b", "c", "a"]}
    hist = bl.user_history_ranking(inter, ["u1", "u2", "zz"], k=3)
    assert hist["u1"] == ["b", "a", "c"]  # own: b twice, a once; then popular c
    assert hist["u2"] == ["c", "b", "a"]
    assert hist["zz"] == ["b", "c", "a"]  # unknown user: popularity
    text_u = np.array([[1.0, 0.0]], np.float32)
    text_i = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [0.0, 0.0], [0.8, 0.6]], np.float32)
    assert bl.text_only_ranking(text_u, text_i, ["u1"], ["a", "b", "c", "d", "e"], k=3) == {"u1": ["b", "e", "c"]}
    top = bl.top_k_rows(np.array([[0.1, 0.5, 0.5, 0.2]]), 3)
    assert top.tolist() == [[1, 2, 3]]

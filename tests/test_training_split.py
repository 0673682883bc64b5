"""Time split, test relevance, baselines and interaction/history features (hand-checked)."""
from __future__ import annotations

import numpy as np
import pytest

from merch_app.evaluation import baselines as bl
from merch_app.evaluation.split import SplitError, normalise_date, relevant_items, time_split
from merch_app.model.interactions import from_arrays, load_interactions
from merch_app.model.history_features import HistoryState, item_trend_features

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
    with ws.conn:
        ws.insert_rows("items", [{"item_id": i, "title": i} for i in "abcd"])
    with ws.conn:
        ws.insert_rows("events", [{"user_id": u, "item_id": i, "event_type": t, "ts": ts} for u, i, t, ts in EVENTS])
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
    assert trend[0, 0] == pytest.approx(np.log1p(2.0)) and trend[3].tolist() == [0] * 7 + [1]  # never sold: "unsold"
    assert trend[:3, 7].tolist() == [0, 0, 0]


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


def test_own_item_keys_equal_unique_of_positive_events():
    rng = np.random.default_rng(3)
    users, items = rng.integers(0, 40, 500), rng.integers(0, 30, 500)
    types = rng.choice(["purchase", "view", "return"], 500)
    inter = from_arrays([f"u{u}" for u in users], [f"i{i}" for i in items], np.arange(500.0), event_types=types,
                        event_weights={"return": -1.0}, item_ids=[f"i{i}" for i in range(30)])
    pos = inter.weight > 0
    assert (~pos).any() and pos.any()
    before = inter.user_idx.copy()
    want, want_counts = np.unique(inter.user_idx[pos] * 30 + inter.item_idx[pos], return_counts=True)
    keys, counts = bl.own_item_keys(inter, counts=True)
    assert keys.tolist() == want.tolist() and counts.tolist() == want_counts.tolist()
    assert bl.own_item_keys(inter).tolist() == want.tolist()
    assert np.array_equal(inter.user_idx, before)  # the events are not sorted in place


def test_beyond_history_view_drops_own_items_from_lists_and_labels():
    from merch_app.evaluation.offline import beyond_history_view

    inter = from_arrays(["u1", "u1", "u2"], ["a", "b", "c"], np.arange(3.0), item_ids=list("abcde"))

    class Model:  # scores a > b > c > d > e for everyone
        n_items, item_ids = 5, np.array(list("abcde"), dtype=object)
        item_pos = {x: n for n, x in enumerate("abcde")}
        user_pos = {"u1": 0, "u2": 1}
        arrays = {"T_u": np.eye(2, 3, dtype=np.float32), "T_i": np.eye(5, 3, dtype=np.float32)}

        def score_matrix(self, rows, parts=None):
            return np.tile(np.arange(5, 0, -1, dtype=np.float32), (len(rows), 1))

    out = beyond_history_view(Model(), inter, {"u1": {"b", "e"}, "u2": {"d", "c"}}, ["u1", "u2"], k=3)
    assert out["share_of_relevant_pairs"] == pytest.approx(2 / 4)  # b (u1) and c (u2) were bought before
    # u1: a, b removed -> c, d, e (e relevant); u2: c removed -> a, b, d (d relevant): both found in the top 3
    assert out["model"]["recall@3"] == pytest.approx(1.0)
    assert out["model"]["precision@3"] == pytest.approx(1 / 3)


def test_event_types_are_one_byte_codes_that_compare_like_names(db):
    with db.conn:
        db.insert_rows("events", [{"user_id": "u3", "item_id": "d", "event_type": "rating", "value": 4, "ts": "2024-01-12T00:00:00Z"}])
    inter = load_interactions(db, ["a", "b", "c", "d"])
    want = [t for u, _i, t, _ts in sorted(EVENTS, key=lambda e: e[3]) if u is not None] + ["rating"]
    assert inter.event_type.codes.dtype == np.uint8 and inter.event_type.tolist() == want
    assert (inter.event_type == "rating").tolist() == [t == "rating" for t in want]
    assert not (inter.event_type == "search").any() and (inter.event_type != "search").all()
    views = inter.subset(inter.event_type == "view")
    assert views.event_type.tolist() == ["view"] and np.asarray(views.event_type, dtype=str).tolist() == ["view"]
    again = from_arrays(["x", "y"], ["a", "b"], [0.0, 1.0], event_types=["cart", "rating"], values=[None, 5])
    assert again.event_type.tolist() == ["cart", "rating"] and (again.event_type == "rating").tolist() == [False, True]


def test_int32_event_indices_make_64_bit_keys():
    from merch_app.model.interactions import Interactions

    n_users, n_items = 70_000, 40_000  # user * n_items + item passes 2**31
    users, items = np.array([69_999, 69_999, 5, 69_999]), np.array([39_999, 39_999, 7, 12])
    inter = Interactions(np.arange(n_users).astype(str).astype(object), np.arange(n_items).astype(str).astype(object),
                         users, items, np.ones(4, np.float32), np.array([1.0, 2.0, 3.0, 4.0]), ["purchase"] * 4)
    assert inter.user_idx.dtype == np.int32
    u, i, w = inter.pairs()
    assert list(zip(u.tolist(), i.tolist(), w.tolist())) == [(5, 7, 1.0), (69_999, 12, 1.0), (69_999, 39_999, 2.0)]
    state = HistoryState.build(inter, 10.0)
    assert (state.keys // n_items).tolist() == [5, 69_999, 69_999] and (state.keys % n_items).tolist() == [7, 12, 39_999]
    assert state.count.tolist() == [1.0, 1.0, 2.0]
    assert bl.own_item_keys(inter).tolist() == state.keys.tolist()


@pytest.mark.parametrize("placeholder", ["1970-01-01T00:00:00Z", "1900-01-01T00:00:00Z"])
def test_a_placeholder_date_gives_a_clear_split_error(db, placeholder):
    """One event dated 1970 (imported before such dates were refused) left the default split nothing to train on."""
    with db.conn:
        db.insert_rows("events", [{"user_id": "u1", "item_id": "a", "event_type": "purchase", "ts": placeholder}])
    with pytest.raises(SplitError, match=f"leaves 1 of 11 events to train on.*the first is {placeholder[:10]}"):
        time_split(db)
    assert time_split(db, "2024-01-07").split_ts == "2024-01-07T00:00:00Z"  # an explicit date still works


def test_split_sides_are_never_empty(db):
    with db.conn:
        db.insert_rows("events", [{"user_id": "u9", "item_id": "a", "event_type": "purchase",
                                   "ts": "2031-01-01T00:00:00Z"}])
    with pytest.raises(SplitError, match="leaves 1 of 11 events to test on.*the last is 2031-01-01"):
        time_split(db)
    with db.conn:
        db.execute("UPDATE events SET ts = '2024-01-01T00:00:00Z'")
    with pytest.raises(SplitError, match="every behaviour event has the same time"):
        time_split(db)


def test_train_with_a_placeholder_date_says_why_instead_of_a_traceback(ws, ws_path):
    from click.testing import CliRunner

    from merch_app.cli.main import cli
    from model_fixtures import planted_workspace

    planted_workspace(ws, n_users=12)
    with ws.conn:
        ws.insert_rows("events", [{"user_id": "u001", "item_id": "a01", "event_type": "purchase",
                                   "ts": "1970-01-01T00:00:00Z"}])
    args = ["train", "-w", str(ws_path), "--encoder", "hashing", "--epochs", "1"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert "events to train on" in res.output and "--split-date" in res.output
    res = CliRunner().invoke(cli, [*args, "--split-date", "1971-01-01"])  # one event before the cut-off
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert "all happen at one moment: too little to learn from" in res.output
    assert ws.execute("SELECT count(*) FROM models").fetchone()[0] == 0

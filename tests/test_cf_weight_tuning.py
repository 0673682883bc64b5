"""CF fusion weight tuning: known-answer grid, personalised queries, features from the ranker."""
from __future__ import annotations

import numpy as np

from merch_app.ranking import cf_weight_tuning as cwt
from merch_app.ranking.ranker import Ranker
from merch_app.ranking.testing import SAMPLE_ITEMS, TableCFModel, WordVectorEncoder, insert_items, make_bundle


def feat(qid, ids, lexical, cf, target, repeat=False, user="u"):
    n = len(ids)
    q = cwt.PersonalQuery(qid, "q", "drop", target, {target: 3.0}, user=user, repeat=repeat)
    return cwt.PersonalFeatures(q, list(ids), np.asarray(lexical, float), np.full(n, 0.5),
                                np.asarray(cf, float), np.zeros(n))


def known_answer_set(copies=1):
    """Two kinds of query whose best w_cf is exactly 0.1 (lex/text at 0.5, pop 0).

    * repeat: a distractor B leads the target A by 0.5·0.1 = 0.05 lexically and
      CF favours A (1 vs 0): A wins iff w_cf > 0.05 (a tie keeps B first);
    * new:    the target T leads X by 0.5·0.2 = 0.1 and CF favours X: T stays
      first iff w_cf <= 0.1.
    Only w_cf = 0.1 gets both right.
    """
    out = []
    for c in range(copies):
        out.append(feat(f"r{c}", ["B", "A"], [1.0, 0.9], [0.0, 1.0], "A", repeat=True))
        out.append(feat(f"n{c}", ["T", "X"], [1.0, 0.8], [0.0, 1.0], "T"))
    return out


def test_best_cf_known_answer():
    fs = known_answer_set()
    best, table = cwt.best_cf(fs, w_pop=0.0)
    assert best == 0.1
    by_w = {r["cf"]: r for r in table}
    assert by_w[0.1]["ndcg@10"] == 1.0 and by_w[0.1]["mrr@10"] == 1.0
    assert by_w[0.0]["mrr@10"] == 0.75 and by_w[0.2]["mrr@10"] == 0.75
    assert cwt.fused(fs[0], 0.05, w_pop=0.0) == ["B", "A"]  # tie keeps candidate order
    assert cwt.fused(fs[0], 0.1, w_pop=0.0) == ["A", "B"]


def test_run_reports_halves_subsets_and_paired_tests():
    fs = known_answer_set(copies=20)
    rep = cwt.run(fs, pop_grid=(0.0,))
    assert rep["tune"] + rep["test"] == 40 and rep["tune"] > 0 and rep["test"] > 0
    assert rep["test_repeat"] + rep["test_new"] == rep["test"]
    # popularity is 0 here, so pop=0.1 changes nothing and 0.1 is best on the tune half
    assert rep["best_cf_tune"] == 0.1
    row = next(r for r in rep["grid"] if r["cf"] == 0.1)
    assert row["all"]["ndcg@10"] == 1.0
    assert next(r for r in rep["grid"] if r["cf"] == 0.0)["repeat"]["mrr@10"] == 0.5
    t = rep["paired"]["repeat"]["best_vs_0"]
    assert t["delta"] > 0 and t["wins"] == rep["test_repeat"] and t["losses"] == 0
    assert rep["paired"]["new"]["best_vs_0"]["delta"] == 0.0
    assert rep["joint_best"]["cf"] == 0.1


def test_personal_queries_from_test_period_purchases(ws):
    insert_items(ws, SAMPLE_ITEMS)
    events = [("u1", "22004", "2011-01-01T00:00:00Z"), ("u1", "22004", "2011-10-01T00:00:00Z"),
              ("u1", "22002", "2011-10-02T00:00:00Z"), ("u2", "22003", "2011-10-03T00:00:00Z"),
              ("u3", "22001", "2011-02-01T00:00:00Z"), ("u3", "22005", "2011-11-01T00:00:00Z")]
    with ws.conn:
        ws.conn.executemany("INSERT INTO events (user_id, item_id, event_type, ts) "
                            "VALUES (?, ?, 'purchase', ?)", events)
    qs = cwt.make_personal_queries(ws, ["u1", "u2"], "2011-09-01T00:00:00Z", n=10, seed=1)
    pairs = {(q.user, q.target): q for q in qs}
    # u2 has no purchase before the split, u3 is unknown to the model
    assert set(pairs) <= {("u1", "22004"), ("u1", "22002")} and pairs
    for (user, item), q in pairs.items():
        assert q.repeat == (item == "22004")
        assert q.gains[item] == 3.0 and q.text
        assert q.half in ("tune", "test")


def test_personal_features_carry_the_users_cf(ws):
    insert_items(ws, SAMPLE_ITEMS)
    bundle = make_bundle(ws, WordVectorEncoder())
    ids = [str(i) for i in bundle.item_ids]
    table = np.zeros((1, len(ids)))
    table[0, ids.index("22002")] = 5.0
    bundle.model = TableCFModel(["u1"], ids, table)
    ranker = Ranker(ws, bundle)
    q = cwt.PersonalQuery("x", "candle", "drop", "22002", {"22002": 3.0}, user="u1", repeat=True)
    f = cwt.personal_features(ranker, q)
    assert "22002" in f.item_ids
    i = f.item_ids.index("22002")
    assert f.cf[i] == f.cf.max() and f.cf[i] > 0.5
    assert cwt.fused(f, 0.8)[0] == "22002"

"""Fusion weight tuning (benchmarks/tune_weights.py, tune_cf_weight.py): known-answer grids, ranker features.

The judged queries themselves are tested in test_known_items.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from merch_app.evaluation.known_items import JudgedQuery, PersonalQuery
from merch_app.ranking.ranker import Ranker
from ranking_fixtures import SAMPLE_ITEMS, TableCFModel, WordVectorEncoder, insert_items, make_bundle

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the scripts are not a package

import tune_cf_weight as tcw  # noqa: E402
import tune_weights as tw  # noqa: E402


def feat(qid, ids, lexical, cf, target, repeat=False, user="u"):
    n = len(ids)
    q = PersonalQuery(qid, "q", "drop", target, {target: 3.0}, user=user, repeat=repeat)
    return tcw.PersonalFeatures(q, list(ids), np.asarray(lexical, float), np.full(n, 0.5),
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
    best, table = tcw.best_cf(fs, w_pop=0.0)
    assert best == 0.1
    by_w = {r["cf"]: r for r in table}
    assert by_w[0.1]["ndcg@10"] == 1.0 and by_w[0.1]["mrr@10"] == 1.0
    assert by_w[0.0]["mrr@10"] == 0.75 and by_w[0.2]["mrr@10"] == 0.75
    assert tcw.fused(fs[0], 0.05, w_pop=0.0) == ["B", "A"]  # tie keeps candidate order
    assert tcw.fused(fs[0], 0.1, w_pop=0.0) == ["A", "B"]


def test_run_reports_halves_subsets_and_paired_tests():
    fs = known_answer_set(copies=20)
    rep = tcw.run(fs, pop_grid=(0.0,))
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


def test_personal_features_carry_the_users_cf(ws):
    insert_items(ws, SAMPLE_ITEMS)
    bundle = make_bundle(ws, WordVectorEncoder())
    ids = [str(i) for i in bundle.item_ids]
    table = np.zeros((1, len(ids)))
    table[0, ids.index("22002")] = 5.0
    bundle.model = TableCFModel(["u1"], ids, table)
    ranker = Ranker(ws, bundle)
    q = PersonalQuery("x", "candle", "drop", "22002", {"22002": 3.0}, user="u1", repeat=True)
    f = tcw.personal_features(ranker, q)
    assert "22002" in f.item_ids
    i = f.item_ids.index("22002")
    assert f.cf[i] == f.cf.max() and f.cf[i] > 0.5
    assert tcw.fused(f, 0.8)[0] == "22002"


def anonymous_feat(qid, ids, lexical, text, target):
    q = JudgedQuery(qid, "q", "drop", target, {target: 3.0})
    n = len(ids)
    return tw.QueryFeatures(q, list(ids), np.asarray(lexical, float), np.asarray(text, float), np.zeros(n),
                            list(ids), list(ids))


def test_lex_text_grid_known_answer():
    """The target leads lexically, a distractor by meaning: only w_lex > 0.5 ranks it first."""
    fs = [anonymous_feat(f"a{c}", ["B", "A"], [0.0, 1.0], [1.0, 0.0], "A") for c in range(3)]
    assert tw.fused_ranking(fs[0], 0.5, 0.5, 0.0) == ["B", "A"]  # a tie keeps candidate order
    assert tw.fused_ranking(fs[0], 0.6, 0.4, 0.0) == ["A", "B"]
    best, table = tw.grid_search(fs)
    assert len(table) == len(tw.LEX_GRID) * len(tw.POP_GRID)
    assert best == {"lex": 0.6, "text": 0.4, "pop": 0.0, "ndcg@10": 1.0}  # ties: smallest lex, then pop
    m = tw.evaluate(fs, lambda f: tw.fused_ranking(f, 0.5, 0.5, 0.0))
    assert m["mrr@10"] == 0.5 and m["hit@10"] == 1.0 and m["n"] == 3
    assert m["ndcg@10"] == pytest.approx(1.0 / np.log2(3)) and m["per_query"] == [m["per_query"][0]] * 3

"""Known-answer tests for merch_app.evaluation.metrics (values checked by hand)."""
from __future__ import annotations

import math

import pytest

from merch_app.evaluation import metrics as m

RANKED = ["a", "b", "c", "d", "e"]
REL = {"a", "c", "f"}


def test_precision_recall_hit():
    assert m.precision_at_k(RANKED, REL, 5) == pytest.approx(0.4)
    assert m.precision_at_k(RANKED, REL, 2) == pytest.approx(0.5)
    # fewer ranked than k still divides by k
    assert m.precision_at_k(["a"], REL, 10) == pytest.approx(0.1)
    assert m.recall_at_k(RANKED, REL, 5) == pytest.approx(2 / 3)
    assert m.recall_at_k(RANKED, set(), 5) == 0.0
    assert m.hit_rate_at_k(RANKED, REL, 1) == 1.0
    assert m.hit_rate_at_k(["b", "d"], REL, 2) == 0.0
    with pytest.raises(ValueError):
        m.precision_at_k(RANKED, REL, 0)


def test_ndcg_binary_and_graded():
    # DCG = 1/log2(2) + 1/log2(4) = 1.5 ; IDCG = 1 + 1/log2(3) + 1/log2(4)
    idcg = 1 + 1 / math.log2(3) + 0.5
    assert m.ndcg_at_k(RANKED, REL, 5) == pytest.approx(1.5 / idcg)
    assert m.ndcg_at_k(["a", "c", "f"], REL, 3) == pytest.approx(1.0)
    assert m.ndcg_at_k(RANKED, set(), 5) == 0.0
    # graded: gains a=1, b=3 ranked a,b -> DCG 1 + 3/log2(3); ideal b,a -> 3 + 1/log2(3)
    g = {"a": 1.0, "b": 3.0}
    expected = (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    assert m.ndcg_at_k(["a", "b"], g, 2) == pytest.approx(expected)
    assert m.ndcg_at_k(["a", "b"], g, 2) == pytest.approx(0.796708, abs=1e-6)


def test_average_precision_and_mrr():
    assert m.average_precision_at_k(RANKED, REL, 5) == pytest.approx((1 + 2 / 3) / 3)
    # min(|rel|, k) in the denominator
    assert m.average_precision_at_k(["x", "a"], {"a", "b", "c"}, 2) == pytest.approx(0.5 / 2)
    assert m.reciprocal_rank(["x", "y", "a"], REL) == pytest.approx(1 / 3)
    assert m.reciprocal_rank(["x", "y", "a"], REL, k=2) == 0.0
    assert m.reciprocal_rank(["x"], REL) == 0.0


def test_mae_rmse():
    assert m.mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    assert m.rmse([1, 2, 3], [2, 2, 5]) == pytest.approx(math.sqrt(5 / 3))
    with pytest.raises(ValueError):
        m.mae([1], [1, 2])


def test_coverage_gini_long_tail():
    assert m.catalogue_coverage([["a", "b"], ["b", "c"]], 10) == pytest.approx(0.3)
    assert m.gini([0, 0, 0, 1]) == pytest.approx(0.75)
    assert m.gini([1, 1, 1, 1]) == pytest.approx(0.0)
    assert m.gini([]) == 0.0
    counts = m.recommendation_counts([["a", "b"], ["a"]], ["a", "b", "c"])
    assert counts.tolist() == [2, 1, 0]
    pop = {"a": 10, "b": 5, "c": 1, "d": 1, "e": 0}
    tail = m.long_tail_items(pop, head_share=0.2)
    assert tail == {"b", "c", "d", "e"}
    assert m.long_tail_share([["a", "b"], ["a", "c"]], tail) == pytest.approx(0.5)


def test_ranking_report_means_over_users():
    rankings = {"u1": ["a", "b"], "u2": ["c", "d"], "u3": ["z"]}
    relevant = {"u1": {"a"}, "u2": {"x"}, "u4": set()}  # u4 has nothing relevant: skipped
    rep = m.ranking_report(rankings, relevant, k=2, catalogue=list("abcdxz"), popularity={"a": 3, "b": 1})
    assert rep["n_users"] == 2
    assert rep["precision@2"] == pytest.approx(0.25)
    assert rep["recall@2"] == pytest.approx(0.5)
    assert rep["ndcg@2"] == pytest.approx(0.5)
    assert rep["hit_rate@2"] == pytest.approx(0.5)
    assert rep["mrr"] == pytest.approx(0.5)
    assert rep["coverage"] == pytest.approx(4 / 6)

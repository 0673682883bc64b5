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


def test_evaluation_catalogue_metrics_equal_ranking_report():
    """offline._report (arrays, computed once) gives ranking_report's coverage, Gini and long-tail share."""
    import numpy as np

    from merch_app.evaluation.metrics import ranking_report
    from merch_app.evaluation.offline import _Catalogue, _report

    rng = np.random.default_rng(3)
    ids = np.array([f"i{n:02d}" for n in rng.permutation(40)], dtype=object)
    counts = rng.integers(0, 4, len(ids)).astype(float)  # many ties: broken by id
    rankings = {f"u{u}": list(rng.choice(ids, 5, replace=False)) for u in range(12)}
    relevant = {u: set(rng.choice(ids, 3, replace=False)) for u in rankings}
    relevant["u0"] = set()  # users without relevant items are left out of both
    expect = ranking_report(rankings, relevant, 5, catalogue=list(ids),
                            popularity={i: float(c) for i, c in zip(ids, counts)})
    got = _report(rankings, relevant, 5, _Catalogue(ids, {str(i): n for n, i in enumerate(ids)}, counts))
    assert got.keys() == expect.keys()
    for key in expect:
        assert got[key] == pytest.approx(expect[key], abs=1e-12), key

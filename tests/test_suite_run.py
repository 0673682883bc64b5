"""Suite runs: known-answer metrics on hand-made suites and fake rankers."""
from __future__ import annotations

import math

import pytest

from merch_app.evaluation.suite_run import bootstrap_ci, metric_names, run_suite, score_query
from merch_app.evaluation.suite_data import Suite
from merch_app.jobs import CancelToken, Cancelled


def _suite() -> Suite:
    s = Suite("known")
    s.set_grade("q1", "a", 3)
    s.set_grade("q1", "b", 1)
    s.set_grade("q1", "x", 0)
    s.set_grade("q2", "c", 2)
    s.add_query("q3")  # nothing relevant: not scored
    return s


LISTS = {"q1": ["x", "a", "z", "b"], "q2": ["c"], "q3": ["a"]}


def fake_rank(query, n):
    return LISTS[query][:n]


def test_known_answer_metrics():
    run = run_suite(_suite(), fake_rank, k=3, label="fake")
    q1, q2, q3 = run.queries
    # q1: gains x=0, a=3, z=unjudged, b=1 -> DCG@10 = 3/log2(3) + 1/log2(5); IDCG = 3 + 1/log2(3)
    dcg = 3 / math.log2(3) + 1 / math.log2(5)
    idcg = 3 + 1 / math.log2(3)
    assert q1.metrics["ndcg@10"] == pytest.approx(dcg / idcg)
    assert q1.metrics["ndcg@3"] == pytest.approx((3 / math.log2(3)) / idcg)
    assert q1.metrics["p@3"] == pytest.approx(1 / 3)  # only a in the top 3 (b is 4th)
    assert q1.metrics["mrr"] == pytest.approx(0.5)
    assert q1.unjudged == 1 and q1.n_judged == 3 and q1.n_relevant == 2
    assert q1.grades[:4] == [0, 3, None, 1]
    assert q2.metrics == {"ndcg@10": 1.0, "ndcg@3": 1.0, "p@3": pytest.approx(1 / 3), "mrr": 1.0}
    assert not q3.scored and q3.metrics["ndcg@10"] is None and q3.unjudged == 1
    assert run.n_scored == 2
    assert run.mean["ndcg@10"] == pytest.approx((dcg / idcg + 1.0) / 2)
    assert run.mean["mrr"] == pytest.approx(0.75)
    lo, hi = run.ci["mrr"]
    assert 0.5 <= lo <= 0.75 <= hi <= 1.0


def test_worst_first_and_json_shape():
    run = run_suite(_suite(), fake_rank, k=10)
    assert [q.query for q in run.worst_first()] == ["q1", "q2", "q3"]
    d = run.to_dict()
    assert set(d["mean"]) >= {"ndcg@10", "p@10", "mrr", "unjudged@10", "queries", "scored_queries"}
    assert "ndcg@10@10" not in d["mean"] and metric_names(10) == ["ndcg@10", "p@10", "mrr"]
    assert d["queries"][0]["query"] == "q1" and d["queries"][0]["ndcg@10"] is not None
    assert d["queries"][2]["scored"] is False


def test_perfect_ranker_scores_one():
    s = _suite()

    def ideal(query, n):
        return sorted(s.judgments[query], key=lambda i: -s.judgments[query][i])[:n]

    run = run_suite(s, ideal, k=2)
    assert run.mean["ndcg@10"] == pytest.approx(1.0)
    assert run.mean["mrr"] == 1.0
    assert run.queries[0].metrics["p@2"] == 1.0


def test_progress_and_cancel():
    seen = []
    run_suite(_suite(), fake_rank, progress=seen.append)
    assert seen[-1].done == seen[-1].total == 3
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        run_suite(_suite(), fake_rank, cancel=token)


def test_score_query_threshold():
    r = score_query("q", ["a", "b"], {"a": 1, "b": 2}, k=2, rel_threshold=2)
    assert r.metrics["mrr"] == 0.5 and r.metrics["p@2"] == 0.5


def test_bootstrap_ci():
    assert bootstrap_ci([]) != bootstrap_ci([])  # (nan, nan)
    assert bootstrap_ci([0.4]) == (0.4, 0.4)
    assert bootstrap_ci([0.5] * 5) == (0.5, 0.5)
    lo, hi = bootstrap_ci([0.0, 1.0] * 50)
    assert 0.38 < lo < 0.5 < hi < 0.62

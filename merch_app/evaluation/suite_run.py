"""Run a judged suite against a ranker: per-query NDCG@10, P@k, MRR and unjudged counts.

A *ranker* here is any function ``(query, k) -> list of item ids`` (best
first), so a suite can be run against a trained model, other settings, a
fake ranker in tests or a stored snapshot.  :func:`model_ranker` builds one
from the workspace's ranking stack.

Conventions:

* NDCG uses the graded judgments as linear gains (grade 0-3, see
  :func:`merch_app.evaluation.metrics.ndcg_at_k`);
* P@k and MRR count an item as relevant when its grade >= ``rel_threshold`` (1);
* unjudged results (no grade in the suite) count as not relevant and are
  reported per query (``unjudged@k``) so holes in the judgments are visible;
* queries without any relevant judgment have no metrics (``None``) and are
  left out of the means; they are listed as ``scored: false``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from merch_app.evaluation.metrics import ndcg_at_k, precision_at_k, reciprocal_rank
from merch_app.evaluation.suite_data import Suite
from merch_app.jobs import EtaClock, Progress, Throttle
from merch_app.ranking.ranker import Ranker
from merch_app.ranking.types import Filters, RankRequest, Weights

RankFn = Callable[[str, int], Sequence[str]]
NDCG_K = 10


def metric_names(k: int) -> list[str]:
    """Metric keys of a run with cut-off ``k`` (``ndcg@10`` is always there)."""
    names = [f"ndcg@{NDCG_K}"]
    if k != NDCG_K:
        names.append(f"ndcg@{k}")
    return names + [f"p@{k}", "mrr"]


@dataclass
class QueryResult:
    """One query of a suite run."""

    query: str
    items: list[str]
    metrics: dict[str, Optional[float]]
    unjudged: int
    n_judged: int
    n_relevant: int
    grades: list[Optional[int]] = field(default_factory=list)  # grade per shown item

    @property
    def scored(self) -> bool:
        return self.n_relevant > 0

    def to_dict(self, k: int) -> dict[str, Any]:
        return {"query": self.query, **self.metrics, f"unjudged@{k}": self.unjudged,
                "judged": self.n_judged, "relevant": self.n_relevant, "scored": self.scored,
                "items": self.items[:k], "grades": self.grades[:k]}


@dataclass
class SuiteRun:
    """Result of running one suite with one ranker.

    Attributes
    ----------
    label
        Name of the system (model + settings), shown in comparisons.
    config
        JSON-safe description of the system (model id, weights, rules ...).
    mean, ci
        Mean of each metric over scored queries, and its bootstrap 95% CI.
    """

    suite: str
    label: str
    k: int
    queries: list[QueryResult]
    mean: dict[str, float]
    ci: dict[str, tuple[float, float]]
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def metric_names(self) -> list[str]:
        return metric_names(self.k)

    def by_query(self) -> dict[str, QueryResult]:
        return {q.query: q for q in self.queries}

    def values(self, metric: str) -> dict[str, float]:
        """``query -> value`` of ``metric`` for scored queries."""
        return {q.query: q.metrics[metric] for q in self.queries if q.metrics.get(metric) is not None}

    def worst_first(self, metric: Optional[str] = None) -> list[QueryResult]:
        """Scored queries by ascending ``metric`` (default ndcg@10), then unscored ones."""
        metric = metric or f"ndcg@{NDCG_K}"
        scored = sorted((q for q in self.queries if q.metrics.get(metric) is not None),
                        key=lambda q: (q.metrics[metric], q.query))
        return scored + [q for q in self.queries if q.metrics.get(metric) is None]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"mean": {...}, "ci": {...}, "queries": [{"query", "ndcg@10", ...}]}``."""
        return {
            "suite": self.suite, "label": self.label, "k": self.k, "config": self.config,
            "mean": {**self.mean, f"unjudged@{self.k}": self.mean_unjudged,
                     "queries": len(self.queries), "scored_queries": self.n_scored},
            "ci": {m: list(v) for m, v in self.ci.items()},
            "seconds": round(self.seconds, 3),
            "queries": [q.to_dict(self.k) for q in self.queries],
        }

    @property
    def n_scored(self) -> int:
        return sum(q.scored for q in self.queries)

    @property
    def mean_unjudged(self) -> float:
        return float(np.mean([q.unjudged for q in self.queries])) if self.queries else 0.0


def bootstrap_ci(values: Sequence[float], *, n_boot: int = 2000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean.

    Returns ``(nan, nan)`` for no values and ``(v, v)`` for a single value.
    """
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1 or np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 500):  # bounded memory for large suites
        stop = min(start + 500, n_boot)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        means[start:stop] = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def score_query(query: str, items: Sequence[str], grades: dict[str, int], k: int,
                rel_threshold: int = 1) -> QueryResult:
    """Metrics of one ranked list against graded judgments."""
    items = [str(i) for i in items]
    relevant = {i for i, g in grades.items() if g >= rel_threshold}
    top = items[:k]
    shown_grades = [grades.get(i) for i in items[:max(k, NDCG_K)]]
    unjudged = sum(1 for i in top if i not in grades)
    metrics: dict[str, Optional[float]] = dict.fromkeys(metric_names(k))
    if relevant:
        gains = {i: float(g) for i, g in grades.items() if g > 0}
        metrics[f"ndcg@{NDCG_K}"] = ndcg_at_k(items, gains, NDCG_K)
        metrics[f"ndcg@{k}"] = ndcg_at_k(items, gains, k)
        metrics[f"p@{k}"] = precision_at_k(items, relevant, k)
        metrics["mrr"] = reciprocal_rank(items, relevant, max(k, NDCG_K))
    return QueryResult(query, items, metrics, unjudged, len(grades), len(relevant), shown_grades)


def run_suite(suite: Suite, rank: RankFn, *, k: int = 10, label: str = "", config: Optional[dict] = None,
              rel_threshold: int = 1, n_boot: int = 2000, progress=None, cancel=None) -> SuiteRun:
    """Rank every query of ``suite`` with ``rank`` and score it.

    Parameters
    ----------
    rank
        ``(query, n) -> item ids`` best first; asked for ``max(k, 10)`` results.
    k
        Cut-off of P@k and the unjudged count (NDCG@10 is always computed).
    label, config
        Name and description of the system, kept in the run.

    Returns
    -------
    SuiteRun
        Per-query results in suite order plus means with bootstrap CIs.
    """
    if k <= 0:
        raise ValueError("k must be positive")
    t0, clock, throttle = time.perf_counter(), EtaClock(), Throttle()
    depth = max(k, NDCG_K)
    results = []
    n = len(suite.queries)
    for i, q in enumerate(suite.queries):
        if cancel is not None:
            cancel.check()
        items = list(rank(q, depth))[:depth]
        results.append(score_query(q, items, suite.judgments.get(q, {}), k, rel_threshold))
        if progress is not None and (throttle.ready() or i + 1 == n):
            progress(Progress(i + 1, n, f"query {i + 1}/{n}", clock.eta(i + 1, n),
                              data={"query": q, **{m: v for m, v in results[-1].metrics.items()
                                                   if v is not None}}))
    mean, ci = {}, {}
    for m in metric_names(k):
        vals = [r.metrics[m] for r in results if r.metrics[m] is not None]
        mean[m] = float(np.mean(vals)) if vals else float("nan")
        ci[m] = bootstrap_ci(vals, n_boot=n_boot)
    return SuiteRun(suite.name, label or "system", k, results, mean, ci, time.perf_counter() - t0,
                    dict(config or {}))


def system_config(bundle, weights, filters, rules) -> dict[str, Any]:
    """JSON-safe description of a ranking system (model, weights, filters, rules)."""
    version = getattr(bundle, "version", None)
    return {"model_id": getattr(version, "model_id", None),
            "model": getattr(version, "name", None) or "text-only",
            "encoder": getattr(bundle.encoder, "encoder_id", ""),
            "weights": {k: getattr(weights, k) for k in ("lex", "text", "cf", "pop")},
            "filters": filters.describe(), "rules": [getattr(r, "name", str(r)) for r in rules or ()]}


def model_ranker(db, bundle, *, weights=None, filters=None, rules="workspace") -> tuple[RankFn, dict]:
    """A :data:`RankFn` over the workspace's ranker with one bundle and settings.

    Parameters
    ----------
    bundle
        From :func:`merch_app.model.bundle.load_bundle`.
    weights
        :class:`merch_app.ranking.types.Weights` or a ``"lex=0.5,..."`` string.
    rules
        ``"workspace"`` = the enabled rules stored in the workspace, None = no
        rules, or a list of rules (e.g. a drafted rule plus the enabled ones).

    Returns
    -------
    (rank_fn, config)
        The ranker and a JSON-safe description of it.
    """
    if isinstance(weights, str) or weights is None:
        weights = Weights.parse(weights)
    filters = filters or Filters()
    ranker = Ranker.for_workspace(db, bundle, rules=rules)
    rules = ranker.rules

    def rank(query: str, n: int) -> list[str]:
        return list(ranker.rank(RankRequest(mode="search", query=query, k=n, weights=weights,
                                            filters=filters, prefix=False)).item_ids)

    return rank, system_config(bundle, weights, filters, rules)

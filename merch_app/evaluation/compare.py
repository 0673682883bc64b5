"""Compare systems over a suite: per-query deltas, significance, rank overlap, snapshots.

* :func:`paired_test` — paired randomisation (sign-flip) or bootstrap test on
  per-query differences; identical systems give p = 1.
* :func:`wins_losses_ties`, :func:`jaccard_at_k`, :func:`rbo` (rank-biased
  overlap, extrapolated, Webber et al. 2010), :func:`rank_moves` for a slope chart.
* :func:`compare_runs` puts it together for two or more :class:`SuiteRun`.
* Snapshots store a run's top-k lists and metrics in the workspace;
  :func:`diff_snapshot` flags queries whose NDCG fell by more than a threshold.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional, Sequence

import numpy as np

from merch_app.evaluation.suite_run import NDCG_K, QueryResult, SuiteRun

EXACT_MAX_N = 14  # enumerate all 2^n sign flips up to this many queries


@dataclass
class PairedTest:
    """Result of a paired significance test of B against A (delta = B - A)."""

    method: str
    n: int
    mean_a: float
    mean_b: float
    mean_delta: float
    p_value: float
    ci_delta: tuple[float, float]
    exact: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "n": self.n, "mean_a": self.mean_a, "mean_b": self.mean_b,
                "delta": self.mean_delta, "p_value": self.p_value, "ci_delta": list(self.ci_delta),
                "exact": self.exact}


def paired_test(a: Sequence[float], b: Sequence[float], *, method: str = "randomization",
                n_resamples: int = 10000, seed: int = 0) -> PairedTest:
    """Two-sided paired test of mean(b - a) = 0.

    Parameters
    ----------
    method
        ``randomization``: flip the sign of each per-query difference at random
        (exact enumeration when there are at most 14 queries);
        ``bootstrap``: resample the centred differences with replacement.
    n_resamples
        Random resamples (the p-value is ``(hits + 1) / (n + 1)``, never 0).

    Returns
    -------
    PairedTest
        With a bootstrap 95% CI of the mean delta.
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError("paired test needs the same queries on both sides")
    if method not in ("randomization", "bootstrap"):
        raise ValueError(f"unknown test {method!r} (randomization or bootstrap)")
    d = y - x
    n = d.size
    if n == 0:
        return PairedTest(method, 0, math.nan, math.nan, math.nan, math.nan, (math.nan, math.nan))
    obs = abs(d.mean())
    tol = 1e-12 * max(1.0, obs)
    rng = np.random.default_rng(seed)
    exact = False
    if not np.any(np.abs(d) > 0):
        p = 1.0
    elif method == "randomization" and n <= EXACT_MAX_N:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        p = float(np.mean(np.abs(signs @ d) / n >= obs - tol))
        exact = True
    else:
        hits, done = 0, 0
        centred = d - d.mean()
        while done < n_resamples:
            m = min(1000, n_resamples - done)
            if method == "randomization":
                stats = np.abs((rng.choice((-1.0, 1.0), size=(m, n)) * d).mean(axis=1))
            else:
                stats = np.abs(centred[rng.integers(0, n, size=(m, n))].mean(axis=1))
            hits += int(np.sum(stats >= obs - tol))
            done += m
        p = (hits + 1) / (n_resamples + 1)
    boot = d[rng.integers(0, n, size=(2000, n))].mean(axis=1) if n > 1 else np.array([d.mean()])
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return PairedTest(method, n, float(x.mean()), float(y.mean()), float(d.mean()), float(min(p, 1.0)),
                      (float(lo), float(hi)), exact)


def wins_losses_ties(a: Sequence[float], b: Sequence[float], eps: float = 1e-9) -> dict[str, int]:
    """How often B beats (win), trails (loss) or equals (tie, within ``eps``) A."""
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    return {"wins": int(np.sum(d > eps)), "losses": int(np.sum(d < -eps)),
            "ties": int(np.sum(np.abs(d) <= eps))}


def jaccard_at_k(a: Sequence, b: Sequence, k: int) -> float:
    """|A@k ∩ B@k| / |A@k ∪ B@k| (1.0 for two empty lists)."""
    sa, sb = set(list(a)[:k]), set(list(b)[:k])
    union = sa | sb
    return len(sa & sb) / len(union) if union else 1.0


def rbo(a: Sequence, b: Sequence, p: float = 0.9) -> float:
    """Extrapolated rank-biased overlap RBO_ext (Webber, Moffat & Zobel 2010, eq. 32).

    1.0 for identical lists, 0.0 for disjoint ones; top ranks weigh most
    (``p`` = persistence; 0.9 puts ~86% of the weight on the top 10).
    Lists may differ in length; items are assumed unique within a list.
    """
    if not 0 < p < 1:
        raise ValueError("p must be in (0, 1)")
    a, b = list(a), list(b)
    if not a and not b:
        return 1.0
    if not a or not b:
        return 0.0
    S, L = (a, b) if len(a) <= len(b) else (b, a)
    s, l_ = len(S), len(L)
    seen_s, seen_l = set(), set()
    overlap = 0
    x = [0] * (l_ + 1)  # x[d] = overlap of S[:min(d, s)] and L[:d]
    for d in range(1, l_ + 1):
        item_l = L[d - 1]
        if d <= s:
            item_s = S[d - 1]
            if item_s == item_l:
                overlap += 1
            else:
                overlap += (item_s in seen_l) + (item_l in seen_s)
            seen_s.add(item_s)
        else:
            overlap += item_l in seen_s
        seen_l.add(item_l)
        x[d] = overlap
    total = sum(x[d] / d * p ** d for d in range(1, l_ + 1))
    total += sum(x[s] * (d - s) / (s * d) * p ** d for d in range(s + 1, l_ + 1))
    value = (1 - p) / p * total + ((x[l_] - x[s]) / l_ + x[s] / s) * p ** l_
    return float(min(max(value, 0.0), 1.0))


def rank_moves(left: Sequence, right: Sequence, k: int = 10) -> list[dict[str, Any]]:
    """Items of either top ``k`` with their 1-based rank left and right (None = not in top k).

    Sorted by left rank, then items only on the right by right rank — the
    rows of a slope chart.
    """
    la, lb = [str(i) for i in list(left)[:k]], [str(i) for i in list(right)[:k]]
    ra = {item: n + 1 for n, item in enumerate(la)}
    rb = {item: n + 1 for n, item in enumerate(lb)}
    rows = []
    for item in la + [i for i in lb if i not in ra]:
        l_, r = ra.get(item), rb.get(item)
        move = (l_ - r) if (l_ is not None and r is not None) else None
        rows.append({"item_id": item, "left": l_, "right": r, "move": move})
    return rows


@dataclass
class Comparison:
    """Two or more runs of the same suite compared with the first (the baseline)."""

    metric: str
    runs: list[SuiteRun]
    rows: list[dict[str, Any]]
    pairs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.runs]

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "suite": self.runs[0].suite if self.runs else "",
                "systems": [{"label": r.label, "config": r.config, "mean": r.mean} for r in self.runs],
                "pairs": self.pairs, "queries": self.rows}


def compare_runs(runs: Sequence[SuiteRun], metric: Optional[str] = None, *, method: str = "randomization",
                 n_resamples: int = 10000, rbo_p: float = 0.9, eps: float = 1e-9) -> Comparison:
    """Compare ``runs[1:]`` with ``runs[0]`` query by query.

    Returns
    -------
    Comparison
        ``rows``: per query the value of ``metric`` per system, the delta of
        each system against the baseline, Jaccard@k and RBO of its list with
        the baseline's; ``pairs``: per system its wins/losses/ties and paired
        test over the queries scored by both.
    """
    if len(runs) < 2:
        raise ValueError("compare needs at least two runs")
    metric = metric or f"ndcg@{NDCG_K}"
    base = runs[0]
    k = base.k
    maps = [r.by_query() for r in runs]
    rows = []
    for q in [qr.query for qr in base.queries]:
        row: dict[str, Any] = {"query": q}
        results: list[Optional[QueryResult]] = [m.get(q) for m in maps]
        for r, res in zip(runs, results):
            row[r.label] = None if res is None else res.metrics.get(metric)
        for r, res in zip(runs[1:], results[1:]):
            b0 = results[0]
            v0, v1 = row[base.label], row[r.label]
            row[f"delta:{r.label}"] = None if v0 is None or v1 is None else v1 - v0
            if b0 is not None and res is not None:
                row[f"jaccard@{k}:{r.label}"] = jaccard_at_k(b0.items, res.items, k)
                row[f"rbo:{r.label}"] = rbo(b0.items[:k], res.items[:k], rbo_p)
        rows.append(row)
    pairs = []
    for r in runs[1:]:
        both = [row for row in rows if row[base.label] is not None and row[r.label] is not None]
        a = [row[base.label] for row in both]
        b = [row[r.label] for row in both]
        test = paired_test(a, b, method=method, n_resamples=n_resamples)
        jac = [row[f"jaccard@{k}:{r.label}"] for row in rows if f"jaccard@{k}:{r.label}" in row]
        rb = [row[f"rbo:{r.label}"] for row in rows if f"rbo:{r.label}" in row]
        pairs.append({"baseline": base.label, "system": r.label, **wins_losses_ties(a, b, eps),
                      "test": test.to_dict(), f"mean_jaccard@{k}": float(np.mean(jac)) if jac else None,
                      "mean_rbo": float(np.mean(rb)) if rb else None})
    return Comparison(metric, list(runs), rows, pairs)


# ------------------------------------------------------------- snapshots
def save_snapshot(db, run: SuiteRun, suite_id: int, name: str = "", extra: Optional[dict[str, Any]] = None) -> int:
    """Store a run's top-k lists and per-query metrics (``extra`` goes into its config); returns the snapshot id."""
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    results = {q.query: {"items": q.items[:max(run.k, NDCG_K)], "metrics": q.metrics} for q in run.queries}
    with db.conn:
        cur = db.execute(
            "INSERT INTO snapshots(suite_id, name, created, k, config, results) VALUES (?, ?, ?, ?, ?, ?)",
            [suite_id, name or f"{run.label} {created}", created, run.k,
             json.dumps({"label": run.label, **run.config, "mean": run.mean, **(extra or {})}),
             json.dumps(results)])
    return int(cur.lastrowid)


def rename_snapshot(db, snapshot_id: int, name: str) -> None:
    """Give snapshot ``snapshot_id`` the name ``name``."""
    with db.conn:
        db.execute("UPDATE snapshots SET name = ? WHERE snapshot_id = ?", [name, int(snapshot_id)])


def list_snapshots(db, suite_id: Optional[int] = None) -> list[dict[str, Any]]:
    """``{snapshot_id, suite_id, name, created, k}`` per snapshot, newest first."""
    sql = "SELECT snapshot_id, suite_id, name, created, k FROM snapshots"
    args: list = []
    if suite_id is not None:
        sql += " WHERE suite_id = ?"
        args.append(suite_id)
    rows = db.execute(sql + " ORDER BY snapshot_id DESC", args).fetchall()
    return [dict(zip(("snapshot_id", "suite_id", "name", "created", "k"), r)) for r in rows]


def load_snapshot(db, snapshot_id: int) -> dict[str, Any]:
    """A snapshot as ``{snapshot_id, name, created, k, config, results}`` (KeyError if missing)."""
    row = db.execute("SELECT snapshot_id, suite_id, name, created, k, config, results FROM snapshots "
                     "WHERE snapshot_id = ?", [int(snapshot_id)]).fetchone()
    if row is None:
        raise KeyError(f"no snapshot with id {snapshot_id}")
    return {"snapshot_id": row[0], "suite_id": row[1], "name": row[2], "created": row[3], "k": row[4],
            "config": json.loads(row[5] or "{}"), "results": json.loads(row[6] or "{}")}


def diff_snapshot(snapshot: dict[str, Any], run: SuiteRun, *, metric: Optional[str] = None,
                  threshold: float = 0.05, rbo_p: float = 0.9) -> dict[str, Any]:
    """Compare a new run with a snapshot; queries whose ``metric`` fell by more than ``threshold`` regress.

    Returns
    -------
    dict
        ``{"metric", "threshold", "rows": [{query, before, after, delta, jaccard@k, rbo,
        regression}], "regressions": [query, ...], "improvements": int, "changed_lists": int}``.
    """
    after = {q.query: {"items": q.items, "metrics": q.metrics} for q in run.queries}
    return _diff_results(snapshot, after, run.k, metric=metric, threshold=threshold, rbo_p=rbo_p)


def diff_snapshots(before: dict[str, Any], after: dict[str, Any], *, metric: Optional[str] = None,
                   threshold: float = 0.05, rbo_p: float = 0.9) -> dict[str, Any]:
    """:func:`diff_snapshot` between two kept snapshots (``after`` plays the new run)."""
    out = _diff_results(before, after["results"], int(after.get("k") or NDCG_K), metric=metric,
                        threshold=threshold, rbo_p=rbo_p)
    out["after"] = after.get("name")
    return out


def _diff_results(snapshot: dict[str, Any], after: dict[str, dict], k: int, *, metric: Optional[str],
                  threshold: float, rbo_p: float) -> dict[str, Any]:
    metric = metric or f"ndcg@{NDCG_K}"
    old = snapshot["results"]
    rows, regressions, improved, changed = [], [], 0, 0
    for query, now in after.items():
        before = old.get(query)
        b_val = None if before is None else before["metrics"].get(metric)
        a_val = now["metrics"].get(metric)
        delta = None if a_val is None or b_val is None else a_val - b_val
        reg = delta is not None and delta < -threshold
        row = {"query": query, "before": b_val, "after": a_val, "delta": delta, "regression": reg}
        if before is not None:
            row[f"jaccard@{k}"] = jaccard_at_k(before["items"], now["items"], k)
            row["rbo"] = rbo(before["items"][:k], now["items"][:k], rbo_p)
            changed += before["items"][:k] != now["items"][:k]
        rows.append(row)
        if reg:
            regressions.append(query)
        elif delta is not None and delta > threshold:
            improved += 1
    rows.sort(key=lambda r: (r["delta"] is None, r["delta"] if r["delta"] is not None else 0.0))
    return {"metric": metric, "threshold": threshold, "snapshot": snapshot.get("name"), "rows": rows,
            "regressions": regressions, "improvements": improved, "changed_lists": changed,
            "missing_in_snapshot": [q for q in after if q not in old]}

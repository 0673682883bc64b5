"""Choose the CF fusion weight ``w_cf`` on personalised known-item queries from behaviour.

``benchmarks/tune_weights.py`` chose lex/text/pop on anonymous queries, where
the CF component is 0, so it says nothing about ``w_cf``.  Here every query
has a user:

* a time split (default 2011-09-01, the one the quality models are trained
  with); the model's history is rebuilt *as of* the split
  (``HybridModel.with_history``) and popularity is counted before the split,
  so nothing the user did after the split leaks into the scores;
* the queries are
  :func:`merch_app.evaluation.known_items.make_personal_queries`: distinct
  test-period purchases of users the model knows and who bought something
  before the split (at most ``per_user`` per user), a query made from the
  bought item's title (kinds drop / reorder / misspell / synonym in turn),
  ranked *as that user*; relevance: the bought item 3, items with the same
  key noun 1; ``repeat`` marks re-orders of an item bought before the split;
* the raw components of every candidate are scored once per query, so the
  grid over ``w_cf`` (lex/text/pop at their defaults) is cheap; ``w_cf`` is
  chosen on the ``tune`` half and reported on the ``test`` half with a
  paired randomisation test per query (docs/quality.md, "w_cf").

Usage (from the repository root)::

    .venv/bin/python benchmarks/tune_cf_weight.py WORKSPACE [--split 2011-09-01] [--model ID] [--pairs 600]
        [--seed 7] [--out results.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchlib import machine_info  # noqa: E402  (puts the repository on sys.path)

from merch_app.data.workspace import open_workspace  # noqa: E402
from merch_app.evaluation.compare import paired_test  # noqa: E402
from merch_app.evaluation.known_items import PersonalQuery, make_personal_queries, score_ranking  # noqa: E402
from merch_app.model.bundle import load_bundle  # noqa: E402
from merch_app.model.interactions import Interactions, load_interactions, ts_to_days  # noqa: E402
from merch_app.ranking.ranker import Ranker  # noqa: E402
from merch_app.ranking.types import DEFAULT_WEIGHTS, RankRequest  # noqa: E402

CF_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8)
POP_GRID = (0.0, 0.05, 0.1, 0.2)


@dataclass
class PersonalFeatures:
    """Raw components of every candidate of one personalised query."""

    query: PersonalQuery
    item_ids: list[str]
    lexical: np.ndarray
    text: np.ndarray
    cf: np.ndarray
    popularity: np.ndarray


def personal_features(ranker: Ranker, q: PersonalQuery, candidates: int = 300) -> PersonalFeatures:
    """Score the candidates of ``q`` as ``q.user`` once (the union does not depend on weights).

    Parameters
    ----------
    ranker
        The ranker (as of the split, see :func:`as_of_split_ranker`).
    q
        The personalised query.
    candidates
        Candidates per retriever.

    Returns
    -------
    PersonalFeatures
        Raw lexical/text/CF/popularity per candidate.
    """
    sc = ranker.score_candidates(RankRequest(query=q.text, user_id=q.user, candidates=candidates))
    ids = [str(ranker.catalog.item_ids[p]) for p in sc.positions.tolist()]
    return PersonalFeatures(q, ids, sc.raw["lexical"], sc.raw["text"], sc.raw["cf"], sc.raw["popularity"])


def fused(f: PersonalFeatures, w_cf: float, w_lex: float = DEFAULT_WEIGHTS["lex"],
          w_text: float = DEFAULT_WEIGHTS["text"], w_pop: float = DEFAULT_WEIGHTS["pop"]) -> list[str]:
    """Top 10 item ids of ``f`` under the given weights (ties keep candidate order).

    Parameters
    ----------
    f
        Features of one query.
    w_cf, w_lex, w_text, w_pop
        Fusion weights (all but ``w_cf`` default to the app's defaults).

    Returns
    -------
    list of str
        Item ids, best first.
    """
    s = w_lex * f.lexical + w_text * f.text + w_cf * f.cf + w_pop * f.popularity
    return [f.item_ids[i] for i in np.argsort(-s, kind="stable")[:10]]


def per_query(features: list[PersonalFeatures], **weights: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-query nDCG@10 and RR@10 under ``weights`` (keywords of :func:`fused`).

    Returns
    -------
    ndcg, rr : numpy.ndarray
        One value per query, in the order of ``features``.
    """
    nd, rr = [], []
    for f in features:
        m = score_ranking(f.query, fused(f, **weights), 10)
        nd.append(m["ndcg"])
        rr.append(m["rr"])
    return np.asarray(nd, dtype=float), np.asarray(rr, dtype=float)


def summary(features: list[PersonalFeatures], **weights: float) -> dict[str, float]:
    """Mean nDCG@10 (with a 95 % normal interval half-width) and MRR@10 under ``weights``.

    Returns
    -------
    dict
        ``n``, ``ndcg@10``, ``mrr@10``, ``ndcg_ci95`` (all 0 without queries).
    """
    nd, rr = per_query(features, **weights)
    n = len(nd)
    return {"n": n, "ndcg@10": float(nd.mean()) if n else 0.0, "mrr@10": float(rr.mean()) if n else 0.0,
            "ndcg_ci95": float(1.96 * nd.std() / np.sqrt(n)) if n else 0.0}


def best_cf(features: list[PersonalFeatures], grid: Sequence[float] = CF_GRID,
            **fixed: float) -> tuple[float, list[dict[str, float]]]:
    """The ``w_cf`` of ``grid`` with the highest mean nDCG@10 (ties: the smaller weight).

    Parameters
    ----------
    features
        Features of the queries to tune on.
    grid
        Candidate values of ``w_cf``.
    **fixed
        Other weights passed to :func:`fused`.

    Returns
    -------
    best : float
        The chosen ``w_cf``.
    table : list of dict
        ``cf`` and :func:`summary` per grid value.
    """
    table = [{"cf": float(w), **summary(features, w_cf=float(w), **fixed)} for w in grid]
    best = max(table, key=lambda r: (round(r["ndcg@10"], 6), -r["cf"]))
    return best["cf"], table


def run(features: list[PersonalFeatures], grid: Sequence[float] = CF_GRID,
        pop_grid: Sequence[float] = POP_GRID) -> dict[str, Any]:
    """Grid on the tune half, report on the test half (whole and repeat/new), paired tests.

    Parameters
    ----------
    features
        Features of all queries (split by ``query.half``).
    grid
        Values of ``w_cf``.
    pop_grid
        Values of ``w_pop`` for the joint ``(w_pop, w_cf)`` grid.

    Returns
    -------
    dict
        Set sizes, ``best_cf_tune``, ``grid`` (tune and test subsets per
        ``w_cf``), ``paired`` (best vs 0, default vs 0, best vs default per
        subset), ``joint`` and ``joint_best``.
    """
    tune = [f for f in features if f.query.half == "tune"]
    test = [f for f in features if f.query.half == "test"]
    best, tune_table = best_cf(tune, grid)
    subsets = {"all": test, "repeat": [f for f in test if f.query.repeat],
               "new": [f for f in test if not f.query.repeat]}
    rows = []
    for w in grid:
        row = {"cf": float(w), "tune": next(r for r in tune_table if r["cf"] == float(w))}
        for name, fs in subsets.items():
            row[name] = summary(fs, w_cf=float(w))
        rows.append(row)
    tests = {}
    for name, fs in subsets.items():
        base = per_query(fs, w_cf=0.0)[0]
        for label, w in (("best_vs_0", best), ("default_vs_0", DEFAULT_WEIGHTS["cf"]),
                         ("best_vs_default", None)):
            a = base if w is not None else per_query(fs, w_cf=DEFAULT_WEIGHTS["cf"])[0]
            b = per_query(fs, w_cf=best if w is None else w)[0]
            t = paired_test(a, b, seed=0)
            tests.setdefault(name, {})[label] = {
                "n": t.n, "mean_a": t.mean_a, "mean_b": t.mean_b, "delta": t.mean_delta,
                "p": t.p_value, "ci": list(t.ci_delta),
                "wins": int(np.sum(b > a + 1e-9)), "losses": int(np.sum(b < a - 1e-9))}
    joint = []
    for w_pop in pop_grid:
        for w in grid:
            joint.append({"pop": float(w_pop), "cf": float(w),
                          "tune": summary(tune, w_cf=float(w), w_pop=float(w_pop))["ndcg@10"],
                          "test": summary(test, w_cf=float(w), w_pop=float(w_pop))["ndcg@10"]})
    joint_best = max(joint, key=lambda r: (round(r["tune"], 6), -r["cf"], -r["pop"]))
    return {"queries": len(features), "tune": len(tune), "test": len(test),
            "test_repeat": len(subsets["repeat"]), "test_new": len(subsets["new"]),
            "best_cf_tune": best, "grid": rows, "paired": tests, "joint": joint, "joint_best": joint_best}


def as_of_split_ranker(db, split_ts: str, model_id: Optional[str] = None) -> tuple[Ranker, Interactions]:
    """A Ranker whose CF history and popularity are those of ``split_ts`` (no test-period leakage).

    Parameters
    ----------
    db
        Workspace with a trained model.
    split_ts
        ISO time of the split.
    model_id
        Model version (None: the active one).

    Returns
    -------
    ranker : Ranker
        Over the model bundle with history and popularity as of the split.
    train : Interactions
        The interactions before the split.
    """
    bundle = load_bundle(db, model_id)
    model = bundle.model
    train = load_interactions(db, model.item_ids, until_ts=split_ts, user_ids=model.user_ids)
    bundle.model = model.with_history(train, float(ts_to_days([split_ts])[0]))
    pos = {str(i): n for n, i in enumerate(bundle.item_ids)}
    counts = np.zeros(len(pos))
    for item_id, c in db.execute("SELECT item_id, count(*) FROM events WHERE item_id IS NOT NULL "
                                 "AND event_type != 'search' AND ts < ? GROUP BY item_id", (split_ts,)):
        if str(item_id) in pos:
            counts[pos[str(item_id)]] = c
    pop = np.log1p(counts)
    bundle.popularity = (pop / pop.max() if pop.max() > 0 else pop).astype(np.float32)
    return Ranker(db, bundle), train


def main(argv: Optional[list[str]] = None) -> None:
    """Command line: see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workspace")
    ap.add_argument("--split", default="2011-09-01")
    ap.add_argument("--model", default=None, help="model id (default: the active one)")
    ap.add_argument("--pairs", type=int, default=600)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    db = open_workspace(args.workspace)
    split_ts = args.split + "T00:00:00Z"
    ranker, train = as_of_split_ranker(db, split_ts, args.model)
    seen = {str(train.user_ids[u]) for u in np.unique(train.user_idx)}
    queries = make_personal_queries(db, sorted(seen), split_ts, args.pairs, args.seed,
                                    item_ids=ranker.catalog.item_ids)
    feats = []
    for i, q in enumerate(queries):
        feats.append(personal_features(ranker, q))
        if i % 100 == 0:
            print(f"  {i}/{len(queries)} queries", flush=True)
    report = run(feats)
    report.update(model_id=ranker.bundle.version.model_id if ranker.bundle.version else None,
                  split=split_ts, seed=args.seed, seconds=time.perf_counter() - t0,
                  examples=[{"kind": f.query.kind, "query": f.query.text, "user": f.query.user,
                             "target": f.query.target, "repeat": f.query.repeat} for f in feats[:8]],
                  machine=machine_info())
    print(json.dumps({k: v for k, v in report.items() if k != "joint"}, indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()

"""Choose the fusion weights lex/text/pop on anonymous known-item queries from behaviour.

The judged set is :func:`merch_app.evaluation.known_items.make_known_item_queries`
(queries made from the titles of purchased items, four kinds, graded
relevance, tune/test halves by a hash of the query id).  The raw components
of every candidate are scored once per query, then ``(w_lex, w_text, w_pop)``
with ``w_lex + w_text = 1`` is grid-searched on the ``tune`` half and the
systems are reported on the ``test`` half (docs/quality.md, "Judged set").

Usage (from the repository root)::

    .venv/bin/python benchmarks/tune_weights.py WORKSPACE [--queries 800] [--seed 7] [--model ID]
        [--encoder SPEC] [--literal] [--out results.json]

The workspace must hold the imported catalogue and purchases.  Items are
ranked with the workspace's bundle (:func:`merch_app.model.bundle.load_bundle`):
the active (or ``--model``) version, whose CF part is 0 for these anonymous
queries, or text only when no model is trained; item vectors come from the
encoder's embedding cache (see ``merch-app encode``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchlib import machine_info  # noqa: E402  (puts the repository on sys.path)

from merch_app.data.workspace import open_workspace  # noqa: E402
from merch_app.evaluation.known_items import KINDS, JudgedQuery, make_known_item_queries, score_ranking  # noqa: E402
from merch_app.model.bundle import load_bundle  # noqa: E402
from merch_app.ranking.ranker import Ranker  # noqa: E402
from merch_app.ranking.types import RankRequest  # noqa: E402

LEX_GRID = tuple(float(w) for w in np.round(np.arange(0.0, 1.01, 0.1), 2))
POP_GRID = (0.0, 0.02, 0.05, 0.1, 0.2)


@dataclass
class QueryFeatures:
    """Raw components of every candidate of one query, reusable for any weights."""

    query: JudgedQuery
    item_ids: list[str]
    lexical: np.ndarray
    text: np.ndarray
    popularity: np.ndarray
    lexical_only: list[str]
    semantic_only: list[str]


def query_features(ranker: Ranker, q: JudgedQuery, candidates: int = 300, literal: bool = False) -> QueryFeatures:
    """Score the candidate union of ``q`` once (weights do not change the union).

    Parameters
    ----------
    ranker
        The ranker (its bundle gives text vectors and popularity).
    q
        The judged query.
    candidates
        Candidates per retriever.
    literal
        Rank the query as typed (no spelling correction).

    Returns
    -------
    QueryFeatures
        Raw lexical/text/popularity per candidate, and the lexical-only and
        semantic-only orders of the candidates each retriever found.
    """
    sc = ranker.score_candidates(RankRequest(query=q.text, candidates=candidates, literal=literal))
    ids = [ranker.catalog.item_ids[p] for p in sc.positions.tolist()]
    lex_idx = [i for i in range(len(ids)) if "lexical" in sc.sources.get(i, ())]
    sem_idx = [i for i in range(len(ids)) if "semantic" in sc.sources.get(i, ())]
    lex_only = [ids[i] for i in sorted(lex_idx, key=lambda i: -sc.raw["lexical"][i])]
    sem_only = [ids[i] for i in sorted(sem_idx, key=lambda i: -sc.raw["text"][i])]
    return QueryFeatures(q, ids, sc.raw["lexical"], sc.raw["text"], sc.raw["popularity"],
                         lex_only, sem_only)


def fused_ranking(f: QueryFeatures, w_lex: float, w_text: float, w_pop: float) -> list[str]:
    """Top 10 item ids of ``f`` under the given weights (ties keep candidate order).

    Parameters
    ----------
    f
        Features of one query.
    w_lex, w_text, w_pop
        Fusion weights.

    Returns
    -------
    list of str
        Item ids, best first.
    """
    s = w_lex * f.lexical + w_text * f.text + w_pop * f.popularity
    top = np.argsort(-s, kind="stable")[:10]
    return [f.item_ids[i] for i in top]


def evaluate(features: list[QueryFeatures], system: Callable[[QueryFeatures], list[str]]) -> dict[str, Any]:
    """Mean nDCG@10, MRR@10 and hit@10 of ``system(features) -> ranked ids``.

    Parameters
    ----------
    features
        Features of the queries.
    system
        Ranks one query.

    Returns
    -------
    dict
        ``ndcg@10``, ``ndcg_ci95`` (95 % normal interval half-width),
        ``mrr@10``, ``hit@10``, ``n`` and ``per_query`` (nDCG@10 per query).
    """
    nd, rr, hit = [], [], []
    for f in features:
        m = score_ranking(f.query, system(f), 10)
        nd.append(m["ndcg"])
        rr.append(m["rr"])
        hit.append(m["hit"])
    n = max(len(nd), 1)
    ci = 1.96 * float(np.std(nd)) / math.sqrt(n) if nd else 0.0
    return {"ndcg@10": float(np.mean(nd)) if nd else 0.0, "ndcg_ci95": ci,
            "mrr@10": float(np.mean(rr)) if rr else 0.0, "hit@10": float(np.mean(hit)) if hit else 0.0,
            "n": len(nd), "per_query": nd}


def grid_search(features: list[QueryFeatures]) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Best ``(w_lex, w_text, w_pop)`` on ``features`` with ``w_lex + w_text = 1``.

    Parameters
    ----------
    features
        Features of the tune queries.

    Returns
    -------
    best : dict
        ``lex, text, pop, ndcg@10`` of the best point (ties: the smaller pop).
    table : list of dict
        Every grid point, ``w_lex`` of :data:`LEX_GRID` by ``w_pop`` of :data:`POP_GRID`.
    """
    table = []
    for w_lex in LEX_GRID:
        for w_pop in POP_GRID:
            w_text = round(1.0 - w_lex, 2)
            m = evaluate(features, lambda f: fused_ranking(f, w_lex, w_text, w_pop))
            table.append({"lex": w_lex, "text": w_text, "pop": w_pop, "ndcg@10": m["ndcg@10"]})
    best = max(table, key=lambda r: (round(r["ndcg@10"], 6), -r["pop"]))
    return best, table


def run(db, ranker: Ranker, n_queries: int = 800, seed: int = 7,
        progress: Optional[Callable[[int, int], None]] = None, literal: bool = False) -> dict[str, Any]:
    """Build the judged set, grid-search on the tune half, report on the test half.

    Parameters
    ----------
    db
        The workspace.
    ranker
        Ranker over the workspace.
    n_queries
        Size of the judged set.
    seed
        Seed of the judged set.
    progress
        ``progress(done, total)`` every 50 queries.
    literal
        Rank the queries as typed (no spelling correction).

    Returns
    -------
    dict
        Set sizes, ``best`` and ``grid``, ``systems`` (tune and test metrics),
        ``by_kind`` (test), ``fusion_vs_lexical_test`` win/loss/tie counts,
        ``per_query_default_test`` (qid -> [kind, nDCG@10] at the default weights, for paired tests),
        ``examples`` and ``seconds``.
    """
    t0 = time.perf_counter()
    queries = make_known_item_queries(db, n_queries, seed)
    feats = []
    for i, q in enumerate(queries):
        feats.append(query_features(ranker, q, literal=literal))
        if progress and i % 50 == 0:
            progress(i, len(queries))
    tune = [f for f in feats if f.query.half == "tune"]
    test = [f for f in feats if f.query.half == "test"]
    best, table = grid_search(tune)
    systems = {
        "lexical only (BM25)": lambda f: f.lexical_only[:10],
        "semantic only (MiniLM)": lambda f: f.semantic_only[:10],
        "fusion lex+text (tuned)": lambda f: fused_ranking(f, best["lex"], best["text"], 0.0),
        "fusion lex+text+pop (tuned)": lambda f: fused_ranking(f, best["lex"], best["text"], best["pop"]),
    }
    report: dict[str, Any] = {"queries": len(queries), "tune": len(tune), "test": len(test),
                              "best": best, "grid": table, "systems": {}, "by_kind": {}}
    for name, system in systems.items():
        for half, fs in (("tune", tune), ("test", test)):
            m = evaluate(fs, system)
            m.pop("per_query")
            report["systems"].setdefault(name, {})[half] = m
        for kind in KINDS:
            m = evaluate([f for f in test if f.query.kind == kind], system)
            m.pop("per_query")
            report["by_kind"].setdefault(name, {})[kind] = m
    lex = evaluate(test, systems["lexical only (BM25)"])["per_query"]
    fus = evaluate(test, systems["fusion lex+text+pop (tuned)"])["per_query"]
    report["fusion_vs_lexical_test"] = {
        "wins": int(sum(b > a + 1e-9 for a, b in zip(lex, fus))),
        "losses": int(sum(b < a - 1e-9 for a, b in zip(lex, fus))),
        "ties": int(sum(abs(a - b) <= 1e-9 for a, b in zip(lex, fus)))}
    default = evaluate(test, lambda f: fused_ranking(f, 0.5, 0.5, 0.1))["per_query"]
    report["per_query_default_test"] = {f.query.qid: [f.query.kind, nd] for f, nd in zip(test, default)}
    report["examples"] = [{"kind": f.query.kind, "query": f.query.text, "target": f.query.target}
                          for f in feats[:12]]
    report["seconds"] = time.perf_counter() - t0
    return report


def main(argv: Optional[list[str]] = None) -> None:
    """Command line: see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workspace")
    ap.add_argument("--queries", type=int, default=800)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--model", default=None, help="model id (default: the active one; text only without)")
    ap.add_argument("--encoder", default=None,
                    help="encoder spec (default: the model's own; MiniLM when ranking by text only)")
    ap.add_argument("--literal", action="store_true", help="rank the queries as typed (no spelling correction)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    db = open_workspace(args.workspace)
    ranker = Ranker(db, load_bundle(db, args.model, args.encoder))
    report = run(db, ranker, args.queries, args.seed,
                 progress=lambda i, n: print(f"  {i}/{n} queries", flush=True), literal=args.literal)
    report["machine"] = machine_info()
    print(json.dumps({k: v for k, v in report.items() if k != "grid"}, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()

"""Spelling correction on the known-item set: one best word against weighted alternatives, in one run.

The judged set and the scoring are those of ``benchmarks/tune_weights.py``
(:func:`merch_app.evaluation.known_items.make_known_item_queries`, seed 7,
800 queries, tune/test halves by a hash of the query id).  Each system ranks
every query with its own :class:`merch_app.ranking.spelling.Speller` on the
same workspace and bundle:

* ``one word``: the best correction only, no search-log words (the corrector
  before weighted alternatives);
* ``alternatives``: up to three weighted alternatives, no search-log words;
* ``alternatives + log``: the default corrector (alternatives and the
  workspace's search-log words; the same as ``alternatives`` without a log).

Reported on the test half at the default weights (lex 0.5, text 0.5, pop
0.1) per query kind, with a paired randomisation test (10,000 sign flips,
:func:`merch_app.evaluation.compare.paired_test`) of each system against
``one word``.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_spelling.py WORKSPACE [WORKSPACE ...] [--queries 800] [--seed 7]
        [--out results.json]

Each workspace must hold the imported catalogue and purchases and the item
vectors (``merch-app encode``); a second workspace with a search log imported
(``benchmarks/synth_search_log.py``) shows what the log words add.  Numbers go
to docs/quality.md by hand.

``--latency 100000`` times misspelt queries instead, on the synthetic
catalogue of ``benchmarks/bench_query.py`` (its workspace, copied twice so
that each system encodes every query itself): its distinct queries with one
word of 4+ letters misspelt (a letter dropped, swapped or replaced), kept when
the corrector changes them, ranked end to end (top 50) by ``one word`` and
``alternatives`` in turn (which goes first alternates).  Goal as for every
query: p99 <= 30 ms at 100k items.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchlib import machine_info  # noqa: E402  (puts the repository on sys.path)
from tune_weights import run  # noqa: E402

from merch_app.data.spell_vocab import load_log_words  # noqa: E402
from merch_app.data.workspace import open_workspace  # noqa: E402
from merch_app.evaluation.compare import paired_test  # noqa: E402
from merch_app.evaluation.known_items import KINDS, misspell  # noqa: E402
from merch_app.model.bundle import load_bundle  # noqa: E402
from merch_app.ranking.ranker import Ranker  # noqa: E402
from merch_app.ranking.spelling import MAX_ALTERNATIVES, Speller  # noqa: E402

SYSTEMS = {"one word": (1, False), "alternatives": (MAX_ALTERNATIVES, False),
           "alternatives + log": (MAX_ALTERNATIVES, True)}


def ranker_with(db, bundle, alternatives: int, search_log: bool) -> Ranker:
    """A fresh ranker (empty caches) whose corrector offers ``alternatives`` words per misspelt one."""
    ranker = Ranker(db, bundle)
    lexical = ranker.lexical
    lexical.speller = Speller(db, stored=lambda: lexical.term_tops is not None, alternatives=alternatives,
                              search_log=search_log)
    return ranker


def by_kind(per_query: dict[str, list]) -> dict[str, float]:
    """Mean nDCG@10 per kind and over all queries of ``{qid: [kind, ndcg]}``."""
    out = {k: float(np.mean([v[1] for v in per_query.values() if v[0] == k])) for k in KINDS}
    out["all"] = float(np.mean([v[1] for v in per_query.values()]))
    return out


def compare_workspace(path: Path, n_queries: int, seed: int) -> dict[str, Any]:
    """Every system of :data:`SYSTEMS` on one workspace, paired against ``one word``."""
    db = open_workspace(path)
    bundle = load_bundle(db)
    has_log = bool(load_log_words(db))
    result: dict[str, Any] = {"workspace": str(path), "search_log_words": len(load_log_words(db)), "systems": {}}
    runs = {}
    for name, (alternatives, search_log) in SYSTEMS.items():
        if search_log and not has_log:
            continue
        t0 = time.perf_counter()
        report = run(db, ranker_with(db, bundle, alternatives, search_log), n_queries, seed)
        runs[name] = report["per_query_default_test"]
        result["systems"][name] = {"default_test": by_kind(runs[name]), "best_tune": report["best"],
                                   "seconds": time.perf_counter() - t0}
    base = runs["one word"]
    for name, per_query in runs.items():
        if name == "one word":
            continue
        tests = {}
        for kind in (*KINDS, "all"):
            ids = [q for q in base if kind == "all" or base[q][0] == kind]
            a, b = [base[q][1] for q in ids], [per_query[q][1] for q in ids]
            t = paired_test(a, b, n_resamples=10000, seed=0)
            tests[kind] = {"n": len(ids), "delta": t.mean_delta, "p": t.p_value,
                           "wins": int(sum(y > x + 1e-9 for x, y in zip(a, b))),
                           "losses": int(sum(y < x - 1e-9 for x, y in zip(a, b)))}
        result["systems"][name]["vs_one_word"] = tests
    db.close()
    return result


def misspelt_latency(n: int, n_queries: int, seed: int = 11) -> dict[str, Any]:
    """End-to-end latency of misspelt queries with ``one word`` and ``alternatives`` (see the docstring)."""
    from bench_query import K, build_workspace, make_queries, single_thread, unit_vectors

    from merch_app.model.bundle import ModelBundle
    from merch_app.model.encoder import load_encoder
    from merch_app.model.vector_index import VectorIndex
    from merch_app.ranking.types import RankRequest

    single_thread()
    encoder = load_encoder("minilm")
    encoder.encode(["warm up the encoder"])
    rng = np.random.default_rng(seed)
    source = build_workspace(n, rng)
    tmp = Path(tempfile.mkdtemp(prefix="bench_spelling_"))
    rankers, dbs = {}, []
    vectors = unit_vectors(n, rng)
    index = VectorIndex.from_vectors(vectors)
    pop = rng.random(n).astype(np.float32) ** 3
    for name in ("one word", "alternatives"):
        path = tmp / f"{name.replace(' ', '_')}.sqlite"
        shutil.copy(source, path)
        db = open_workspace(path)
        db.execute("DELETE FROM embeddings")  # query vectors of earlier runs: every query is encoded
        db.conn.commit()
        dbs.append(db)
        ids = np.array([r[0] for r in db.execute("SELECT item_id FROM items ORDER BY rowid")], dtype=object)
        bundle = ModelBundle(item_ids=ids, item_vectors=vectors, popularity=pop, encoder=encoder, index=index)
        rankers[name] = ranker_with(db, bundle, *SYSTEMS[name])
    qrng = np.random.default_rng(seed + 1)
    groups: dict[str, list[str]] = {"one alternative": [], "several alternatives": []}
    lexical = rankers["alternatives"].lexical
    for q in make_queries(400 * n_queries, np.random.default_rng(seed + n)):
        words = q.split()
        long = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
        if not long:
            continue
        i = int(qrng.choice(long))
        words[i] = misspell(words[i], qrng)  # the known-item set's typo
        text = " ".join(words) + " "  # finished words: the last one is not a prefix
        fixes = lexical.analyse(text).corrections
        if fixes:
            group = groups["several alternatives" if any(len(c.alternatives) > 1 for c in fixes)
                           else "one alternative"]
            if len(group) < n_queries and text not in group:
                group.append(text)
        if all(len(g) >= n_queries for g in groups.values()):
            break
    for r in rankers.values():  # warm-up, not timed
        r.rank(RankRequest(query="warm up mug ", k=K))
    out: dict[str, Any] = {"n": n}
    for group, queries in groups.items():
        times: dict[str, list[float]] = {name: [] for name in rankers}
        for j, q in enumerate(queries):
            for name in (("one word", "alternatives") if j % 2 == 0 else ("alternatives", "one word")):
                t = time.perf_counter()
                rankers[name].rank(RankRequest(query=q, k=K))
                times[name].append(time.perf_counter() - t)
        out[group] = {"queries": len(queries), "examples": queries[:5]}
        for name, ts in times.items():
            ms = np.asarray(ts) * 1000.0
            out[group][name] = {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
                                "max": float(ms.max())}
    for db in dbs:
        db.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: Optional[list[str]] = None) -> None:
    """Command line: see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workspaces", nargs="*", type=Path)
    ap.add_argument("--queries", type=int, default=800)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--latency", type=int, default=None, metavar="ITEMS",
                    help="time misspelt queries on the bench_query catalogue of this size instead")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.latency:
        out = {"machine": machine_info(), "latency": misspelt_latency(args.latency, 300)}
        print(json.dumps(out["latency"], indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=2))
        return
    out = {"machine": machine_info(), "queries": args.queries, "seed": args.seed,
           "workspaces": [compare_workspace(p, args.queries, args.seed) for p in args.workspaces]}
    for ws in out["workspaces"]:
        print(f"\n{ws['workspace']} (search-log words: {ws['search_log_words']})")
        print(f"{'system':<20}" + "".join(f"{k:>10}" for k in (*KINDS, "all")))
        for name, s in ws["systems"].items():
            print(f"{name:<20}" + "".join(f"{s['default_test'][k]:>10.3f}" for k in (*KINDS, "all")))
            for kind, t in s.get("vs_one_word", {}).items():
                print(f"    vs one word, {kind:<9} n={t['n']:<4} delta {t['delta']:+.3f}  p {t['p']:.3g}  "
                      f"wins/losses {t['wins']}/{t['losses']}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

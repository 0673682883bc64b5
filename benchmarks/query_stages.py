"""Where a search query's time goes: per-stage timers around one :class:`Ranker`.

Wraps (on the instances only, nothing in ``merch_app`` is changed) the stages of
``Ranker.rank`` for a search request:

* ``analyse``      ``LexicalSearcher.analyse`` (tokenise, document counts of the
                   terms, Han back-off, spelling correction); ``spelling`` and
                   ``doc_freq`` are the parts of it (and of later stages) spent in
                   ``Speller.correct`` and ``Fts5Stats.doc_freq`` cache misses;
* ``lexical``      ``LexicalSearcher.search`` (FTS5 / top lists);
* ``encode``       the query vector (``QueryVectorCache.get``);
* ``ann``          the vector index search;
* ``term_matrix``  per-term BM25 of the candidates (multi-word queries or a
                   truncated lexical list) and ``coverage``;
* ``matched``      ``Ranker._matched_terms`` (per-term BM25 of the shown top k);
* ``finish``       weighing, rules and ordering; ``other`` is the rest.

Usage::

    .venv/bin/python benchmarks/query_stages.py --workspace benchmarks/out/bench_query_100000.sqlite

(English synthetic queries as ``bench_query`` makes them; ``bench_search_zh``
imports :func:`profile_queries` for its Chinese ones).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import merch_app.ranking.ranker as ranker_mod  # noqa: E402
from merch_app.ranking.types import RankRequest  # noqa: E402

STAGES = ("analyse", "spelling", "doc_freq", "lexical", "encode", "ann", "term_matrix", "matched",
          "finish", "other", "total")


class StageTimer:
    """Accumulates seconds per stage label for the current query (outermost label wins)."""

    def __init__(self) -> None:
        self.cur: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._depth: list[str] = []

    def wrap(self, obj, name: str, label: str, nested: bool = False) -> None:
        """Time ``obj.name`` as ``label``; ``nested`` labels are counted inside their parents too."""
        fn = getattr(obj, name)

        def timed(*a, **k):
            if self._depth and not nested:
                return fn(*a, **k)  # counted in the enclosing stage
            self._depth.append(label)
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.cur[label] += time.perf_counter() - t
                self.calls[label] += 1
                self._depth.pop()

        setattr(obj, name, timed)

    def take(self) -> dict[str, float]:
        out = dict(self.cur)
        self.cur = defaultdict(float)
        return out


def instrument(ranker) -> StageTimer:
    """Install the timers on ``ranker`` (and the module-level vector search it calls)."""
    st = StageTimer()
    lex = ranker.lexical
    st.wrap(lex, "analyse", "analyse")
    st.wrap(lex, "search", "lexical")
    st.wrap(lex, "term_matrix", "term_matrix")
    st.wrap(lex, "coverage", "term_matrix")
    st.wrap(lex.speller, "correct", "spelling", nested=True)
    stats = lex.stats
    orig_df = stats.doc_freq

    def doc_freq(term, prefix):
        if (term, prefix) in stats._df:
            return orig_df(term, prefix)
        t = time.perf_counter()
        try:
            return orig_df(term, prefix)
        finally:
            st.cur["doc_freq"] += time.perf_counter() - t
            st.calls["doc_freq_miss"] += 1
            st.cur["doc_freq_miss"] += 1
            if prefix:
                st.cur["doc_freq_prefix_miss"] += 1

    stats.doc_freq = doc_freq
    st.wrap(ranker.queries, "get", "encode")
    st.wrap(ranker, "_matched_terms", "matched")
    st.wrap(ranker, "_finish", "finish")
    orig_search_index = ranker_mod.search_index

    def search_index(*a, **k):
        t = time.perf_counter()
        try:
            return orig_search_index(*a, **k)
        finally:
            st.cur["ann"] += time.perf_counter() - t

    ranker_mod.search_index = search_index
    return st


def profile_queries(ranker, queries: list[str], k: int = 50) -> list[dict[str, float]]:
    """Rank every query once (after instrumenting ``ranker``); per query the stage seconds."""
    st = instrument(ranker)
    rows = []
    for q in queries:
        t = time.perf_counter()
        ranker.rank(RankRequest(query=q, k=k))
        total = time.perf_counter() - t
        row = st.take()
        row["total"] = total
        row["other"] = total - sum(row.get(s, 0.0) for s in ("analyse", "lexical", "encode", "ann",
                                                                  "term_matrix", "matched", "finish"))
        row["query"] = q
        rows.append(row)
    return rows


def summarise(rows: list[dict], slow_share: float = 0.02) -> dict:
    """p50 / p99 per stage (ms) and the mean stage split of the slowest ``slow_share`` of queries."""
    out = {}
    for s in STAGES:
        v = np.array([r.get(s, 0.0) for r in rows]) * 1000
        out[s] = {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)),
                  "mean": float(v.mean()), "max": float(v.max())}
    n_slow = max(1, int(round(len(rows) * slow_share)))
    slow = sorted(rows, key=lambda r: -r["total"])[:n_slow]
    out["slowest"] = [{**{s: round(r.get(s, 0.0) * 1000, 1) for s in STAGES},
                       "doc_freq_misses": int(r.get("doc_freq_miss", 0)),
                       "prefix_misses": int(r.get("doc_freq_prefix_miss", 0)), "query": r["query"]}
                      for r in slow]
    return out


def print_summary(summary: dict) -> None:
    print(f"{'stage':12s} {'p50':>7s} {'p99':>7s} {'mean':>7s} {'max':>7s}  (ms)")
    for s in STAGES:
        v = summary[s]
        print(f"{s:12s} {v['p50']:7.2f} {v['p99']:7.2f} {v['mean']:7.2f} {v['max']:7.1f}")
    print("slowest queries:")
    for r in summary["slowest"]:
        print("  ", r)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--encoder", choices=("minilm", "hashing"), default="minilm")
    args = ap.parse_args(argv)
    import bench_query as bq
    from merch_app.data.workspace import open_workspace
    from merch_app.model.bundle import ModelBundle
    from merch_app.model.vector_index import VectorIndex
    from merch_app.ranking.ranker import Ranker

    bq.single_thread()
    if args.encoder == "minilm":
        from merch_app.model.encoder import load_encoder
        encoder = load_encoder("minilm")
    else:
        from synth_zh import HashingEncoder
        encoder = HashingEncoder()
    encoder.encode(["warm up"])
    db = open_workspace(Path(args.workspace))
    n = db.execute("SELECT count(*) FROM items").fetchone()[0]
    rng = np.random.default_rng(args.seed)
    ids = np.array([r[0] for r in db.execute("SELECT item_id FROM items ORDER BY rowid")], dtype=object)
    vectors = bq.unit_vectors(n, rng)
    bundle = ModelBundle(item_ids=ids, item_vectors=vectors, popularity=rng.random(n).astype(np.float32) ** 3,
                         encoder=encoder, index=VectorIndex.from_vectors(vectors))
    ranker = Ranker(db, bundle)
    queries = bq.make_queries(args.queries + 1, np.random.default_rng(args.seed + n))
    ranker.rank(RankRequest(query=queries[0], k=50))
    rows = profile_queries(ranker, queries[1:])
    print_summary(summarise(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

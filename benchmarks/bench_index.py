"""Vector index kinds at 100k and 1M items: speed, memory and agreement with exact search.

The item vectors are MiniLM-space vectors of a synthetic catalogue
(``synth_vectors.VectorComposer``: real all-MiniLM-L6-v2 vectors of the
vocabulary words, composed per item), the queries are 200 shopper queries
encoded by the real int8 encoder.  For every ``VectorIndex`` kind:

* build seconds and serialised size (what the model folder and RAM hold);
* single-query search latency for the ranker's 300 candidates (p50 / p99);
* agreement with exact search (numpy brute force, the reference):
  *recall@10 in 300* — the share of the exact top 10 among the index's
  300 candidates (the ranker then scores candidates with the exact vectors,
  so this is what decides the final list) — and *top-10 overlap* of the
  index's own top 10 with the exact top 10;
* for the IVF kinds, recall and latency against ``nprobe``.

Usage::

    .venv/bin/python benchmarks/bench_index.py [--sizes 100000,1000000] [--queries 200] [--no-write]

The result replaces the ``<!-- bench:index -->`` section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchlib import OUT, load_average, machine_info, machine_line, percentiles, write_section  # noqa: E402

CANDIDATES = 300
KINDS = ("flat", "ivf", "ivfsq8", "ivfpq", "sq8", "hnsw")
HNSW_MAX = 200_000  # HNSW builds take tens of minutes at 1M on two cores
NPROBES = (8, 16, 32, 64, 128)


def catalogue_vectors(n: int, encoder, seed: int = 7) -> np.ndarray:
    from synth_data import CATEGORIES, make_catalogue
    from synth_vectors import VectorComposer

    cat = make_catalogue(n, np.random.default_rng(seed))
    comp = VectorComposer(encoder)
    out = np.empty((n, comp.dim), np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        out[s:e] = comp.compose(list(cat["titles"][s:e]), [CATEGORIES[c] for c in cat["cat"][s:e]], seed + s)
    return out


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    sims = queries @ vectors.T
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def agreement(found: np.ndarray, truth10: np.ndarray) -> tuple[float, float]:
    """(recall of the exact top 10 within ``found``, overlap of found[:10] with it)."""
    rec = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth10, found)])
    top = np.mean([len(set(t) & set(f[:10])) / 10 for t, f in zip(truth10, found)])
    return float(rec), float(top)


def time_search(index, queries: np.ndarray) -> tuple[dict, np.ndarray]:
    found, times = [], []
    for q in queries:
        t = time.perf_counter()
        _s, idx = index.search(q[None, :], CANDIDATES)
        times.append(time.perf_counter() - t)
        found.append(idx[0])
    return percentiles(times), np.asarray(found)


def bench_size(n: int, encoder, n_queries: int, hnsw: bool) -> dict:
    import faiss

    from merch_app.model.vector_index import VectorIndex
    from scale_jobs import typed_queries

    t = time.perf_counter()
    vectors = catalogue_vectors(n, encoder)
    compose_s = time.perf_counter() - t
    queries = np.asarray(encoder.encode(typed_queries(n_queries, seed=23)), np.float32)
    t = time.perf_counter()
    truth = exact_top(vectors, queries, 10)
    brute = []
    for q in queries:
        t = time.perf_counter()
        sims = vectors @ q
        part = np.argpartition(-sims, CANDIDATES)[:CANDIDATES]
        _ = part[np.argsort(-sims[part])]
        brute.append(time.perf_counter() - t)
    rows = [{"kind": "numpy brute force", "build_s": 0.0, "mib": vectors.nbytes / 2**20,
             "lat": percentiles(brute), "recall": 1.0, "top10": 1.0}]
    sweep = []
    for kind in KINDS:
        if kind == "hnsw" and (n > HNSW_MAX and not hnsw):
            continue
        t = time.perf_counter()
        vi = VectorIndex.from_vectors(vectors, kind=kind)
        build_s = time.perf_counter() - t
        mib = len(faiss.serialize_index(vi.index)) / 2**20
        lat, found = time_search(vi, queries)
        rec, top = agreement(found, truth)
        extra = ""
        if kind in ("ivf", "ivfsq8", "ivfpq"):
            ivf = faiss.extract_index_ivf(vi.index)
            extra = f"nlist {ivf.nlist}, nprobe {ivf.nprobe}"
            default = ivf.nprobe
            for nprobe in NPROBES:
                if nprobe >= default:
                    continue
                ivf.nprobe = nprobe
                lat_p, found_p = time_search(vi, queries)
                rec_p, top_p = agreement(found_p, truth)
                sweep.append({"kind": kind, "nprobe": nprobe, "lat": lat_p, "recall": rec_p, "top10": top_p})
            ivf.nprobe = default
            sweep.append({"kind": kind, "nprobe": default, "lat": lat, "recall": rec, "top10": top})
        rows.append({"kind": kind, "build_s": build_s, "mib": mib, "lat": lat, "recall": rec, "top10": top,
                     "extra": extra})
        print(f"  {n:,} {kind}: build {build_s:.1f} s, {mib:.0f} MiB, p50 {lat['p50']:.2f} ms, "
              f"recall {rec:.3f}, top10 {top:.3f}", flush=True)
        del vi
    return {"n": n, "compose_s": compose_s, "rows": rows, "sweep": sweep, "load": load_average()}


def render(results: list[dict], machine: dict, n_queries: int) -> str:
    L = ["<!-- bench:index -->", "## Vector index kinds (`benchmarks/bench_index.py`)", "",
         f"MiniLM-space vectors of synthetic catalogues (384-d, composed from real all-MiniLM-L6-v2 word "
         f"vectors, `benchmarks/synth_vectors.py`), {n_queries} shopper queries encoded by the real int8 "
         f"encoder, one query at a time asking for the ranker's {CANDIDATES} candidates. Reference: numpy "
         f"brute force (exact). {machine_line(machine)}.", "",
         "Reproduce: `.venv/bin/python benchmarks/bench_index.py` (`--sizes 100000` for a quick run).", ""]
    for r in results:
        L += [f"**{r['n']:,} items** (load average {r['load']:.1f}):", "",
              "| kind | build s | size | search p50 / p99 ms | recall@10 in 300 | top-10 overlap | notes |",
              "|---|---:|---:|---:|---:|---:|---|"]
        for row in r["rows"]:
            size = f"{row['mib']:.0f} MiB" if row["mib"] >= 1 else f"{row['mib'] * 1024:.0f} KiB"
            L.append(f"| {row['kind']} | {row['build_s']:.1f} | {size} | {row['lat']['p50']:.2f} / "
                     f"{row['lat']['p99']:.2f} | {row['recall']:.3f} | {row['top10']:.3f} | {row.get('extra', '')} |")
        if r["sweep"]:
            L += ["", "nprobe against agreement (same queries):", "",
                  "| kind | nprobe | p50 / p99 ms | recall@10 in 300 | top-10 overlap |", "|---|---:|---:|---:|---:|"]
            for s in r["sweep"]:
                L.append(f"| {s['kind']} | {s['nprobe']} | {s['lat']['p50']:.2f} / {s['lat']['p99']:.2f} | "
                         f"{s['recall']:.3f} | {s['top10']:.3f} |")
        L.append("")
    L.append("<!-- /bench:index -->")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    from merch_app.model.encoder import load_encoder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--hnsw", action="store_true", help="also build HNSW above 200k items (slow)")
    ap.add_argument("--quick", action="store_true", help="100k items, 100 queries")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.queries = "100000", min(args.queries, 100)
    machine = machine_info()
    encoder = load_encoder("minilm", quantize="int8")
    results = [bench_size(int(s), encoder, args.queries, args.hnsw) for s in args.sizes.split(",")]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "index_results.json").write_text(json.dumps({"results": results, "machine": machine}, default=float))
    text = render(results, machine, args.queries)
    print(text)
    if not args.no_write:
        write_section("index", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

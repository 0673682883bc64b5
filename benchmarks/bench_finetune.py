"""Encoder fine-tuning on a noisy synthetic search log over the Online Retail catalogue: held-out before/after.

Protocol (seeded):

1. Workspace: the Online Retail demo subset (``resources/demo``; ``--full`` takes
   ``../shared/data/online_retail/online_retail.csv.gz``) imported with ``merch-app import``'s
   importer, then a search log from :mod:`synth_search_log` (``--sessions`` sessions, seed
   ``--log-seed``: shop vocabulary, dropped words, typos, 25 % searches without a click,
   20 % clicks on a wrong item, carts and purchases of the target) imported as events.
2. Split: the workspace's default 80 % time split (:func:`merch_app.evaluation.split.time_split`);
   fine-tuning reads only events before it (the job's own rule).
3. Judged test set: every search session from the split on, the query with its target graded 3
   (one query string = one test query, all its targets relevant); at most ``--max-test`` of them
   (seeded sample).  Queries also typed before the split are reported apart ("seen").
4. Systems, each with the frozen MiniLM and with the fine-tuned encoder: dense only (cosine over
   all items' text vectors) and the hybrid (:class:`merch_app.ranking.ranker.Ranker` over a text
   bundle ``load_bundle(db, encoder=...)``, default weights, no rules).  NDCG@10 and recall@50 per
   query; :func:`merch_app.evaluation.compare.paired_test` (randomisation, 10,000 resamples).
5. Fine-tuning: :func:`merch_app.services.finetune.finetune` with ``FinetuneConfig`` defaults
   (or the ``--set`` overrides), ``activate=False``, always from the packaged MiniLM; time and
   peak RSS measured in a child process per configuration.

Usage::

    python benchmarks/bench_finetune.py                      # defaults only
    python benchmarks/bench_finetune.py --sweep lr=1e-4 lr=2e-5 freeze_layers=0 epochs=2
    python benchmarks/bench_finetune.py --one '{"lr": 1e-4}'  # one child run (prints one JSON line)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import synth_search_log as ssl  # noqa: E402
from benchlib import machine_info, machine_line, peak_rss_mib  # noqa: E402

DEMO = ROOT / "resources" / "demo" / "online_retail_demo.csv.gz"
FULL = ROOT.parent / "shared" / "data" / "online_retail" / "online_retail.csv.gz"
OUT = ROOT / "benchmarks" / "out" / "finetune"
SEED = 42


def workspace_path(full: bool, sessions: int, log_seed: int) -> Path:
    return Path(os.environ.get("BENCH_FINETUNE_OUT", OUT)) / f"{'full' if full else 'demo'}_s{sessions}_l{log_seed}.sqlite"


def build(full: bool, sessions: int, log_seed: int):
    """(open workspace, sessions) — built once, then reused (its embedding cache too)."""
    from merch_app.data.importer import import_file
    from merch_app.data.workspace import open_workspace

    ws = workspace_path(full, sessions, log_seed)
    meta = ws.with_suffix(".sessions.json")
    if ws.exists() and meta.exists():
        return open_workspace(ws), [ssl.Session(**s) for s in json.loads(meta.read_text())]
    ws.parent.mkdir(parents=True, exist_ok=True)
    for p in (ws, meta):
        p.unlink(missing_ok=True)
    db = open_workspace(ws)
    import_file(db, FULL if full else DEMO)
    ids, titles, counts, first, last = ssl.catalogue(db)
    rows, sess = ssl.generate(ids, titles, counts, first, last, n_sessions=sessions, seed=log_seed)
    log = ssl.write_events(rows, ws.with_suffix(".log.csv.gz"))
    import_file(db, log, kind="events")
    meta.write_text(json.dumps([s.__dict__ for s in sess]))
    return db, sess


def test_set(db, sessions, max_test: int, seed: int = SEED):
    from merch_app.evaluation.split import time_split

    split = time_split(db)
    test, seen = ssl.judged_queries(sessions, split.split_ts)
    queries = sorted(test)
    if len(queries) > max_test:
        rng = np.random.default_rng(seed)
        queries = sorted(queries[i] for i in rng.choice(len(queries), max_test, replace=False))
    return split.split_ts, {q: test[q] for q in queries}, seen


def evaluate(db, encoder, test: dict[str, set[str]]) -> dict[str, dict[str, list[float]]]:
    """{"dense"|"hybrid": {"ndcg@10": [...], "recall@50": [...]}} per test query (sorted order)."""
    from merch_app.evaluation.metrics import ndcg_at_k, recall_at_k
    from merch_app.model.bundle import load_bundle
    from merch_app.model.item_vectors import item_text_vectors
    from merch_app.ranking.ranker import Ranker
    from merch_app.ranking.types import RankRequest

    queries = list(test)
    ids, vectors = item_text_vectors(db, encoder)
    ids = np.array([str(i) for i in ids])
    qv = encoder.encode(queries)
    out = {s: {"ndcg@10": [], "recall@50": []} for s in ("dense", "hybrid")}
    scores = qv @ np.asarray(vectors, np.float32).T
    top = np.argsort(-scores, axis=1)[:, :50]
    bundle = load_bundle(db, encoder=encoder)
    ranker = Ranker.for_workspace(db, bundle, rules=None)
    for n, q in enumerate(queries):
        rel = {i: 3 for i in test[q]}
        dense = list(ids[top[n]])
        hybrid = list(ranker.rank(RankRequest(mode="search", query=q, k=50, prefix=False)).item_ids)
        for name, ranked in (("dense", dense), ("hybrid", hybrid)):
            out[name]["ndcg@10"].append(ndcg_at_k(ranked, rel, 10))
            out[name]["recall@50"].append(recall_at_k(ranked, rel, 50))
    return out


def summarise(before, after, queries, seen) -> dict:
    from merch_app.evaluation.compare import paired_test

    mask = np.array([q in seen for q in queries])
    res = {}
    for system in before:
        for metric in before[system]:
            a, b = np.array(before[system][metric]), np.array(after[system][metric])
            t = paired_test(a, b, seed=SEED)
            res[f"{system} {metric}"] = {
                "before": float(a.mean()), "after": float(b.mean()), "delta": float(b.mean() - a.mean()),
                "p": float(t.p_value), "ci": [float(x) for x in t.ci_delta],
                "unseen_before": float(a[~mask].mean()) if (~mask).any() else None,
                "unseen_after": float(b[~mask].mean()) if (~mask).any() else None}
    return res


def one(args, overrides: dict) -> dict:
    from merch_app.model.encoder import load_encoder
    from merch_app.model.encoder_versions import version_folder
    from merch_app.model.finetune import FinetuneConfig
    from merch_app.services.finetune import finetune

    db, sessions = build(args.full, args.sessions, args.log_seed)
    split_ts, test, seen = test_set(db, sessions, args.max_test)
    queries = list(test)
    cache = workspace_path(args.full, args.sessions, args.log_seed).with_suffix(f".frozen{args.max_test}.json")
    t = time.perf_counter()
    if cache.exists():  # the frozen side is the same for every configuration
        before = json.loads(cache.read_text())
    else:
        before = evaluate(db, load_encoder(args.encoder), test)
        cache.write_text(json.dumps(before))
    eval_s = time.perf_counter() - t
    cfg = FinetuneConfig(**{**{k: v for k, v in overrides.items() if not k.startswith("_")}, "activate": False})
    rss0 = peak_rss_mib()
    t = time.perf_counter()
    result = finetune(db, cfg, encoder=args.encoder, name=json.dumps(overrides) or "defaults")
    job_s = time.perf_counter() - t
    if result.version is None:  # no step beat the base on validation: nothing saved, nothing to score
        return {"overrides": overrides, "config": cfg.to_dict(), "note": result.note, "job_s": job_s,
                "n_pairs": result.n_pairs, "pair_counts": result.pair_counts, "load_avg": os.getloadavg()[0]}
    tuned = load_encoder(str(version_folder(db, result.version)))
    after = evaluate(db, tuned, test)
    n_events = db.execute("SELECT count(*) FROM events").fetchone()[0]
    n_search = db.execute("SELECT count(*) FROM events WHERE event_type = 'search'").fetchone()[0]
    n_items = db.execute("SELECT count(*) FROM items").fetchone()[0]
    return {"overrides": overrides, "config": cfg.to_dict(), "split_ts": split_ts, "n_test": len(queries),
            "n_test_seen": sum(q in seen for q in queries), "results": summarise(before, after, queries, seen),
            "job_s": job_s, "finetune_s": result.seconds,
            "train_s": (result.version.train_seconds), "steps": result.version.metrics.get("steps"),
            "n_pairs": result.n_pairs, "pair_counts": result.pair_counts, "validation": result.validation,
            "service_test": result.comparison, "peak_rss_mib": peak_rss_mib(), "rss_before_mib": rss0,
            "eval_s": eval_s, "events": n_events, "searches": n_search, "items": n_items,
            "version": result.version.version_id, "load_avg": os.getloadavg()[0]}


def _label(overrides: dict) -> str:
    return ", ".join(f"{k}={'+'.join(v) if isinstance(v, list) else v}" for k, v in overrides.items()) or "defaults"


def tables(records: list[dict]) -> str:
    """Markdown: the sweep (one row per configuration) and the full before/after table of the first."""
    def cell(r: dict, key: str) -> str:
        v = r["results"][key]
        return f"{v['after']:.3f} ({v['delta']:+.3f}, p {v['p']:.4f})"

    first = records[0]
    lines = ["| configuration | pairs (query/item/history) | steps | job s | peak RSS | dense NDCG@10 | "
             "dense R@50 | hybrid NDCG@10 | hybrid R@50 |", "|---|---|---|---|---|---|---|---|---|",
             "| frozen MiniLM | – | – | – | – | " + " | ".join(
                 f"{first['results'][k]['before']:.3f}" for k in ("dense ndcg@10", "dense recall@50",
                                                                  "hybrid ndcg@10", "hybrid recall@50")) + " |"]
    for r in records:
        pc = r.get("pair_counts", {})
        lines.append(f"| {_label(r['overrides'])} | {pc.get('query', 0)}/{pc.get('item', 0)}/{pc.get('history', 0)} "
                     f"| {r.get('steps')} | {r['job_s']:.0f} | {r['peak_rss_mib']:.0f} MiB | "
                     + " | ".join(cell(r, k) for k in ("dense ndcg@10", "dense recall@50", "hybrid ndcg@10",
                                                       "hybrid recall@50")) + " |")
    return "\n".join(lines)


def parse_set(spec: str) -> dict:
    out = {}
    for part in filter(None, spec.split(",")):
        k, v = part.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)  # numbers, true/false, ["query"]
        except ValueError:
            out[k.strip()] = v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--full", action="store_true", help="the full Online Retail file instead of the demo subset")
    ap.add_argument("--sessions", type=int, default=30000)
    ap.add_argument("--log-seed", type=int, default=7)
    ap.add_argument("--max-test", type=int, default=2000)
    ap.add_argument("--sweep", nargs="*", default=None, help="configs like lr=1e-4,freeze_layers=0 (defaults first)")
    ap.add_argument("--one", help="JSON overrides: run one configuration in this process and print a JSON line")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--tables", action="store_true", help="print the markdown tables of --results")
    ap.add_argument("--encoder", default="minilm", help="base encoder (a BERT folder for smoke tests)")
    ap.add_argument("--results", type=Path, default=OUT / "results.jsonl")
    args = ap.parse_args()
    if args.build_only:
        db, sessions = build(args.full, args.sessions, args.log_seed)
        split_ts, test, seen = test_set(db, sessions, args.max_test)
        print(json.dumps({"split_ts": split_ts, "n_test": len(test), "seen": len(seen),
                          "events": db.execute("SELECT count(*) FROM events").fetchone()[0]}))
        return
    if args.tables:
        print(tables([json.loads(x) for x in args.results.read_text().splitlines() if x.strip()]))
        return
    if args.one is not None:
        print(json.dumps(one(args, json.loads(args.one)), default=float), flush=True)
        return
    build(args.full, args.sessions, args.log_seed)[0].close()
    configs = [{}] + [parse_set(s) for s in (args.sweep or [])]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    for overrides in configs:
        cmd = [sys.executable, __file__, "--one", json.dumps(overrides), "--sessions", str(args.sessions),
               "--log-seed", str(args.log_seed), "--max-test", str(args.max_test), "--encoder", args.encoder] + (["--full"] if args.full else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in reversed(proc.stdout.splitlines()) if x.startswith("{")), None)
        if line is None:
            print(f"{overrides}: failed\n{proc.stderr[-3000:]}", file=sys.stderr, flush=True)
            continue
        rec = {**json.loads(line), "machine": machine_line(machine_info())}
        with open(args.results, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        r = rec["results"]
        print(f"{json.dumps(overrides) or 'defaults'}: job {rec['job_s']:.0f}s rss {rec['peak_rss_mib']:.0f}MiB | "
              + " | ".join(f"{k} {v['before']:.3f}->{v['after']:.3f} p={v['p']:.4f}" for k, v in r.items()),
              flush=True)


if __name__ == "__main__":
    main()

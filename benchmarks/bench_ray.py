"""Ray engine benchmark: local vs Ray (1 and 2 workers, local mode) on the Online Retail file.

Measures on this machine, with the real all-MiniLM-L6-v2 encoder:

* encoding texts/s of every item text (cache emptied before each run):
  in-process (2 torch threads) and Ray Data with 1 and 2 actors (1 CPU each);
  the minimum per-item cosine between local and Ray vectors;
* training (the default ``HybridConfig``; vectors from the cache) on the
  standard 80 % time split: fit seconds, training events/s and the test
  metrics for local training with seeds 42 and 7 (the seed-to-seed spread
  is the noise) and Ray Train with 1 and 2 workers (seed 42).

The result replaces the ``<!-- bench:ray -->`` section of docs/scaling.md
and is kept in benchmarks/out/ray/results.json.

Usage::

    .venv/bin/python benchmarks/bench_ray.py [--skip-encode] [--skip-train] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
from benchlib import OUT, load_average, machine_info, machine_line, write_section  # noqa: E402

ONLINE_RETAIL = ROOT.parent / "shared" / "data" / "online_retail" / "online_retail.csv.gz"
SCALING_DOC = ROOT / "docs" / "scaling.md"
WORK = OUT / "ray"
METRICS = ("ndcg@10", "precision@10", "recall@10", "hit_rate@10")


def workspace():
    from merch_app.data.importer import import_file
    from merch_app.data.workspace import open_workspace

    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "online_retail.sqlite"
    db = open_workspace(path)
    if db.execute("SELECT count(*) FROM items").fetchone()[0] == 0:
        t = time.perf_counter()
        import_file(db, ONLINE_RETAIL)
        print(f"imported in {time.perf_counter() - t:.1f} s", flush=True)
    return db


def bench_encode(db, ray) -> dict:
    from merch_app.engines.local import LocalEngine
    from merch_app.engines.ray_encode import encode_items_ray
    from merch_app.model.encoder import load_encoder

    encoder = load_encoder("minilm")
    out: dict = {"encoder_id": encoder.encoder_id}

    def clear() -> None:
        with db.conn:
            db.execute("DELETE FROM embeddings WHERE encoder_id = ?", [encoder.encoder_id])

    import torch

    threads = torch.get_num_threads()
    for key, n_threads in (("local", threads), ("local1", 1)):
        clear()
        torch.set_num_threads(n_threads)
        t, c = time.perf_counter(), time.process_time()
        local = LocalEngine().encode_items(db, encoder)
        sec, cpu = time.perf_counter() - t, time.process_time() - c
        out["texts"] = local.stats.encoded
        out[key] = {"seconds": sec, "texts_per_s": local.stats.encoded / sec, "threads": n_threads,
                    "cpu_seconds": cpu, "texts_per_cpu_s": local.stats.encoded / cpu, "load": load_average()}
        print("encode", key, out[key], flush=True)
    torch.set_num_threads(threads)
    for workers in (1, 2):
        clear()
        t = time.perf_counter()
        result = encode_items_ray(db, "minilm", workers=workers)
        sec = time.perf_counter() - t
        cos = np.sum(result.vectors * local.vectors, axis=1)
        out[f"ray{workers}"] = {"seconds": sec, "texts_per_s": result.stats.encoded / sec,
                                "min_cosine": float(cos.min()), "load": load_average()}
        print(f"encode ray x{workers}", out[f"ray{workers}"], flush=True)
    return out


def bench_train(db) -> dict:
    from merch_app.engines.local import LocalEngine
    from merch_app.engines.ray_engine import RayEngine
    from merch_app.model.encoder import load_encoder
    from merch_app.model.hybrid import HybridConfig
    from merch_app.services.training import train

    from merch_app.model import cf_module

    encoder = load_encoder("minilm")
    out: dict = {}
    run_epoch = cf_module.run_implicit_epoch
    for label, seed in (("local", 42), ("local_seed7", 7)):
        timing: dict = {"cf_epoch_seconds": 0.0}

        def timed_epoch(*args, **kwargs):
            t = time.perf_counter()
            loss = run_epoch(*args, **kwargs)
            timing["cf_epoch_seconds"] += time.perf_counter() - t
            return loss

        cf_module.run_implicit_epoch = timed_epoch

        class TimedLocal(LocalEngine):
            def fit(self, *args, **kwargs):
                t, c = time.perf_counter(), time.process_time()
                model = super().fit(*args, **kwargs)
                timing["fit_seconds"], timing["cpu_seconds"] = time.perf_counter() - t, time.process_time() - c
                return model

        try:
            v = train(db, HybridConfig(seed=seed, activate="never"), encoder=encoder, engine=TimedLocal(),
                      name=f"bench {label}")
        finally:
            cf_module.run_implicit_epoch = run_epoch
        epochs = len(v.metrics.get("epochs", []))
        out[label] = {"fit_seconds": timing["fit_seconds"], "cpu_seconds": timing["cpu_seconds"], "epochs_run": epochs,
                      "cf_epoch_seconds": timing["cf_epoch_seconds"],
                      "train_events": v.data_snapshot["train_events"],
                      "events_per_s": v.data_snapshot["train_events"] * epochs / timing["fit_seconds"],
                      "metrics": {k: v.metrics["model"][k] for k in METRICS}, "load": load_average()}
        print("train", label, out[label], flush=True)
    for workers in (1, 2):
        t = time.perf_counter()
        v = train(db, HybridConfig(seed=42, activate="never"), encoder=encoder, name=f"bench ray x{workers}",
                  engine=RayEngine(workers=workers))
        s = v.data_snapshot
        out[f"ray{workers}"] = {"fit_seconds": s["ray_fit_seconds"], "cpu_seconds": s["ray_cpu_seconds"],
                                "cf_epoch_seconds": s["ray_cf_epoch_seconds"],
                                "epochs_run": s["ray_epochs_run"],
                                "train_events": s["ray_train_events"], "events_per_s": s["ray_events_per_s"],
                                "pairs_per_s": s["ray_pairs_per_s"], "job_seconds": time.perf_counter() - t,
                                "metrics": {k: v.metrics["model"][k] for k in METRICS}, "load": load_average()}
        print(f"train ray x{workers}", out[f"ray{workers}"], flush=True)
    return out


def section(r: dict) -> str:
    m = r["machine"]
    lines = ["<!-- bench:ray -->", "## Measured on this machine (Ray in local mode)", "",
             f"`benchmarks/bench_ray.py` on the full UCI Online Retail file ({r.get('items', '?'):,} items, "
             f"{r.get('events', '?'):,} events). {machine_line(m)}; Ray {r['ray_version']} started with "
             f"`num_cpus=2`. Load average {m['load']:.1f} at the start: other jobs shared the two cores, so "
             "absolute rates are lower than on an idle machine and the 1 → 2 worker ratio is squeezed.", ""]
    e = r.get("encode")
    if e:
        lines += [f"**Encoding** {e['texts']:,} distinct item texts with `{e['encoder_id']}` (fp32, batches of 64; "
                  "cache emptied before each run; Ray times include starting the actor pool and loading the "
                  "encoder in every actor, not `ray.init`):", "",
                  "| engine | seconds | texts/s | texts per CPU-second | min cosine to local | load avg |",
                  "|---|---:|---:|---:|---:|---:|"]
        for key in ("local", "local1"):
            x = e[key]
            lines.append(f"| local (in-process, {x['threads']} torch thread{'s' if x['threads'] > 1 else ''}) | "
                         f"{x['seconds']:.1f} | {x['texts_per_s']:.0f} | {x['texts_per_cpu_s']:.0f} | — | "
                         f"{x['load']:.1f} |")
        for w in (1, 2):
            x = e[f"ray{w}"]
            lines.append(f"| Ray Data, {w} actor{'s' if w > 1 else ''} × 1 CPU | {x['seconds']:.1f} | "
                         f"{x['texts_per_s']:.0f} | — | {x['min_cosine']:.6f} | {x['load']:.1f} |")
        lines.append("")
    t = r.get("train")
    if t:
        lines += ["**Training** (default `HybridConfig`: dim 64, ≤ 20 epochs with early stopping on the internal "
                  "validation users, 2 refit epochs; MiniLM vectors from the cache) on the 80 % time split. "
                  "events/s = training events × epochs run / fit seconds (fit inside the worker; Ray Train's "
                  "worker-group start-up is in the job time only). Test metrics at k = 10:", "",
                  "| run | fit s | of which CF epochs s | epochs | events/s | events per CPU-s | job s | NDCG@10 | P@10 "
                  "| R@10 | hit rate |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for key, label in (("local", "local, seed 42"), ("local_seed7", "local, seed 7"),
                           ("ray1", "Ray Train, 1 worker"), ("ray2", "Ray Train, 2 workers (DDP, gloo)")):
            x = t[key]
            mm = x["metrics"]
            per_cpu = x["train_events"] * x["epochs_run"] / x["cpu_seconds"]
            job = f"{x['job_seconds']:.1f}" if "job_seconds" in x else "—"
            lines.append(f"| {label} | {x['fit_seconds']:.1f} | {x['cf_epoch_seconds']:.1f} | {x['epochs_run']} | "
                         f"{x['events_per_s']:,.0f} | "
                         f"{per_cpu:,.0f} | {job} | {mm['ndcg@10']:.4f} | "
                         f"{mm['precision@10']:.4f} | {mm['recall@10']:.4f} | {mm['hit_rate@10']:.4f} |")
        seeds = abs(t["local"]["metrics"]["ndcg@10"] - t["local_seed7"]["metrics"]["ndcg@10"])
        all_ndcg = [t[k]["metrics"]["ndcg@10"] for k in ("local", "local_seed7", "ray1", "ray2")]
        lines += ["", f"Noise: NDCG@10 of the four runs spans {min(all_ndcg):.4f}–{max(all_ndcg):.4f} (range "
                  f"{max(all_ndcg) - min(all_ndcg):.4f}); the two local seeds alone differ by {seeds:.4f}.", ""]
    lines.append("<!-- /bench:ray -->")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-encode", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--report-only", action="store_true", help="rewrite the doc section from results.json")
    args = ap.parse_args()
    if args.report_only:
        write_section("ray", section(json.loads((WORK / "results.json").read_text())), path=SCALING_DOC)
        return
    import ray

    from merch_app.engines.ray_runtime import ray_session

    db = workspace()
    result_path = WORK / "results.json"
    r = json.loads(result_path.read_text()) if result_path.exists() else {}
    r.update({"machine": machine_info(), "ray_version": ray.__version__,
              "items": db.execute("SELECT count(*) FROM items").fetchone()[0],
              "events": db.execute("SELECT count(*) FROM events").fetchone()[0]})
    t = time.perf_counter()
    with ray_session(None, num_cpus=2):
        r["ray_init_seconds"] = time.perf_counter() - t
        if not args.skip_encode:
            r["encode"] = bench_encode(db, ray)
            result_path.write_text(json.dumps(r, indent=2, default=float))
        if not args.skip_train:
            r["train"] = bench_train(db)
            result_path.write_text(json.dumps(r, indent=2, default=float))
    if not args.no_write:
        write_section("ray", section(r), path=SCALING_DOC)
    print(section(r))


if __name__ == "__main__":
    main()

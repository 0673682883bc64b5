"""Seasonal features on UCI Online Retail: old code vs new code vs ablations, in one run, paired per user.

The protocol is the one of ``benchmarks/bench_quality.py`` (same filters, split
2011-09-01, the 1,947 test users seen in training, relevant = distinct items
bought from the split on).  Every variant runs the real training job
(:func:`merch_app.services.training.train`) in its own child process on its
own copy of the workspace, with the code tree given by ``--code`` first on
``sys.path`` (so the code of HEAD, unpacked with ``git archive``, runs next to
the working tree on the same machine in the same run).  Each child writes the
per-user NDCG@10 / P@10 of the model and of the user-history baseline (the
strongest baseline of the protocol), rebuilt from the registry with the
history as of the split; the parent pairs them.

Usage::

    python benchmarks/bench_seasonality.py all --base-code /tmp/season/base \
        --seeds 42,1,2 --work /tmp/season [--ablate]
    python benchmarks/bench_seasonality.py report --work /tmp/season

``all`` runs: ``old`` (the code of ``--base-code``), ``new`` (this tree,
default config), with ``--ablate`` ``new`` with each seasonal feature group
switched off (config ``seasonal_features`` without it) or without the season
cut, and with ``--extras`` the variants of :data:`EXTRAS`.  Results go to
``<work>/season_runs.json``; ``report`` prints the tables for docs/quality.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean, pstdev

ROOT = Path(__file__).resolve().parents[1]
SPLIT = "2011-09-01"
K = 10
# (variant name, config overrides); the ablations drop one seasonal feature group each
ABLATIONS = {
    "no_item_last_year": {"drop": "item_last_year"},
    "no_user_last_year": {"drop": "user_last_year"},
    "no_calendar": {"drop": "calendar"},
    "no_christmas_item": {"drop": "christmas_item"},
    "no_christmas_user": {"drop": "christmas_user"},
    "no_season_cut": {"season_cut": False},
}
# not ablations: the internal cuts labelled over as many days as the test period (2011-09-01 .. 12-09);
EXTRAS = {"horizon_99": {"label_horizon_days": 99.0},
          # more cuts further back (down to January): a wider range of distances to Christmas
          "extra_cuts_6": {"extra_cuts": 6},
          # fewer pooled cuts (the history/trend weights from the most recent cuts only) and other recency
          # half-lives of the history counts (issue 22, history/trend combiner; none chosen, see the report)
          "extra_cuts_0": {"extra_cuts": 0}, "extra_cuts_1": {"extra_cuts": 1},
          "half_life_30": {"history_half_life_days": 30.0}, "half_life_120": {"history_half_life_days": 120.0}}
ORDER = ["old", "new", *ABLATIONS, *EXTRAS]


def child(args) -> None:
    """Train one seed in this process (the code on sys.path decides old/new) and dump per-user results."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np

    import merch_app
    from merch_app.data.workspace import open_workspace
    from merch_app.evaluation import baselines as bl
    from merch_app.evaluation.metrics import ndcg_at_k, precision_at_k
    from merch_app.evaluation.split import relevant_items
    from merch_app.model.hybrid import HybridConfig
    from merch_app.model.interactions import load_interactions, ts_to_days
    from merch_app.model.registry import load_model
    from merch_app.services.training import train

    overrides = json.loads(args.config or "{}")
    asked = dict(overrides)
    cfg = HybridConfig(split_date=SPLIT, seed=args.seed, activate="always")
    if "drop" in overrides:
        drop = overrides.pop("drop")
        cfg.seasonal_features = [f for f in cfg.seasonal_features if f != drop]
    for key, value in overrides.items():
        setattr(cfg, key, value)
    db = open_workspace(Path(args.db))
    marks: dict[str, float] = {}

    def progress(p):
        marks.setdefault(p.data.get("phase", "?"), time.perf_counter())

    t0 = time.perf_counter()
    version = train(db, cfg, progress=progress, name=f"season {args.tag} seed {args.seed}")
    job = time.perf_counter() - t0
    fit = marks.get("evaluate", t0 + job) - marks.get("train", t0)
    load = os.getloadavg()[0]
    model = load_model(db, version.model_id)
    split_ts = SPLIT + "T00:00:00Z"
    inter = load_interactions(db, model.item_ids, until_ts=split_ts, user_ids=model.user_ids)
    model = model.with_history(inter, float(ts_to_days([split_ts])[0]))
    seen = {str(model.user_ids[u]) for u in np.unique(inter.user_idx)}
    rel = relevant_items(db, split_ts, seen, model.item_ids)
    users = sorted(u for u in rel if u in model.user_pos and rel[u])
    lists = bl.model_ranking(model, users, K)
    hist = bl.user_history_ranking(inter, users, K)
    out = {"tag": args.tag, "seed": args.seed, "code": str(Path(merch_app.__file__).parent.parent),
           "config": asked, "users": users, "fit_s": fit, "job_s": job, "load_avg": load,
           "job_metrics": {m: version.metrics["model"][m] for m in (f"ndcg@{K}", f"precision@{K}")},
           "best_epoch": version.metrics.get("best_epoch"),
           # the internal validation cut (inside the training period): what choices may look at
           "val": {k: v for e in version.metrics.get("epochs", [])
                   if e.get("epoch") == version.metrics.get("best_epoch") for k, v in e.items() if k.startswith("val_")},
           "model": {"ndcg": [ndcg_at_k(lists[u], rel[u], K) for u in users],
                     "p": [precision_at_k(lists[u], rel[u], K) for u in users]},
           "user_history": {"ndcg": [ndcg_at_k(hist[u], rel[u], K) for u in users],
                            "p": [precision_at_k(hist[u], rel[u], K) for u in users]}}
    Path(args.out).write_text(json.dumps(out))
    print(json.dumps({k: out[k] for k in ("tag", "seed", "fit_s", "job_s", "load_avg", "job_metrics")}), flush=True)


def run_all(args) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    src = work / "or.db"
    if not src.exists():  # built by the old code: a newer schema would not open there
        # merch_app first: bench_quality's benchlib puts this tree on sys.path
        build = (f"import sys, merch_app; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench_quality; "
                 f"bench_quality.build_workspace(__import__('pathlib').Path({str(src)!r}))[0].close()")
        subprocess.run([sys.executable, "-c", build], env=dict(os.environ, PYTHONPATH=args.base_code), check=True,
                       cwd=args.base_code)
    variants = [("old", Path(args.base_code), {}), ("new", ROOT, {})]
    if args.ablate:
        variants += [(name, ROOT, cfg) for name, cfg in ABLATIONS.items()]
    if args.extras:
        variants += [(name, ROOT, cfg) for name, cfg in EXTRAS.items()]
    if args.only:
        variants = [v for v in variants if v[0] in args.only.split(",")]
    for seed in [int(s) for s in args.seeds.split(",")]:
        for tag, code, cfg in variants:  # variants interleaved per seed: machine load hits all alike
            out = work / f"run_{tag}_{seed}.json"
            if out.exists() and not args.force:
                continue
            db = work / f"ws_{tag}.db"
            if not db.exists():
                shutil.copy(src, db)
            env = dict(os.environ, PYTHONPATH=str(code), HF_HUB_OFFLINE="1")
            subprocess.run([sys.executable, __file__, "child", "--db", str(db), "--seed", str(seed), "--tag", tag,
                            "--config", json.dumps(cfg), "--out", str(out)], env=env, check=True, cwd=str(code))
    report(args)


def report(args) -> None:
    from benchlib import p_text, paired_per_user  # here: a child must not get this tree on sys.path

    work = Path(args.work)
    runs = {}
    for f in sorted(work.glob("run_*.json")):
        r = json.loads(f.read_text())
        runs[(r["tag"], r["seed"])] = r
    tags = sorted({t for t, _ in runs}, key=lambda t: ORDER.index(t) if t in ORDER else 99)
    seeds = sorted({s for _, s in runs}, key=lambda s: [42, 1, 2].index(s) if s in (42, 1, 2) else 9)
    lines = ["| variant | seed | NDCG@10 | P@10 | internal val NDCG@10 | fit s | job s | load avg |",
             "|---|---|---|---|---|---|---|---|"]
    summary = {}
    for tag in tags:
        for seed in seeds:
            r = runs.get((tag, seed))
            if not r:
                continue
            nd, pp = mean(r["model"]["ndcg"]), mean(r["model"]["p"])
            summary.setdefault(tag, []).append((nd, pp))
            val = (r.get("val") or {}).get("val_ndcg@10", float("nan"))
            lines.append(f"| {tag} | {seed} | {nd:.4f} | {pp:.4f} | {val:.4f} | {r['fit_s']:.0f} | {r['job_s']:.0f} | "
                         f"{r['load_avg']:.1f} |")
    lines += ["", "| variant | NDCG@10 mean ± sd | P@10 mean ± sd |", "|---|---|---|"]
    for tag, vals in summary.items():
        lines.append(f"| {tag} | {mean(v[0] for v in vals):.4f} ± {pstdev(v[0] for v in vals):.4f} | "
                     f"{mean(v[1] for v in vals):.4f} ± {pstdev(v[1] for v in vals):.4f} |")
    any_run = next(iter(runs.values()))
    lines += ["", f"user history baseline: NDCG@10 {mean(any_run['user_history']['ndcg']):.4f}, "
              f"P@10 {mean(any_run['user_history']['p']):.4f} ({len(any_run['users'])} users)", "",
              "| comparison | seed | metric | Δ [95% CI] | p (randomisation) | p (t-test) | wins / losses / ties |",
              "|---|---|---|---|---|---|---|"]
    pairs = [(t, "user_history") for t in tags] + [("new", "old")]
    pairs += [(t, "new") for t in tags if t in ABLATIONS or t in EXTRAS]
    for tag, ref in pairs:
        for seed in seeds:
            r = runs.get((tag, seed))
            if not r:
                continue
            base = r["user_history"] if ref == "user_history" else (runs.get((ref, seed)) or {}).get("model")
            if base is None:
                continue
            if ref != "user_history":
                assert runs[(ref, seed)]["users"] == r["users"]
            for key, name in (("ndcg", "NDCG@10"), ("p", "P@10")):
                t = paired_per_user(base[key], r["model"][key])
                lines.append(f"| {tag} vs {ref} | {seed} | {name} | {t['delta']:+.4f} [{t['ci'][0]:+.4f}, "
                             f"{t['ci'][1]:+.4f}] | {p_text(t['p_rand'])} | {p_text(t['p_t'])} | "
                             f"{t['wins']} / {t['losses']} / {t['ties']} |")
    text = "\n".join(lines)
    print(text)
    (work / "season_report.md").write_text(text + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("child")
    c.add_argument("--db", required=True)
    c.add_argument("--seed", type=int, required=True)
    c.add_argument("--tag", required=True)
    c.add_argument("--config", default="{}")
    c.add_argument("--out", required=True)
    a = sub.add_parser("all")
    a.add_argument("--base-code", required=True, help="code tree of the old version (git archive HEAD)")
    a.add_argument("--seeds", default="42,1,2")
    a.add_argument("--work", default="/tmp/season")
    a.add_argument("--ablate", action="store_true")
    a.add_argument("--extras", action="store_true", help="also the variants of EXTRAS (not ablations)")
    a.add_argument("--only", default="", help="comma-separated variant names to run")
    a.add_argument("--force", action="store_true", help="rerun variants whose results exist")
    r = sub.add_parser("report")
    r.add_argument("--work", default="/tmp/season")
    args = ap.parse_args()
    {"child": child, "all": run_all, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()

"""Cold-start items on UCI Online Retail: the default model against the cold-item variants, paired per user.

The protocol is the one of ``benchmarks/bench_quality.py`` (same filters, split
2011-09-01, the 1,947 test users seen in training, relevant = distinct items
bought from the split on; 271 catalogue items have no sales before the split).
Every variant runs the real training job (:func:`merch_app.services.training.train`)
in its own child process on its own copy of the workspace, with config overrides
(:data:`VARIANTS`).  Each child writes the per-user NDCG@10 / P@10 of the model
(rebuilt from the registry with the history as of the split, so the saved model
is what is measured), the job's cold-start view (mean percentile of the cold
relevant items, their recall@10, cold share of the top-10 slots) and what the fit
chose on its internal validation cut; the parent pairs every variant with
``base`` (the default config) seed by seed.

Usage::

    python benchmarks/bench_cold_start.py all --seeds 42,1,2 --work /tmp/coldbench [--only base,impute]
    python benchmarks/bench_cold_start.py report --work /tmp/coldbench
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
from statistics import mean

ROOT = Path(__file__).resolve().parents[1]
SPLIT = "2011-09-01"
K = 10
OFF = {"cold_impute": False, "cold_cf_map": False, "cold_feature": False}
VARIANTS = {
    "base": dict(OFF),  # the model before the cold-start work (format 5 scoring)
    # trend row and item bias of unsold items = λ x the mean over their k text neighbours (λ, k chosen
    # on the internal validation cut)
    "impute": {**OFF, "cold_impute": True},
    # ... and their ID embedding Q from the ridge map text -> Q fitted on the sold items
    "impute_cf_map": {**OFF, "cold_impute": True, "cold_cf_map": True},
    # learned instead: trend feature "unsold" weighted on the internal cuts, bilinear weight α + α_cold
    # for unsold items fitted on the main cut
    "learned": {**OFF, "cold_feature": True},
    # both: the learned weights, then the imputation (λ, k chosen on the validation cut with them in place)
    "learned_impute_cf_map": {"cold_feature": True, "cold_impute": True, "cold_cf_map": True},
}


def child(args) -> None:
    """Train one seed with one variant's config in this process and dump per-user and cold-start results."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np

    from merch_app.data.workspace import open_workspace
    from merch_app.evaluation import baselines as bl
    from merch_app.evaluation.metrics import ndcg_at_k, precision_at_k
    from merch_app.evaluation.split import relevant_items
    from merch_app.model.history_features import TREND_FEATURES
    from merch_app.model.hybrid import HybridConfig
    from merch_app.model.interactions import load_interactions, ts_to_days
    from merch_app.model.registry import load_model
    from merch_app.services.training import train

    overrides = json.loads(args.config or "{}")
    cfg = HybridConfig(split_date=SPLIT, seed=args.seed, activate="always")
    for key, value in overrides.items():
        setattr(cfg, key, value)
    db = open_workspace(Path(args.db))
    marks: dict[str, float] = {}
    choice: list = []

    def progress(p):
        marks.setdefault(p.data.get("phase", "?"), time.perf_counter())
        if "cold_choice" in p.data:
            choice.extend(p.data["cold_choice"])

    t0 = time.perf_counter()
    version = train(db, cfg, progress=progress, name=f"cold {args.tag} seed {args.seed}")
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
    m = version.metrics
    out = {"tag": args.tag, "seed": args.seed, "config": overrides, "users": users, "fit_s": fit, "job_s": job,
           "load_avg": load, "model_id": version.model_id,
           "job_metrics": {k: m["model"][k] for k in (f"ndcg@{K}", f"precision@{K}", f"recall@{K}")},
           "cold_start": m["cold_start"], "beyond_history": m.get("beyond_history", {}).get("model"),
           "chosen": {k: getattr(model.config, k, None) for k in ("cold_shrink", "cold_neighbours")},
           "cold_choice": choice,
           # the internal validation cut (inside the training period) at the best epoch
           "val": {k: v for e in m.get("epochs", []) if e.get("epoch") == m.get("best_epoch")
                   for k, v in e.items() if k.startswith("val_")},
           "weights": {"alpha": model.alpha, "beta": model.beta, "alpha_own": model.alpha_own,
                       "alpha_cold": model.alpha_cold,
                       "eta": dict(zip(TREND_FEATURES, map(float, model.eta)))},
           "model": {"ndcg": [ndcg_at_k(lists[u], rel[u], K) for u in users],
                     "p": [precision_at_k(lists[u], rel[u], K) for u in users]}}
    if overrides.get("cold_feature"):
        out["ablation"] = ablation(model, inter, rel, users)
    Path(args.out).write_text(json.dumps(out))
    print(json.dumps({k: out[k] for k in ("tag", "seed", "fit_s", "job_s", "load_avg", "job_metrics", "chosen")}
                     | {"cold": m["cold_start"].get("model")}), flush=True)


def ablation(model, inter, rel: dict, users: list) -> dict:
    """The learned model scored with α_cold = 0, and with the weight of "unsold" = 0 (nothing refitted)."""
    from merch_app.evaluation import baselines as bl
    from merch_app.evaluation.metrics import ranking_report
    from merch_app.evaluation.offline import cold_start_view
    from merch_app.model.history_features import N_HIST, N_TREND, UNSOLD

    out = {}
    rel = {u: rel[u] for u in users}
    for name, index in (("alpha_cold_0", 4 + N_HIST + N_TREND), ("unsold_0", 3 + N_HIST + UNSOLD)):
        keep = model.arrays["combiner"].copy()
        model.arrays["combiner"][index] = 0.0
        model._derive(vectors=False)
        rep = ranking_report(bl.model_ranking(model, users, K), rel, K)
        cold = cold_start_view(model, inter, rel, users, K).get("model", {})
        out[name] = {f"ndcg@{K}": rep[f"ndcg@{K}"], f"precision@{K}": rep[f"precision@{K}"],
                     "cold_percentile": cold.get("mean_percentile"), "cold_recall": cold.get(f"recall@{K}")}
        model.arrays["combiner"] = keep
        model._derive(vectors=False)
    return out


def run_all(args) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    src = work / "or.db"
    if not src.exists():
        build = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench_quality; "
                 f"bench_quality.build_workspace(__import__('pathlib').Path({str(src)!r}))[0].close()")
        subprocess.run([sys.executable, "-c", build], check=True, cwd=str(ROOT))
    variants = [v for v in VARIANTS if not args.only or v in args.only.split(",")]
    for seed in [int(s) for s in args.seeds.split(",")]:
        for tag in variants:  # interleaved per seed: machine load hits all variants alike
            out = work / f"run_{tag}_{seed}.json"
            if out.exists() and not args.force:
                continue
            db = work / f"ws_{tag}.db"
            if not db.exists():
                shutil.copy(src, db)
            env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
            subprocess.run([sys.executable, __file__, "child", "--db", str(db), "--seed", str(seed), "--tag", tag,
                            "--config", json.dumps(VARIANTS[tag]), "--out", str(out)], env=env, check=True,
                           cwd=str(ROOT))
    report(args)


def report(args) -> None:
    from benchlib import p_text, paired_per_user  # here: a child must not get this tree on sys.path

    work = Path(args.work)
    runs = {}
    for f in sorted(work.glob("run_*.json")):
        r = json.loads(f.read_text())
        runs[(r["tag"], r["seed"])] = r
    order = list(VARIANTS)
    tags = sorted({t for t, _ in runs}, key=lambda t: order.index(t) if t in order else 99)
    seeds = sorted({s for _, s in runs}, key=lambda s: [42, 1, 2].index(s) if s in (42, 1, 2) else 9)
    lines = ["| variant | seed | NDCG@10 | P@10 | cold percentile | cold recall@10 | cold share of top-10 | "
             "λ / k chosen | Δ NDCG@10 vs base (p rand / t) | Δ P@10 vs base (p rand / t) | internal val NDCG@10 | "
             "fit s | job s | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    summary: dict[str, list] = {}
    for tag in tags:
        for seed in seeds:
            r = runs.get((tag, seed))
            if not r:
                continue
            nd, pp = mean(r["model"]["ndcg"]), mean(r["model"]["p"])
            c = r["cold_start"].get("model", {})
            cells = []
            for key in ("ndcg", "p"):
                b = runs.get(("base", seed))
                if tag == "base" or not b:
                    cells.append("–")
                    continue
                assert b["users"] == r["users"]
                t = paired_per_user(b["model"][key], r["model"][key])
                cells.append(f"{t['delta']:+.4f} ({p_text(t['p_rand'])} / {p_text(t['p_t'])})")
            ch = r.get("chosen") or {}
            lk = "–" if tag == "base" else f"{ch.get('cold_shrink')} / {ch.get('cold_neighbours')}"
            summary.setdefault(tag, []).append((nd, pp, c.get("mean_percentile", float("nan")),
                                                c.get(f"recall@{K}", float("nan"))))
            lines.append(f"| {tag} | {seed} | {nd:.4f} | {pp:.4f} | {c.get('mean_percentile', float('nan')):.3f} | "
                         f"{c.get(f'recall@{K}', float('nan')):.4f} | {c.get(f'cold_share_of_top{K}', float('nan')):.4f} | "
                         f"{lk} | {cells[0]} | {cells[1]} | {(r.get('val') or {}).get('val_ndcg@10', float('nan')):.4f} | "
                         f"{r['fit_s']:.0f} | {r['job_s']:.0f} | {r['load_avg']:.1f} |")
    lines += ["", "| variant | NDCG@10 mean | P@10 mean | cold percentile mean | cold recall@10 mean |", "|---|---|---|---|---|"]
    for tag, vals in summary.items():
        lines.append(f"| {tag} | {mean(v[0] for v in vals):.4f} | {mean(v[1] for v in vals):.4f} | "
                     f"{mean(v[2] for v in vals):.3f} | {mean(v[3] for v in vals):.4f} |")
    lines += ["", "Internal validation cut (what the fit chose from; per seed, the chosen point first):", ""]
    for tag in tags:
        for seed in seeds:
            r = runs.get((tag, seed))
            if not r or not r.get("cold_choice"):
                continue
            rows = r["cold_choice"]
            ch = r.get("chosen") or {}
            pick = next((x for x in rows if x["shrink"] == ch.get("cold_shrink") and
                         (x["neighbours"] == ch.get("cold_neighbours") or x["shrink"] == 0)), rows[0])
            lines.append(f"- {tag} seed {seed}: none: all-label percentile {rows[0]['pct']:.4f}, cold "
                         f"{rows[0]['cold_pct']:.3f}; chosen λ {pick['shrink']} k {pick['neighbours']}: "
                         f"{pick['pct']:.4f}, cold {pick['cold_pct']:.3f}, NDCG@10 Δ {pick['ndcg_delta']:+.4f} "
                         f"(se {pick['ndcg_se']:.4f}); {sum(x['admissible'] for x in rows)} of {len(rows)} "
                         "points admissible")
    lines += ["", "Learned weights (seed of each run): α, β, α_own, α_cold, η unsold / novelty / log_sales_30d:", ""]
    for tag in tags:
        for seed in seeds:
            w = (runs.get((tag, seed)) or {}).get("weights")
            if w:
                e = w["eta"]
                lines.append(f"- {tag} seed {seed}: {w['alpha']:.3f}, {w['beta']:.3f}, {w['alpha_own']:+.3f}, "
                             f"{w['alpha_cold']:+.3f}, η {e.get('unsold', 0.0):+.3f} / {e['novelty']:+.3f} / "
                             f"{e['log_sales_30d']:+.3f}")
    lines += ["", "Learned weights set to 0 after the fit (nothing refitted): NDCG@10 / P@10 / cold percentile:", ""]
    for tag in tags:
        for seed in seeds:
            ab = (runs.get((tag, seed)) or {}).get("ablation")
            if ab:
                lines.append(f"- {tag} seed {seed}: " + "; ".join(
                    f"{name}: {v[f'ndcg@{K}']:.4f} / {v[f'precision@{K}']:.4f} / {v['cold_percentile']:.3f}"
                    for name, v in ab.items()))
    text = "\n".join(lines)
    print(text)
    (work / "cold_report.md").write_text(text + "\n")


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
    a.add_argument("--seeds", default="42,1,2")
    a.add_argument("--work", default="/tmp/coldbench")
    a.add_argument("--only", default="", help="comma-separated variant names to run")
    a.add_argument("--force", action="store_true", help="rerun variants whose results exist")
    r = sub.add_parser("report")
    r.add_argument("--work", default="/tmp/coldbench")
    args = ap.parse_args()
    {"child": child, "all": run_all, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()

"""Recommendation quality on UCI Online Retail: the hybrid model against its baselines.

Protocol (fixed, not tuned): keep rows with a customer id, quantity > 0,
price > 0, a non-cancelled invoice and a regular item code
(``^\\d{5}[A-Za-z]*$``); train on events before 2011-09-01; test on purchases
from then on for users seen in training; relevant = distinct items the user
bought in the test period.  Items first sold in the test period stay in the
catalogue (cold start).

The workspace is built by loading the CSV with exactly these filters (one
purchase event per kept row, session = invoice); training runs the real job
(:func:`merch_app.services.training.train`: MiniLM item and user vectors, fit,
evaluation, registry).  Results go to ``docs/quality.md`` between
``<!-- quality:model -->`` and ``<!-- /quality:model -->``.

Usage: ``python benchmarks/bench_quality.py [--seeds 42,7,1] [--no-doc]``
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import re
import sys
import time
from pathlib import Path
from statistics import mean, pstdev

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchlib import machine_info, machine_line  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "online_retail" / "online_retail.csv.gz"
WORKSPACE = ROOT / "benchmarks" / "out" / "quality_online_retail.sqlite"
DOC = ROOT / "docs" / "quality.md"
SPLIT = "2011-09-01"
CODE = re.compile(r"^\d{5}[A-Za-z]*$")
K = 10


def _iso(text: str) -> str:
    """'YYYY-MM-DD HH:MM[:SS]' -> 'YYYY-MM-DDTHH:MM:SSZ'."""
    t = text.strip().replace(" ", "T")
    return (t + ":00" if len(t) == 16 else t) + "Z"


def load_rows(path: Path = DATA):
    """(items, events) of the protocol rows of the Online Retail CSV."""
    items: dict[str, dict] = {}
    events: list[dict] = []
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            invoice, code, customer = r["InvoiceNo"], r["StockCode"], r["CustomerID"].strip()
            if not customer or invoice.startswith(("C", "A")) or not CODE.match(code):
                continue
            try:
                qty, price = int(r["Quantity"]), float(r["UnitPrice"])
            except ValueError:
                continue
            if qty <= 0 or price <= 0:
                continue
            if code not in items or not items[code]["title"]:
                items[code] = {"item_id": code, "title": r["Description"].strip(), "price": price}
            events.append({"user_id": customer.split(".")[0], "item_id": code, "event_type": "purchase",
                           "value": float(qty), "ts": _iso(r["InvoiceDate"]), "session_id": invoice})
    return list(items.values()), events


def build_workspace(path: Path = WORKSPACE):
    """Create (or reuse) the protocol workspace; returns an open database."""
    from merch_app.data.workspace import open_workspace, rebuild_fts

    path.parent.mkdir(parents=True, exist_ok=True)
    items, events = load_rows()
    db = open_workspace(path)
    have = db.execute("SELECT count(*) FROM events").fetchone()[0]
    if have != len(events):
        with db.conn:
            db.execute("DELETE FROM events")
            db.execute("DELETE FROM items")
            db.execute("DELETE FROM models")
            db.insert_rows("items", items)
            db.insert_rows("events", events)
            rebuild_fts(db)
    return db, len(items), len(events)


def run(seed: int, db) -> dict:
    from merch_app.model.hybrid import HybridConfig
    from merch_app.services.training import train

    marks: dict[str, float] = {}

    def progress(p):
        marks.setdefault(p.data.get("phase", "?"), time.perf_counter())

    t0 = time.perf_counter()
    version = train(db, HybridConfig(split_date=SPLIT, seed=seed, activate="always"), progress=progress,
                    name=f"quality seed {seed}")
    total = time.perf_counter() - t0
    fit = marks.get("evaluate", time.perf_counter()) - marks.get("train", t0)
    return {"seed": seed, "model_id": version.model_id, "metrics": version.metrics, "train_job_s": total,
            "fit_s": fit, "train_seconds": version.train_seconds, "ablation": ablation(db, version.model_id),
            "encode_s": marks.get("train", t0) - t0, "evaluate_save_s": t0 + total - marks.get("evaluate", t0 + total),
            "load_avg": os.getloadavg()[0]}


def ablation(db, model_id: str) -> dict:
    """The trained model scored as of the split with its own-item CF weight α_own set to 0.

    That is the format-2 way of adding the CF part to the user's own items (at
    the same weight as to new items); nothing is refitted, so the difference
    to the model row is what the separate weight alone is worth.
    """
    from merch_app.evaluation import baselines as bl
    from merch_app.evaluation.metrics import ranking_report
    from merch_app.evaluation.split import relevant_items
    from merch_app.model.interactions import load_interactions, ts_to_days
    from merch_app.model.registry import load_model

    model = load_model(db, model_id)
    split_ts = SPLIT + "T00:00:00Z"
    train = load_interactions(db, model.item_ids, until_ts=split_ts, user_ids=model.user_ids)
    model = model.with_history(train, float(ts_to_days([split_ts])[0]))
    seen = {str(model.user_ids[u]) for u in __import__("numpy").unique(train.user_idx)}
    rel = relevant_items(db, split_ts, seen, model.item_ids)
    users = sorted(u for u in rel if u in model.user_pos and rel[u])
    out = {"alpha_own": model.alpha_own, "alpha": model.alpha, "alpha_cold": model.alpha_cold}
    model.alpha_own = 0.0
    rep = ranking_report(bl.model_ranking(model, users, K), {u: rel[u] for u in users}, K)
    out["alpha_own_0"] = {m: rep[m] for m in (f"precision@{K}", f"ndcg@{K}", f"recall@{K}", "hit_rate@10")}
    return out


def _p(p: float) -> str:
    """A p-value for the tables (randomisation p-values never go below 1/10,001)."""
    return f"{p:.4f}" if p >= 1e-4 else "< 0.0001"


def _row(name: str, m: dict) -> str:
    return (f"| {name} | {m[f'precision@{K}']:.4f} | {m[f'recall@{K}']:.4f} | {m[f'ndcg@{K}']:.4f} | "
            f"{m[f'map@{K}']:.4f} | {m.get('hit_rate@10', float('nan')):.4f} | {m['coverage']:.4f} |")


def section(runs: list[dict], n_items: int, n_events: int, machine: dict) -> str:
    first = runs[0]["metrics"]
    base = first["baselines"]
    labels = {"user_history": "user history (own items by count, then popularity)",
              "popularity": "popularity", "cf_only": "CF only (bilinear + item bias, no history)",
              "text_only": "text only (BERT user · item)"}
    lines = ["<!-- quality:model -->", "## Recommendations: hybrid model vs baselines (Online Retail)", "",
             f"Protocol: UCI Online Retail, rows with a customer id, quantity > 0, price > 0, non-cancelled "
             f"invoice, item code `^\\d{{5}}[A-Za-z]*$` ({n_events:,} purchase rows, {n_items:,} items). "
             f"Train before {SPLIT}, test on purchases from then on for the {first['n_test_users']:,} users "
             f"seen in training; relevant = distinct items bought in the test period.  Workspace built from the "
             f"CSV with exactly these filters; training is the real job (`merch-app train --split-date {SPLIT}`: "
             f"MiniLM item and user vectors, fit with early stopping on an internal validation cut, "
             f"evaluation, registry).  Produced by `benchmarks/bench_quality.py` on {machine_line(machine)}.", "",
             f"| ranker (seed {runs[0]['seed']}) | P@{K} | R@{K} | NDCG@{K} | MAP@{K} | hit@{K} | coverage |",
             "|---|---|---|---|---|---|---|", _row("**hybrid model**", first["model"])]
    for key in ("user_history", "popularity", "cf_only", "text_only"):
        lines.append(_row(labels[key], base[key]))
    strongest = first["strongest_baseline"]
    lines += ["", f"Strongest baseline: {labels[strongest]}.  Model − strongest: "
              f"P@{K} {first['model'][f'precision@{K}'] - base[strongest][f'precision@{K}']:+.4f}, "
              f"NDCG@{K} {first['model'][f'ndcg@{K}'] - base[strongest][f'ndcg@{K}']:+.4f}."]
    if all(r["metrics"].get("paired_vs_strongest") for r in runs):
        lines += ["", f"Paired test per test user, model vs {labels[strongest]} (the same "
                  f"{first['n_test_users']:,} users; Δ = mean of the per-user difference, p two-sided: "
                  "randomisation with 10,000 sign flips and paired t-test; wins/losses/ties count users):", "",
                  "| seed | metric | model | baseline | Δ [95% CI] | p (randomisation) | p (t-test) | "
                  "wins / losses / ties |", "|---|---|---|---|---|---|---|---|"]
        for r in runs:
            m, b = r["metrics"]["model"], r["metrics"]["baselines"][strongest]
            for key, name in ((f"ndcg@{K}", f"NDCG@{K}"), (f"precision@{K}", f"P@{K}")):
                t = r["metrics"]["paired_vs_strongest"][key]
                lines.append(f"| {r['seed']} | {name} | {m[key]:.4f} | {b[key]:.4f} | {t['delta']:+.4f} "
                             f"[{t['ci_delta'][0]:+.4f}, {t['ci_delta'][1]:+.4f}] | {_p(t['p_randomization'])} | "
                             f"{_p(t['p_t'])} | {t['wins']} / {t['losses']} / {t['ties']} |")
    if len(runs) > 1:
        def ms(key, src):
            vals = [src(r)[key] for r in runs]
            return f"{mean(vals):.4f} ± {pstdev(vals):.4f}"
        lines += ["", f"Over seeds {', '.join(str(r['seed']) for r in runs)} (mean ± sd): model P@{K} "
                  f"{ms(f'precision@{K}', lambda r: r['metrics']['model'])}, NDCG@{K} "
                  f"{ms(f'ndcg@{K}', lambda r: r['metrics']['model'])}, recall@{K} "
                  f"{ms(f'recall@{K}', lambda r: r['metrics']['model'])}, hit@{K} "
                  f"{ms('hit_rate@10', lambda r: r['metrics']['model'])}; the model beats the strongest baseline "
                  f"on both P@{K} and NDCG@{K} in {sum(r['metrics']['beats_strongest'] for r in runs)} of "
                  f"{len(runs)} runs."]
    cs = first["cold_start"]
    if cs.get("model"):
        lines += ["", f"Cold start: {cs['n_cold_items_relevant']} items first sold in the test period are relevant "
                  f"for someone ({cs['cold_share_of_relevant_pairs']:.1%} of relevant user-item pairs; "
                  f"{cs['n_cold_items_catalogue']} catalogue items have no training sales).  Their ID "
                  f"embedding only ever met them as sampled negatives, so they score through their text vector "
                  f"(B·t_i), with the bilinear weight α + α_cold and the learned weight of 'unsold' (format 6; "
                  f"see the cold-start section below).", "",
                  "| ranker | mean percentile of cold relevant items (1 = top) | their recall@10 | "
                  "cold share of top-10 slots |", "|---|---|---|---|"]
        for name in ("model", "text_only", "popularity"):
            c = cs[name]
            lines.append(f"| {name} | {c['mean_percentile']:.3f} | {c[f'recall@{K}']:.4f} | "
                         f"{c[f'cold_share_of_top{K}']:.4f} |")
    bh = first.get("beyond_history")
    if bh:
        lines += ["", f"Beyond history (items the user had not bought before; "
                  f"{bh['share_of_relevant_pairs']:.0%} of relevant pairs; history removed from lists and labels):", "",
                  f"| ranker | P@{K} | R@{K} | NDCG@{K} |", "|---|---|---|---|"]
        for name in ("model", "cf_only", "text_only", "popularity"):
            c = bh[name]
            lines.append(f"| {name} | {c[f'precision@{K}']:.4f} | {c[f'recall@{K}']:.4f} | {c[f'ndcg@{K}']:.4f} |")
    repeat = 1.0 - bh["share_of_relevant_pairs"] if bh else float("nan")
    gain_pop = bh["model"][f"ndcg@{K}"] / max(bh["popularity"][f"ndcg@{K}"], 1e-9) if bh else float("nan")
    gain_cf = bh["model"][f"ndcg@{K}"] / max(bh["cf_only"][f"ndcg@{K}"], 1e-9) if bh else float("nan")
    ab = runs[0].get("ablation") or {}
    n_beat = sum(bool(r["metrics"].get("beats_strongest")) for r in runs)
    pvals = [t[key] for r in runs for t in (r["metrics"].get("paired_vs_strongest") or {}).values()
             for key in ("p_randomization", "p_t")]
    p_max = _p(max(pvals)) if pvals else "n/a"
    m0, b0 = first["model"], base["user_history"]
    below = [f"{name} ({m0[key]:.4f} vs {b0[key]:.4f})" for key, name in
             ((f"recall@{K}", f"recall@{K}"), ("hit_rate@10", f"hit@{K}")) if m0[key] <= b0[key]]
    hit_note = (f"recall@{K} and hit@{K} are above it as well" if not below else
                " and ".join(below) + (" is" if len(below) == 1 else " are") + f" not above it (seed "
                f"{runs[0]['seed']})" + (": the model has more relevant items per list, the baseline slightly "
                                         "more users with at least one relevant item in its top 10"
                                         if m0["hit_rate@10"] <= b0["hit_rate@10"] else ""))
    lines += ["", f"How to read this.  Re-purchases carry this protocol: {repeat:.0%} of the relevant pairs are items the "
              "user bought before, and they are the predictable ones (the user-history list gets most of its "
              "hits from them), so that list is a strong baseline. "
              "The model scores M(u,i) = (α + α_cold·[i unsold])·uᵀWv + β·b(i) + [γ·h(u,i) + α_own·[u bought i]·uᵀWv] "
              "+ η·g(i): the bilinear CF part (ID embeddings plus projected MiniLM vectors; items without sales "
              "get their own weight), an item bias, the history part "
              "(the CF weight on the user's own items is α + α_own, and the user's own history with the "
              "item h: log counts, recency-weighted counts measured from the user's last "
              "purchase, share of the user's purchases, number of distinct purchase days, the item's repeat "
              "propensity = share of its buyers who bought it on two or more days, days since the user last "
              "bought it, how overdue it is against the user's own re-buy interval for it, and the item's "
              "sales in total and in the last 30/90 days, and (format 5) the user's purchases of it in the "
              "same weeks a year earlier and in Christmas seasons, alone and times the closeness of the next "
              "Christmas; all 0 for items the user never bought) and item trend g (sales in the last 30/90 "
              "days, novelty, and (format 5) the item's sales in the same weeks a year earlier, its season "
              "lift and its share of sales in Christmas seasons, alone and times the closeness of the next "
              "Christmas; see the seasonality section; and (format 6) 'unsold', 1 for an item without "
              "sales yet).  The weights of the history and trend "
              "features are learned on internal cuts inside the training period (history and item statistics "
              "from events before the cut only, labels = what was bought after it), with the CF part trained "
              "only on events before the cut, so the model learns how much repeat and how much CF matter "
              "from the same question the test asks.", "",
              f"Why the previous model (format 2: P@{K} 0.3441, NDCG@{K} 0.3875 on seed 42) only tied with "
              "the baseline, found by comparing the two lists user by user: (1) both fill about 9.5 of the "
              "10 slots with the user's own items, so the whole contest is their order; (2) the CF part was "
              "added to own items at the same weight as to new ones, but it was fitted on those very "
              "purchases, so it re-orders the user's items by how well it memorised them, not by what comes "
              "back (diagnosis on seed 42 with the new history features but one CF weight: the full score "
              "gave NDCG@10 0.391, the same lists with own items ordered by the history and trend parts "
              "alone 0.396) — the combiner now fits a separate weight α_own for "
              f"own items (seed {runs[0]['seed']}: α {ab.get('alpha', float('nan')):.3f}, α_own "
              f"{ab.get('alpha_own', float('nan')):+.3f}; the same model with α_own = 0 scores P@{K} "
              f"{ab.get('alpha_own_0', {}).get(f'precision@{K}', float('nan')):.4f}, NDCG@{K} "
              f"{ab.get('alpha_own_0', {}).get(f'ndcg@{K}', float('nan')):.4f}); (3) most own items were "
              "bought once, so counts tie and the baseline's tie-break by popularity did much of its work, "
              "while the model only had item trend at one weight for all items — the own-item sales, "
              "distinct days and repeat propensity (consumables come back, one-off items do not) now order "
              "them directly.  Early stopping now watches the CF net's own score (uᵀWv + item bias), not "
              "the combiner-weighted one, whose α/β are refitted every epoch.", "",
              f"Against the baseline: P@{K} and NDCG@{K} are above it in {n_beat} of {len(runs)} "
              f"seed{'s' if len(runs) > 1 else ''} (largest paired p-value {p_max}, see the table above); "
              f"{hit_note}.  Beyond repeats the gain is discovery: on items new to "
              f"the user its NDCG@{K} is {gain_pop:.1f}× popularity's and {gain_cf:.1f}× its own CF part's.  "
              "Why not more: the test period is Sep–Dec (Christmas stock) and the data start in Dec 2010, "
              "so no internal cut has a year before it and the same-weeks-last-year features get weight 0 "
              "here; only the Christmas-share features are learned (from cuts at different distances to "
              "Christmas), and together they leave NDCG@10 where it was (see the seasonality section).  Items "
              "never sold before the cut-off had no trend signal and ranked at the 0.28 mean percentile; since "
              "format 6 the internal cuts' own new items teach the model how to score them (the 'unsold' "
              "feature and α_cold), which lifts them above the median and, by no longer mistaking the cuts' "
              "new items for dead stock, the whole list (+0.007 NDCG@10 in each of 3 seeds; see the "
              "cold-start section below)."]
    comb = first.get("combiner", {})
    times = ", ".join(f"seed {r['seed']}: fit {r['fit_s']:.0f} s, job {r['train_job_s']:.0f} s"
                      + (f" (encoder + text vectors {r['encode_s']:.0f} s, evaluation and saving {r['evaluate_save_s']:.0f} s, "
                         f"load average {r['load_avg']:.1f})" if "encode_s" in r else "") for r in runs)
    lines += ["", f"Training time on this 2-core machine ({times}; the job includes item/user text vectors "
              f"from the cache, evaluation and saving; run niced next to other benchmarks on the "
              f"same 2 cores, so a job can take longer than its fit suggests).  Best epoch {first.get('best_epoch')}; learned "
              f"combination weights α (bilinear) {comb.get('alpha', float('nan')):.3f}, "
              f"β (item bias) {comb.get('beta', float('nan')):.3f}, α_own (bilinear on own items) "
              f"{ab.get('alpha_own', float('nan')):+.3f}, α_cold (bilinear on unsold items) "
              f"{ab.get('alpha_cold', float('nan')):+.3f}.", "<!-- /quality:model -->"]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path = DOC) -> None:
    """Replace (or append) the model section of docs/quality.md, keeping the others."""
    start, end = "<!-- quality:model -->", "<!-- /quality:model -->"
    doc = path.read_text(encoding="utf-8") if path.exists() else "# Quality\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    doc = pattern.sub(lambda _: text.rstrip(), doc) if pattern.search(doc) else \
        doc.rstrip("\n") + "\n\n" + text.rstrip() + "\n"
    tmp = path.with_name(path.name + ".model.tmp")
    tmp.write_text(doc, encoding="utf-8")
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="42", help="comma-separated seeds (first one fills the table)")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/quality.md alone")
    ap.add_argument("--from-json", action="store_true",
                    help="rewrite the section from benchmarks/out/quality_runs.json without training")
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads((ROOT / "benchmarks" / "out" / "quality_runs.json").read_text())
        text = section(saved["runs"], saved["n_items"], saved["n_events"], saved["machine"])
        print(text)
        if not args.no_doc:
            write_section(text)
        return
    machine = machine_info()
    db, n_items, n_events = build_workspace()
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        r = run(seed, db)
        m, b = r["metrics"]["model"], r["metrics"]["baselines"]
        print(json.dumps({"seed": seed, "fit_s": round(r["fit_s"], 1), "job_s": round(r["train_job_s"], 1),
                          "model": {k: round(m[k], 4) for k in (f"precision@{K}", f"ndcg@{K}")},
                          "user_history": {k: round(b["user_history"][k], 4) for k in (f"precision@{K}", f"ndcg@{K}")},
                          "beats": r["metrics"]["beats_strongest"]}), flush=True)
        runs.append(r)
    (ROOT / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "out" / "quality_runs.json").write_text(json.dumps(
        {"runs": runs, "n_items": n_items, "n_events": n_events, "machine": machine}, indent=1, default=str))
    text = section(runs, n_items, n_events, machine)
    print(text)
    if not args.no_doc:
        write_section(text)


if __name__ == "__main__":
    main()

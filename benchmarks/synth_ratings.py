"""A MovieLens-latest-small-shaped synthetic ratings set, and the explicit-ratings measurement on it.

    python benchmarks/synth_ratings.py [--seeds 42 1 2] [--out benchmarks/out/ratings.json]

Data (seeded, ``generate(seed)``): 610 users, 9,742 items with titles and genres (the catalogue),
~100k ratings 0.5-5 in half steps.  Rating = 3.5 + user bias + item bias + genre affinity
(user taste . item genres) + a rank-4 latent taste + a user drift over time + noise, rounded to
half steps.  Users come in bursts: a first session anywhere in 1996-2018, half of them come back
in later sessions, so the range split leaves test users new and the quantile split does not.
Item popularity is Zipf-like; titles carry genre words (what the text vectors can read).

The measurement imports it into a fresh workspace, trains with ``services.training.train``
(hashing text encoder: no model download, the same on every machine) on the 80th-percentile
split, and prints the model, damped biases and global mean by known / new user / new item with
the paired test from ``evaluate_model``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GENRES = ["Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
          "War", "Western"]
GENRE_WORDS = {g: [f"{g.lower().replace('-', '')}{k}" for k in ("", "s", "ing")] for g in GENRES}
WORDS = ("night day love man woman city river king last first return secret story house dark light "
         "blood star road home war game heart lost dream girl boy world time fire water sky moon").split()
N_USERS, N_ITEMS, TARGET = 610, 9742, 100_836
T0 = datetime(1996, 3, 29, tzinfo=timezone.utc).timestamp()
T1 = datetime(2018, 9, 24, tzinfo=timezone.utc).timestamp()


def generate(seed: int = 0, n_users: int = N_USERS, n_items: int = N_ITEMS, target: int = TARGET) -> dict:
    """Items (id, title, genres) and ratings (user, item, value, unix time) with the planted parts."""
    rng = np.random.default_rng(seed)
    g = len(GENRES)
    item_genres = np.zeros((n_items, g))
    titles, tags = [], []
    for i in range(n_items):
        k = rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25])
        gs = rng.choice(g, k, replace=False, p=np.linspace(2, 1, g) / np.linspace(2, 1, g).sum())
        item_genres[i, gs] = 1.0
        words = list(rng.choice(WORDS, rng.integers(1, 3))) + [rng.choice(GENRE_WORDS[GENRES[gs[0]]])]
        rng.shuffle(words)
        titles.append(f"{' '.join(words).title()} ({1950 + int(rng.integers(0, 68))})")
        tags.append("|".join(GENRES[j] for j in gs))
    item_genres /= np.sqrt(item_genres.sum(1, keepdims=True))
    b_u = rng.normal(0, 0.40, n_users)
    b_i = rng.normal(0, 0.45, n_items)
    taste = rng.normal(0, 0.45, (n_users, g))  # genre affinity
    lat_u, lat_i = rng.normal(0, 0.35, (n_users, 4)), rng.normal(0, 0.35, (n_items, 4))
    drift = rng.normal(0, 0.15, n_users)  # rating points per year since the user's first rating
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.9
    pop = pop[rng.permutation(n_items)]
    pop /= pop.sum()
    per_user = np.maximum(20, rng.lognormal(np.log(70), 1.1, n_users)).astype(int)
    per_user = np.minimum((per_user * target / per_user.sum()).astype(int) + 1, n_items // 2)
    per_user = np.maximum(per_user, 20)
    # user activity: a first session (later years more likely), half come back in 1-4 later sessions
    start = T0 + (T1 - T0) * rng.beta(1.6, 1.0, n_users)
    users, items, values, ts = [], [], [], []
    for u in range(n_users):
        n = per_user[u]
        chosen = rng.choice(n_items, n, replace=False, p=pop)
        n_sess = 1 if rng.random() < 0.5 else int(rng.integers(2, 6))
        sess_t = np.sort(np.concatenate([[start[u]], start[u] + (T1 - start[u]) * rng.random(n_sess - 1)]))
        sess = rng.integers(0, n_sess, n)
        t = sess_t[sess] + rng.uniform(0, 3 * 86400, n)
        t = np.minimum(t, T1)
        years = (t - start[u]) / (365.25 * 86400)
        r = (3.5 + b_u[u] + b_i[chosen] + item_genres[chosen] @ taste[u] + lat_i[chosen] @ lat_u[u]
             + drift[u] * years + rng.normal(0, 0.7, n))
        r = np.clip(np.round(r * 2) / 2, 0.5, 5.0)
        users += [u] * n
        items += chosen.tolist()
        values += r.tolist()
        ts += t.tolist()
    return {"items": [{"item_id": f"m{i}", "title": titles[i], "tags": tags[i], "category": tags[i].split("|")[0]}
                      for i in range(n_items)],
            "ratings": (np.array(users), np.array(items), np.array(values), np.array(ts))}


def fill_workspace(db, data: dict) -> None:
    """Items and rating events of ``generate`` into an open workspace (FTS rebuilt)."""
    from merch_app.data.workspace import rebuild_fts

    u, i, v, t = data["ratings"]
    iso = [datetime.fromtimestamp(x, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") for x in t]
    with db.conn:
        db.insert_rows("items", data["items"])
        db.insert_rows("events", [{"user_id": f"u{a}", "item_id": f"m{b}", "event_type": "rating", "value": float(c),
                                   "ts": s} for a, b, c, s in zip(u, i, v, iso)])
    rebuild_fts(db)


def measure(seed: int, data: dict, split: str = "quantile", encoder: str = "hashing:256", **cfg_kw) -> dict:
    from merch_app.data.workspace import open_workspace
    from merch_app.model.hybrid import HybridConfig
    from merch_app.services.training import train

    with tempfile.TemporaryDirectory() as tmp:
        db = open_workspace(Path(tmp) / "ws.sqlite")
        fill_workspace(db, data)
        cfg = HybridConfig(seed=seed, split=split, encoder=encoder, activate="never", **cfg_kw)
        t0 = time.perf_counter()
        version = train(db, cfg)
        wall = time.perf_counter() - t0
        db.close()
    m = version.metrics
    return {"seed": seed, "split": m.get("split"), "split_date": m.get("split_date"),
            "train_seconds": version.train_seconds, "wall_seconds": wall, "best_epoch": m.get("best_epoch"),
            "mae": m.get("mae"), "rmse": m.get("rmse"), "ratings": m.get("ratings"),
            "n_test_users": m.get("n_test_users"), "epochs": m.get("epochs"),
            **{k: version.config.get(k) for k in ("rating_drift_shrink", "rating_taste_shrink")}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--split", default="quantile")
    ap.add_argument("--baseline", choices=["on", "off"], default="on")
    ap.add_argument("--drift", choices=["auto", "off"], default="auto",
                    help="user-bias drift: chosen on the later training ratings (default) or off")
    ap.add_argument("--taste", choices=["auto", "off"], default="auto",
                    help="user taste in text space: chosen on the later training ratings (default) or off")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    data = generate(args.data_seed)
    u, i, v, t = data["ratings"]
    print(f"data: {len(set(u.tolist()))} users, {len(data['items'])} items, {len(v)} ratings, "
          f"mean {v.mean():.3f}, values {sorted(set(v.tolist()))[:3]}..{max(v)}")
    runs = []
    for seed in args.seeds:
        r = measure(seed, data, args.split, rating_baseline=args.baseline == "on", rating_drift=args.drift == "auto",
                    rating_taste=args.taste == "auto")
        runs.append(r)
        rep = r["ratings"]
        print(f"seed {seed}: split {r['split_date'][:10]} ({r['split']}), train {r['train_seconds']:.1f} s, "
              f"best epoch {r['best_epoch']}, drift λ {r['rating_drift_shrink']}, taste λ {r['rating_taste_shrink']}")
        for seg in ("all", "known", "new_user", "new_item"):
            row = rep[seg]
            print(f"  {seg:9} n={row['n']:6}  " + "  ".join(
                f"{k} {row[k]['mae']:.4f}/{row[k]['rmse']:.4f}"
                for k in ("model", "damped_biases", "damped_item_bias", "global_mean")))
        for seg, p in rep["paired"].items():
            print(f"  paired {seg}: dMAE {p['mae_delta']:+.4f} CI {p['ci_mae_delta'][0]:+.4f}..{p['ci_mae_delta'][1]:+.4f}"
                  f" p {p['p_t']:.2g} wins {p['wins']} losses {p['losses']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(runs, indent=2, default=float))


if __name__ == "__main__":
    main()

"""Synthetic shop data at benchmark scale, in the CSV formats users import.

Produces a catalogue (``item_id,title,description,tags,category,price``) and an
event log (``user_id,item_id,event_type,value,timestamp,query,session_id``)
with power-law item popularity, sessions that walk search → view → click →
cart → purchase, and titles built from a product vocabulary.

Usage::

    python benchmarks/synth_data.py --items 100000 --events 1000000 --out benchmarks/out/synth_100k
"""
from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ADJECTIVES = (
    "red blue green white black pink gold silver vintage retro floral striped spotty "
    "wooden glass ceramic metal enamel paper felt knitted large small mini jumbo "
    "french english christmas easter summer garden kitchen party rustic classic"
).split()
NOUNS = (
    "mug cup bowl plate candle holder lantern heart star bag box tin jar frame clock "
    "cushion blanket teapot spoon bottle card ribbon sign doorstop garland bunting "
    "notebook pencil tray basket vase mirror hook lamp light umbrella purse apron"
).split()
MATERIALS = "set of 3|set of 6|pack of 12|with lid|with handle|design|assorted".split("|")
CATEGORIES = (
    "kitchen home-decor lighting gifts stationery garden party christmas bags textiles"
).split()
EVENT_FUNNEL = ("search", "view", "click", "cart", "purchase")
# Probability that a session continues from one funnel step to the next.
CONTINUE = np.array([0.9, 0.6, 0.35, 0.5])



def random_events(db, n_users: int, n_items: int, n_events: int, dim: int, seed: int = 0):
    """Insert ``n_events`` random view/click/cart/purchase events of 2023; random unit item vectors.

    Parameters
    ----------
    db
        An open workspace (the events go in one transaction).
    n_users, n_items, n_events, dim
        Sizes; users are ``U<n>``, items ``P<nnnnn>``.
    seed
        Random seed (the same seed gives the same events and vectors).

    Returns
    -------
    types.SimpleNamespace
        ``item_ids``, ``item_vecs`` ((n_items, dim) float32 unit rows) and the
        events as inserted: ``users`` and ``items`` (indices), ``types``, ``ts``.
    """
    rng = np.random.default_rng(seed)
    item_ids = [f"P{i:05d}" for i in range(n_items)]
    item_vecs = rng.normal(size=(n_items, dim)).astype(np.float32)
    item_vecs /= np.linalg.norm(item_vecs, axis=1, keepdims=True)
    users = rng.integers(0, n_users, n_events)
    items = rng.integers(0, n_items, n_events)
    types = np.array(["view", "click", "cart", "purchase"])[rng.integers(0, 4, n_events)]
    days = rng.integers(0, 365, n_events)
    ts = [f"2023-{1 + d // 31 % 12:02d}-{1 + d % 28:02d}T10:00:00Z" for d in days]
    with db.conn:
        db.conn.executemany(
            "INSERT INTO events (user_id, item_id, event_type, ts) VALUES (?, ?, ?, ?)",
            zip((f"U{u}" for u in users), (item_ids[i] for i in items), types.tolist(), ts))
    return SimpleNamespace(item_ids=item_ids, item_vecs=item_vecs, users=users, items=items, types=types, ts=ts)

def make_catalogue(n_items: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random but plausible items; returns column arrays."""
    adj1 = rng.integers(0, len(ADJECTIVES), n_items)
    adj2 = rng.integers(0, len(ADJECTIVES), n_items)
    noun = rng.integers(0, len(NOUNS), n_items)
    mat = rng.integers(0, len(MATERIALS), n_items)
    cat = (noun * 7 + adj1) % len(CATEGORIES)
    titles = np.array(
        [
            f"{ADJECTIVES[a].upper()} {ADJECTIVES[b].upper()} {NOUNS[n].upper()} {MATERIALS[m].upper()}"
            for a, b, n, m in zip(adj1, adj2, noun, mat)
        ],
        dtype=object,
    )
    ids = np.array([f"S{i:07d}" for i in range(n_items)], dtype=object)
    price = np.round(rng.lognormal(1.2, 0.8, n_items), 2)
    return {"ids": ids, "titles": titles, "noun": noun, "adj": adj1, "cat": cat, "price": price}


def write_catalogue(cat: dict[str, np.ndarray], path: Path) -> None:
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1, newline="") as fh:
        fh.write("item_id,title,description,tags,category,price\n")
        lines = []
        for i in range(len(cat["ids"])):
            noun = NOUNS[cat["noun"][i]]
            lines.append(
                f'{cat["ids"][i]},{cat["titles"][i]},"A {ADJECTIVES[cat["adj"][i]]} {noun} for every home",'
                f'{noun};{ADJECTIVES[cat["adj"][i]]},{CATEGORIES[cat["cat"][i]]},{cat["price"][i]}\n'
            )
            if len(lines) >= 50_000:
                fh.write("".join(lines))
                lines.clear()
        fh.write("".join(lines))


def write_events(
    cat: dict[str, np.ndarray], n_events: int, n_users: int, path: Path, rng: np.random.Generator
) -> int:
    """Write about ``n_events`` events in sessions; returns the number written."""
    n_items = len(cat["ids"])
    # Zipf-like popularity over a random permutation of items.
    ranks = np.arange(1, n_items + 1, dtype=np.float64)
    pop = 1.0 / ranks**1.05
    pop /= pop.sum()
    order = rng.permutation(n_items)
    user_weights = 1.0 / np.arange(1, n_users + 1) ** 0.8
    user_weights /= user_weights.sum()
    start = np.datetime64("2024-01-01T00:00:00")
    span_s = 365 * 86400
    written = 0
    session = 0
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1, newline="") as fh:
        fh.write("user_id,item_id,event_type,value,timestamp,query,session_id\n")
        while written < n_events:
            batch = min(200_000, max(1, (n_events - written) // 3))
            items = order[rng.choice(n_items, size=batch, p=pop)]
            users = rng.choice(n_users, size=batch, p=user_weights)
            t0 = rng.integers(0, span_s, size=batch)
            # Funnel depth per session: how many steps after "search".
            cont = rng.random((batch, 4)) < CONTINUE
            depth = np.where(cont.all(axis=1), 4, np.argmin(cont, axis=1))
            lines = []
            for j in range(batch):
                it = items[j]
                query = f"{ADJECTIVES[cat['adj'][it]]} {NOUNS[cat['noun'][it]]}"
                uid = f"U{users[j]:07d}"
                sid = f"s{session}"
                session += 1
                ts = int(t0[j])
                for step in range(depth[j] + 1):
                    ev = EVENT_FUNNEL[step]
                    when = str(start + np.timedelta64(ts + 20 * step, "s"))
                    q = query if ev == "search" else ""
                    val = 1 if ev != "purchase" else 1 + (j % 3)
                    lines.append(f"{uid},{cat['ids'][it]},{ev},{val},{when}Z,{q},{sid}\n")
                if len(lines) >= 50_000:
                    fh.write("".join(lines))
                    written += len(lines)
                    lines.clear()
                    if written >= n_events:
                        break
            fh.write("".join(lines))
            written += len(lines)
    return written


def generate(n_items: int, n_events: int, out: Path, seed: int = 7) -> dict[str, object]:
    """Generate ``catalogue.csv.gz`` and ``events.csv.gz`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    cat = make_catalogue(n_items, rng)
    write_catalogue(cat, out / "catalogue.csv.gz")
    n_users = max(100, n_events // 40)
    written = write_events(cat, n_events, n_users, out / "events.csv.gz", rng)
    return {
        "items": n_items,
        "events": written,
        "users": n_users,
        "seconds": round(time.perf_counter() - t, 1),
        "catalogue": str(out / "catalogue.csv.gz"),
        "events_file": str(out / "events.csv.gz"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/synth"))
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(generate(args.items, args.events, args.out, args.seed))


if __name__ == "__main__":
    main()

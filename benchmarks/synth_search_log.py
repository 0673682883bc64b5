"""A seeded, noisy search log over a real catalogue (for the fine-tuning benchmark).

Shoppers do not type catalogue titles.  Each session here has a target item
(drawn by its purchase popularity, mixed with uniform so the tail is searched
too) and a query made from the target's title the way people write it:

* shop vocabulary that differs from the titles (the point of fine-tuning):
  ``christmas`` -> ``xmas``, ``mug`` <-> ``cup``, ``holder`` <-> ``stand``,
  ``lantern`` <-> ``light``, ``retrospot`` -> ``polka dot``, colour words
  (``ivory`` -> ``off white``), ``childrens`` -> ``kids`` ... (:data:`VOCAB`,
  each replacement taken with probability ``p_synonym`` per word);
* dropped words (stop words and numbers always, other words with
  ``p_drop``; at most four words kept, the title's last word, usually the
  noun, is kept more often), a shuffled word order now and then;
* misspellings (``p_typo`` per query: a swapped, dropped or doubled letter).

Then the session's events: no click at all with probability ``p_no_click``;
otherwise a click on a wrong item with probability ``p_noise`` (an item that
shares a word with the query, else a popular one; after it the shopper finds
the target in a third of the cases), else a click on the target; after a
click on the target a cart with ``p_cart`` and a purchase of the carted item
with ``p_purchase``.  Sessions are spread uniformly over the time range of
the catalogue's purchase events, shoppers are ``S00001`` ... (Zipf).

Output: an events CSV the importer accepts (``user_id,item_id,event_type,value,
timestamp,query,session_id``; search rows carry the query and no item) and the
sessions with their targets (for the judged test set,
:func:`judged_queries`: sessions from the split on, the target graded 3).

Usage::

    python benchmarks/synth_search_log.py --workspace W.sqlite --out log.csv.gz [--sessions 30000] [--seed 7]
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# catalogue word -> what shoppers type instead (one is drawn); a word not here is typed as written
VOCAB: dict[str, list[str]] = {
    "christmas": ["xmas", "xmas", "festive"], "xmas": ["christmas"],
    "mug": ["cup"], "mugs": ["cups"], "cup": ["mug"], "cups": ["mugs"], "teacup": ["tea mug"],
    "holder": ["stand"], "holders": ["stands"], "stand": ["holder"],
    "lantern": ["light", "lamp"], "lanterns": ["lights"], "light": ["lamp", "lantern"], "lights": ["lamps"],
    "t-light": ["tealight", "tea light"], "t-lights": ["tealights"], "tealight": ["candle"],
    "candle": ["candles"], "candles": ["candle"],
    "bag": ["tote", "sack"], "bags": ["totes"], "box": ["case", "container"], "boxes": ["cases"],
    "heart": ["love"], "hearts": ["love"], "sweetheart": ["love"],
    "vintage": ["retro", "old style"], "antique": ["shabby chic", "aged"],
    "retrospot": ["polka dot", "spotty"], "polkadot": ["polka dot", "spotty"], "spotty": ["dotty"],
    "red": ["scarlet", "crimson"], "pink": ["blush"], "blue": ["navy"], "green": ["sage"],
    "ivory": ["off white"], "cream": ["off white"], "black": ["dark"], "silver": ["chrome"],
    "gold": ["golden"], "white": ["snow"],
    "small": ["mini", "little"], "mini": ["small", "tiny"], "large": ["big"], "jumbo": ["big", "giant", "xl"],
    "decoration": ["ornament", "decor"], "decorations": ["ornaments", "decor"], "hanging": ["hanger"],
    "cake": ["baking"], "card": ["greeting card"], "cards": ["greetings cards"],
    "wrap": ["wrapping paper", "gift wrap"], "garden": ["outdoor", "patio"], "sign": ["plaque"],
    "frame": ["picture frame"], "photo": ["picture"], "bottle": ["flask"], "cushion": ["pillow"],
    "cover": ["case"], "doormat": ["door mat", "mat"], "cutlery": ["flatware"],
    "childrens": ["kids"], "children's": ["kids"], "childs": ["kids"], "girl": ["girls"],
    "tin": ["canister"], "jar": ["pot"], "bowl": ["dish"], "plate": ["dish"], "tray": ["platter"],
    "hook": ["peg"], "hooks": ["pegs"], "mirror": ["looking glass"], "storage": ["organiser"],
    "notebook": ["notepad", "journal"], "pencils": ["crayons"], "set": ["pack"], "pack": ["set"],
    "assorted": ["mixed"], "wooden": ["wood"], "zinc": ["metal", "galvanised"], "ceramic": ["pottery"],
    "gift": ["present"], "birthday": ["bday"], "chocolate": ["choc"], "flower": ["floral"],
    "flowers": ["floral"], "rabbit": ["bunny"], "home": ["house"], "kitchen": ["cooking"],
    "necklace": ["jewellery"], "bracelet": ["jewellery"], "earrings": ["jewellery"],
    "clock": ["wall clock"], "lunch": ["packed lunch"], "party": ["celebration"], "drawer": ["cupboard"],
    "knob": ["handle"], "bunting": ["garland"], "garland": ["bunting"], "parasol": ["umbrella"],
    "umbrella": ["brolly"], "alarm": ["wake up"], "napkins": ["serviettes"], "tissues": ["hankies"],
    "scarf": ["wrap"], "purse": ["wallet"], "tumbler": ["glass"], "beaker": ["cup"],
}
STOP = {"of", "with", "and", "in", "the", "a", "&", "+", "design", "w/", "-", "/"}
_TOKEN = re.compile(r"[A-Za-z][A-Za-z'\-]*")


@dataclass(frozen=True)
class Session:
    """One generated search session (``target`` is the item the shopper wanted)."""

    session_id: str
    user_id: str
    ts: str
    query: str
    target: str
    clicked_target: bool
    noise_click: Optional[str]


def _typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 5:
        return word
    i = int(rng.integers(1, len(word) - 1))
    kind = int(rng.integers(3))
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def make_query(title: str, rng: np.random.Generator, *, p_synonym: float = 0.7, p_drop: float = 0.3,
               p_typo: float = 0.12, p_shuffle: float = 0.1, max_words: int = 4) -> str:
    """A shopper's query for an item titled ``title`` (see the module docstring)."""
    words = [w.lower() for w in _TOKEN.findall(title)]
    words = [w for w in words if w not in STOP and len(w) > 1] or [w.lower() for w in title.split()][:1] or ["gift"]
    last = len(words) - 1
    kept = [w for j, w in enumerate(words) if rng.random() >= (p_drop * 0.3 if j == last else p_drop)]
    if not kept:
        kept = [words[last]]
    if len(kept) > max_words:
        idx = sorted(rng.choice(len(kept) - 1, max_words - 1, replace=False))
        kept = [kept[j] for j in idx] + [kept[-1]]
    out = []
    for w in kept:
        alts = VOCAB.get(w)
        out.append(alts[int(rng.integers(len(alts)))] if alts and rng.random() < p_synonym else w)
    if len(out) > 1 and rng.random() < p_shuffle:
        out = [out[j] for j in rng.permutation(len(out))]
    if rng.random() < p_typo:
        j = int(rng.integers(len(out)))
        out[j] = " ".join(_typo(x, rng) for x in out[j].split())
    return " ".join(out)


def catalogue(db) -> tuple[list[str], list[str], np.ndarray, str, str]:
    """(item ids, titles, purchase counts, first ts, last ts) of the workspace's catalogue."""
    rows = db.execute("SELECT i.item_id, i.title, (SELECT count(*) FROM events e WHERE e.item_id = i.item_id "
                      "AND e.event_type = 'purchase') FROM items i WHERE i.title IS NOT NULL AND i.title != '' "
                      "ORDER BY i.item_id").fetchall()
    first, last = db.execute("SELECT min(ts), max(ts) FROM events WHERE event_type = 'purchase'").fetchone()
    return ([str(r[0]) for r in rows], [str(r[1]) for r in rows], np.array([r[2] for r in rows], float),
            first, last)


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)


def _fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def generate(ids: list[str], titles: list[str], counts: np.ndarray, first_ts: str, last_ts: str, *,
             n_sessions: int = 30000, seed: int = 7, p_no_click: float = 0.25, p_noise: float = 0.2,
             p_cart: float = 0.35, p_purchase: float = 0.6, n_users: int = 4000,
             uniform_share: float = 0.3) -> tuple[list[tuple], list[Session]]:
    """(event rows, sessions) of ``n_sessions`` seeded search sessions over the catalogue."""
    rng = np.random.default_rng(seed)
    pop = counts + 1.0
    p_item = (1 - uniform_share) * pop / pop.sum() + uniform_share / len(ids)
    by_word: dict[str, list[int]] = {}
    for j, t in enumerate(titles):
        for w in set(x.lower() for x in _TOKEN.findall(t)):
            if w not in STOP:
                by_word.setdefault(w, []).append(j)
    user_p = 1.0 / np.arange(1, n_users + 1) ** 0.7
    user_p /= user_p.sum()
    a, b = _parse(first_ts), _parse(last_ts)
    span = (b - a).total_seconds()
    starts = np.sort(rng.random(n_sessions)) * span
    targets = rng.choice(len(ids), n_sessions, p=p_item)
    users = rng.choice(n_users, n_sessions, p=user_p)
    rows: list[tuple] = []
    sessions: list[Session] = []
    for s in range(n_sessions):
        t0 = a + timedelta(seconds=float(starts[s]))
        j = int(targets[s])
        sid, uid = f"q{s:06d}", f"S{int(users[s]) + 1:05d}"
        query = make_query(titles[j], rng)
        rows.append((uid, "", "search", 1, _fmt(t0), query, sid))
        clicked, noise = False, None
        t = t0
        if rng.random() >= p_no_click:
            if rng.random() < p_noise:
                words = [w for w in query.split() if w in by_word]
                pool = by_word[words[int(rng.integers(len(words)))]] if words else []
                pool = [k for k in pool if k != j]
                k = pool[int(rng.integers(len(pool)))] if pool else int(rng.choice(len(ids), p=p_item))
                if k != j:
                    noise = ids[k]
                    t = t + timedelta(seconds=int(rng.integers(5, 60)))
                    rows.append((uid, noise, "click", 1, _fmt(t), "", sid))
                clicked = noise is None or rng.random() < 1 / 3
            else:
                clicked = True
            if clicked:
                t = t + timedelta(seconds=int(rng.integers(5, 90)))
                rows.append((uid, ids[j], "click", 1, _fmt(t), "", sid))
                if rng.random() < p_cart:
                    t = t + timedelta(seconds=int(rng.integers(10, 120)))
                    rows.append((uid, ids[j], "cart", 1, _fmt(t), "", sid))
                    if rng.random() < p_purchase:
                        t = t + timedelta(seconds=int(rng.integers(30, 600)))
                        rows.append((uid, ids[j], "purchase", int(rng.integers(1, 7)), _fmt(t), "", sid))
        sessions.append(Session(sid, uid, _fmt(t0), query, ids[j], clicked, noise))
    return rows, sessions


def write_events(rows: Iterable[tuple], path: Path) -> Path:
    """The events CSV(.gz) of ``rows`` (header ``user_id,item_id,event_type,value,timestamp,query,session_id``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "item_id", "event_type", "value", "timestamp", "query", "session_id"])
        w.writerows(rows)
    return path


def _norm(q: str) -> str:
    return " ".join(q.split()).casefold()


def judged_queries(sessions: Iterable[Session], split_ts: str) -> tuple[dict[str, set[str]], set[str]]:
    """(query -> target items graded 3, for sessions from ``split_ts`` on; queries also typed before it).

    Every test session counts, with or without a click: the target is what the shopper wanted."""
    test: dict[str, set[str]] = {}
    seen: set[str] = set()
    for s in sessions:
        q = _norm(s.query)
        if s.ts >= split_ts:
            test.setdefault(q, set()).add(s.target)
        else:
            seen.add(q)
    return test, seen & set(test)


def write_judged(test: dict[str, set[str]], path: Path) -> Path:
    """A ``query,item_id,grade`` suite CSV (grade 3 = the target)."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["query", "item_id", "grade"])
        for q in sorted(test):
            for i in sorted(test[q]):
                w.writerow([q, i, 3])
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--workspace", required=True, help="a workspace with the catalogue and its purchases")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--sessions", type=int, default=30000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--judged", type=Path, help="also write the judged test set (sessions after the 80 %% split)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from merch_app.data.workspace import open_workspace

    db = open_workspace(args.workspace)
    ids, titles, counts, first, last = catalogue(db)
    rows, sessions = generate(ids, titles, counts, first, last, n_sessions=args.sessions, seed=args.seed)
    write_events(rows, args.out)
    info = {"events": len(rows), "sessions": len(sessions), "file": str(args.out)}
    if args.judged:
        cut = _parse(first) + (_parse(last) - _parse(first)) * 0.8
        test, seen = judged_queries(sessions, _fmt(cut))
        write_judged(test, args.judged)
        info.update(judged=str(args.judged), test_queries=len(test), seen_before=len(seen))
    print(json.dumps(info))


if __name__ == "__main__":
    main()

"""Choose the fusion weights on a known-item judged set built from behaviour.

The Online Retail data has no search log, so queries are made from the
titles of purchased items, the way a shopper half-remembers a product:

* ``drop``      the key noun plus one or two other title words;
* ``reorder``   the title words shuffled, one non-key word dropped;
* ``misspell``  a ``drop`` query with one word misspelt (delete/swap/replace
                a letter), which breaks the exact keyword match;
* ``synonym``   title words with one replaced by a related word
                (holder → stand, bag → tote, christmas → xmas, ...).

Items are sampled in proportion to the square root of their purchase count.
Relevance: the source item is graded 3, every other item sharing its key
noun (the last content word of the title, e.g. HOLDER) is graded 1.
Queries are split in two halves by a hash of their id: the weights are
grid-searched on the ``tune`` half and reported on the ``test`` half.

Run::

    python -m merch_app.ranking.weight_tuning WORKSPACE [--queries 800] [--out results.json]

(the workspace must hold the imported catalogue and purchases; item vectors
come from the encoder's embedding cache, see ``merch-app encode``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from merch_app.ranking.types import RankRequest

RELATED_WORDS = {
    "holder": "stand", "lantern": "lamp", "bag": "tote", "bags": "totes", "mug": "cup", "mugs": "cups",
    "cushion": "pillow", "bottle": "flask", "hanger": "hook", "box": "container", "boxes": "containers",
    "christmas": "xmas", "sign": "plaque", "card": "greeting", "cards": "greetings", "cake": "dessert",
    "tin": "can", "tins": "cans", "jar": "pot", "frame": "picture", "ornament": "decoration",
    "decoration": "ornament", "necklace": "pendant", "bracelet": "bangle", "bowl": "dish",
    "plate": "dish", "napkins": "serviettes", "clock": "timepiece", "doormat": "mat", "lights": "lamps",
    "candle": "candlelight", "jumbo": "large", "large": "big", "small": "little", "mini": "tiny",
    "pink": "rose", "red": "crimson", "heart": "love", "hearts": "love", "vintage": "retro",
    "retro": "vintage", "baking": "cooking", "garden": "outdoor", "childrens": "kids",
    "wooden": "wood", "glass": "crystal", "t-light": "tealight", "notebook": "journal",
    "pencils": "crayons", "purse": "wallet", "umbrella": "parasol", "teapot": "kettle",
    "apron": "pinafore", "trinket": "jewellery", "wall": "hanging", "party": "celebration",
    "dolly": "doll", "birthday": "party", "spaceboy": "astronaut", "union": "british",
}
NOT_KEY = {"design", "designs", "set", "assorted", "colour", "colours", "of", "and", "in", "with",
           "the", "a", "small", "large", "jumbo", "mini", "s", "m", "l"}
_FILLER = {"of", "and", "in", "with", "the", "a", "set", "pack", "s"}
KINDS = ("drop", "reorder", "misspell", "synonym")


@dataclass
class JudgedQuery:
    """One known-item query with graded relevance."""

    qid: str
    text: str
    kind: str
    target: str
    gains: dict[str, float]

    @property
    def half(self) -> str:
        return "tune" if int(hashlib.sha1(self.qid.encode()).hexdigest(), 16) % 2 == 0 else "test"


def title_words(title: str) -> list[str]:
    """Lower-cased whitespace words of a title without surrounding punctuation."""
    words = [w.strip(".,;:!?()'\"").lower() for w in (title or "").split()]
    return [w for w in words if w and re.search(r"[a-z]", w)]


def key_noun(title: str) -> Optional[str]:
    """The last content word of a title (HOLDER in WHITE HANGING HEART T-LIGHT HOLDER)."""
    words = [w for w in title_words(title) if w not in NOT_KEY and not w.isdigit() and len(w) > 2]
    return words[-1] if words else None


def _misspell(word: str, rng: np.random.Generator) -> str:
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 1))
    op = int(rng.integers(0, 3))
    if op == 0:
        return word[:i] + word[i + 1:]
    if op == 1:
        return word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]
    letters = "aeioustrnl"
    return word[:i] + letters[int(rng.integers(0, len(letters)))] + word[i + 1:]


def _keep_some(words: list[str], key: str, rng: np.random.Generator) -> list[str]:
    others = [w for w in words if w != key and w not in _FILLER and not w.isdigit()] or \
        [w for w in words if w != key]
    n = min(len(others), int(rng.integers(1, 3)))
    keep = set(rng.choice(len(others), size=n, replace=False).tolist()) if n else set()
    return [w for i, w in enumerate(others) if i in keep] + [key]


def make_query(title: str, kind: str, rng: np.random.Generator) -> Optional[str]:
    """A query of ``kind`` for an item title (None when the title does not allow it)."""
    words, key = title_words(title), key_noun(title)
    if key is None or len(words) < 2:
        return None
    if kind == "drop":
        q = _keep_some(words, key, rng)
    elif kind == "reorder":
        q = list(words)
        if len(q) >= 3:
            drop = [i for i, w in enumerate(q) if w != key]
            q.pop(int(rng.choice(drop)))
        rng.shuffle(q)
    elif kind == "misspell":
        q = _keep_some(words, key, rng)
        long = [i for i, w in enumerate(q) if len(w) >= 4]
        if not long:
            return None
        i = int(rng.choice(long))
        q[i] = _misspell(q[i], rng)
    elif kind == "synonym":
        mappable = [w for w in words if w in RELATED_WORDS]
        if not mappable:
            return None
        swap = key if key in RELATED_WORDS else str(rng.choice(mappable))
        q = [RELATED_WORDS[w] if w == swap else w for w in words]
        if len(q) > 3:
            q = [w for w in q if w == RELATED_WORDS[swap] or rng.random() < 0.6]
    else:
        raise ValueError(kind)
    return " ".join(q) or None


def make_known_item_queries(db, n: int = 800, seed: int = 7) -> list[JudgedQuery]:
    """Known-item queries over purchased items (see the module docstring)."""
    rng = np.random.default_rng(seed)
    rows = db.execute(
        "SELECT i.item_id, i.title, count(e.id) FROM items i JOIN events e ON e.item_id = i.item_id "
        "WHERE e.event_type = 'purchase' GROUP BY i.item_id").fetchall()
    by_noun: dict[str, list[str]] = {}
    titles = {}
    for item_id, title, _ in db.execute("SELECT item_id, title, 0 FROM items"):
        titles[item_id] = title or ""
        k = key_noun(title or "")
        if k:
            by_noun.setdefault(k, []).append(item_id)
    ids = [r[0] for r in rows if key_noun(r[1] or "")]
    weight = np.sqrt(np.array([r[2] for r in rows if key_noun(r[1] or "")], dtype=np.float64))
    order = rng.choice(len(ids), size=min(len(ids), n * 2), replace=False, p=weight / weight.sum())
    out: list[JudgedQuery] = []
    for j, idx in enumerate(order.tolist()):
        if len(out) >= n:
            break
        item_id = ids[idx]
        kind = KINDS[len(out) % len(KINDS)]
        text = make_query(titles[item_id], kind, rng)
        if not text:
            continue
        gains = {other: 1.0 for other in by_noun.get(key_noun(titles[item_id]), [])}
        gains[item_id] = 3.0
        out.append(JudgedQuery(f"q{j:04d}-{item_id}", text, kind, item_id, gains))
    return out


def ndcg10(ranked: list[str], gains: dict[str, float]) -> float:
    """nDCG@10 with linear gains (same convention as merch_app.evaluation.metrics)."""
    dcg = sum(gains.get(r, 0.0) / math.log2(i + 2) for i, r in enumerate(ranked[:10]))
    ideal = sorted(gains.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def rr10(ranked: list[str], target: str) -> float:
    return next((1.0 / (i + 1) for i, r in enumerate(ranked[:10]) if r == target), 0.0)


@dataclass
class QueryFeatures:
    """Raw components of every candidate of one query, reusable for any weights."""

    query: JudgedQuery
    item_ids: list[str]
    lexical: np.ndarray
    text: np.ndarray
    popularity: np.ndarray
    lexical_only: list[str]
    semantic_only: list[str]


def query_features(ranker, q: JudgedQuery, candidates: int = 300) -> QueryFeatures:
    """Score the candidate union of ``q`` once (weights do not change the union)."""
    sc = ranker.score_candidates(RankRequest(query=q.text, candidates=candidates))
    ids = [ranker.catalog.item_ids[p] for p in sc.positions.tolist()]
    lex_idx = [i for i in range(len(ids)) if "lexical" in sc.sources.get(i, ())]
    sem_idx = [i for i in range(len(ids)) if "semantic" in sc.sources.get(i, ())]
    lex_only = [ids[i] for i in sorted(lex_idx, key=lambda i: -sc.raw["lexical"][i])]
    sem_only = [ids[i] for i in sorted(sem_idx, key=lambda i: -sc.raw["text"][i])]
    return QueryFeatures(q, ids, sc.raw["lexical"], sc.raw["text"], sc.raw["popularity"],
                         lex_only, sem_only)


def fused_ranking(f: QueryFeatures, w_lex: float, w_text: float, w_pop: float) -> list[str]:
    s = w_lex * f.lexical + w_text * f.text + w_pop * f.popularity
    top = np.argsort(-s, kind="stable")[:10]
    return [f.item_ids[i] for i in top]


def evaluate(features: list[QueryFeatures], system) -> dict[str, float]:
    """Mean nDCG@10, MRR@10 and hit@10 of ``system(features) -> ranked ids``."""
    nd, rr, hit = [], [], []
    for f in features:
        ranked = system(f)
        nd.append(ndcg10(ranked, f.query.gains))
        rr.append(rr10(ranked, f.query.target))
        hit.append(1.0 if f.query.target in ranked[:10] else 0.0)
    n = max(len(nd), 1)
    ci = 1.96 * float(np.std(nd)) / math.sqrt(n) if nd else 0.0
    return {"ndcg@10": float(np.mean(nd)) if nd else 0.0, "ndcg_ci95": ci,
            "mrr@10": float(np.mean(rr)) if rr else 0.0, "hit@10": float(np.mean(hit)) if hit else 0.0,
            "n": len(nd), "per_query": nd}


def grid_search(features: list[QueryFeatures]) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Best (w_lex, w_text, w_pop) on ``features`` with w_lex + w_text = 1."""
    table = []
    for w_lex in np.round(np.arange(0.0, 1.01, 0.1), 2):
        for w_pop in (0.0, 0.02, 0.05, 0.1, 0.2):
            w_text = round(1.0 - float(w_lex), 2)
            m = evaluate(features, lambda f: fused_ranking(f, w_lex, w_text, w_pop))
            table.append({"lex": float(w_lex), "text": w_text, "pop": w_pop, "ndcg@10": m["ndcg@10"]})
    best = max(table, key=lambda r: (round(r["ndcg@10"], 6), -r["pop"]))
    return best, table


def run(db, ranker, n_queries: int = 800, seed: int = 7, progress=None) -> dict[str, Any]:
    """Build the judged set, grid-search on the tune half, report on the test half."""
    t0 = time.perf_counter()
    queries = make_known_item_queries(db, n_queries, seed)
    feats = []
    for i, q in enumerate(queries):
        feats.append(query_features(ranker, q))
        if progress and i % 50 == 0:
            progress(i, len(queries))
    tune = [f for f in feats if f.query.half == "tune"]
    test = [f for f in feats if f.query.half == "test"]
    best, table = grid_search(tune)
    systems = {
        "lexical only (BM25)": lambda f: f.lexical_only[:10],
        "semantic only (MiniLM)": lambda f: f.semantic_only[:10],
        "fusion lex+text (tuned)": lambda f: fused_ranking(f, best["lex"], best["text"], 0.0),
        "fusion lex+text+pop (tuned)": lambda f: fused_ranking(f, best["lex"], best["text"], best["pop"]),
    }
    report: dict[str, Any] = {"queries": len(queries), "tune": len(tune), "test": len(test),
                              "best": best, "grid": table, "systems": {}, "by_kind": {}}
    for name, system in systems.items():
        for half, fs in (("tune", tune), ("test", test)):
            m = evaluate(fs, system)
            m.pop("per_query")
            report["systems"].setdefault(name, {})[half] = m
        for kind in KINDS:
            m = evaluate([f for f in test if f.query.kind == kind], system)
            m.pop("per_query")
            report["by_kind"].setdefault(name, {})[kind] = m
    lex = evaluate(test, systems["lexical only (BM25)"])["per_query"]
    fus = evaluate(test, systems["fusion lex+text+pop (tuned)"])["per_query"]
    report["fusion_vs_lexical_test"] = {
        "wins": int(sum(b > a + 1e-9 for a, b in zip(lex, fus))),
        "losses": int(sum(b < a - 1e-9 for a, b in zip(lex, fus))),
        "ties": int(sum(abs(a - b) <= 1e-9 for a, b in zip(lex, fus)))}
    report["examples"] = [{"kind": f.query.kind, "query": f.query.text, "target": f.query.target}
                          for f in feats[:12]]
    report["seconds"] = time.perf_counter() - t0
    return report


def main(argv: Optional[list[str]] = None) -> None:
    from merch_app.data.workspace import open_workspace
    from merch_app.model.encoder import load_encoder
    from merch_app.ranking.ranker import Ranker
    from merch_app.ranking.text_bundle import text_only_bundle

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workspace")
    ap.add_argument("--queries", type=int, default=800)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    db = open_workspace(args.workspace)
    bundle = text_only_bundle(db, load_encoder(args.encoder))
    ranker = Ranker(db, bundle)
    report = run(db, ranker, args.queries, args.seed,
                 progress=lambda i, n: print(f"  {i}/{n} queries", flush=True))
    print(json.dumps({k: v for k, v in report.items() if k != "grid"}, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()

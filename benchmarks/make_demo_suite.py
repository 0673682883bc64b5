"""Write resources/demo/demo_suite.csv: a judged query suite over the demo catalogue.

The demo data (Online Retail) has no search queries, so the suite is graded
by hand-written rules over item titles (tokens = lower-cased letter/digit
runs; a word also matches its plural with -s/-es; a phrase matches
consecutive tokens):

* grade 3 — the title has every *required* group and every *modifier* group;
* grade 2 — every required group, not every modifier;
* grade 1 — a *related* group matches (a near miss a shopper may still want);
* grade 0 — a *decoy*: shares a query word but none of the rules above
  (at most 10 per query, first by item id), so that plausible confusers are
  judged rather than unjudged.

A group is a list of alternatives, e.g. ``["christmas", "xmas"]``.  Run from
the repository root: ``.venv/bin/python benchmarks/make_demo_suite.py``
(deterministic; reads the demo workspace it creates in a temp folder).
"""
from __future__ import annotations

import csv
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "resources" / "demo" / "demo_suite.csv"
MAX_DECOYS = 10

# query: (required groups, modifier groups, related groups)
SPECS: dict[str, tuple[list, list, list]] = {
    "lunch bag": ([["lunch"], ["bag"]], [], [["lunch box"], ["lunch"]]),
    "red retrospot lunch bag": ([["lunch"], ["bag"]], [["red"], ["retrospot"]], [["lunch"]]),
    "christmas decoration": ([["christmas", "xmas"], ["decoration", "ornament", "bauble"]], [],
                             [["christmas", "xmas"]]),
    "xmas tree": ([["christmas", "xmas"], ["tree"]], [], [["christmas", "xmas"]]),
    "tea light holder": ([["t light", "tealight", "tea light"], ["holder"]], [],
                         [["candle holder"], ["t light", "tealight"]]),
    "cake stand": ([["cake"], ["stand"]], [], [["cake tin"], ["cake cases"]]),
    "fairy cake cases": ([["cake"], ["cases"]], [["fairy"]], [["baking cups", "cake tin"]]),
    "doormat": ([["doormat"]], [], [["mat"]]),
    "alarm clock": ([["alarm"], ["clock"]], [], [["clock"]]),
    "wall clock": ([["clock"]], [["wall"]], []),
    "paper bunting": ([["bunting"]], [["paper"]], [["garland"]]),
    "photo frame": ([["frame"]], [["photo", "picture"]], [["album"]]),
    "hot water bottle": ([["hot water bottle"]], [], [["bottle"]]),
    "wicker heart": ([["wicker"]], [["heart"]], []),
    "easter decoration": ([["easter"]], [["decoration", "hanging", "egg"]], [["chick", "bunny", "rabbit"]]),
    "kids cutlery": ([["cutlery"]], [["kids", "childrens", "childs", "spaceboy", "dolly", "circus"]], []),
    "spaceboy": ([["spaceboy"]], [], []),
    "pink polkadot": ([["polkadot"]], [["pink"]], [["spot"]]),
    "jigsaw puzzle": ([["jigsaw", "puzzle"]], [], []),
    "french metal sign": ([["sign"]], [["metal"], ["french"]], [["door sign"]]),
    "glass jar": ([["jar"]], [["glass"]], [["bottle"]]),
    "gift wrap": ([["wrap"]], [["gift"]], [["gift bag", "gift tape"]]),
    "umbrella": ([["umbrella", "parasol"]], [["umbrella"]], []),
    "necklace": ([["necklace"]], [], [["bracelet", "earrings"]]),
    "baking set": ([["baking"]], [["set"]], [["cake cases", "cake tin"]]),
    "skull": ([["skull", "skulls"]], [], []),
    "cushion cover": ([["cushion"]], [["cover"]], []),
    # vocabulary mismatch: the query words are rare or absent in the titles
    "kids apron": ([["apron"]], [["kids", "childrens", "childs", "children"]], []),
    "bunny": ([["bunny", "rabbit"]], [["bunny"]], []),
    "tea cup": ([["teacup", "tea cup", "cup and saucer", "mug", "beaker"]],
                [["teacup", "tea cup", "cup and saucer"]], []),
    "diary": ([["diary", "journal", "notebook"]], [["diary", "journal"]], []),
    "blackboard": ([["blackboard", "chalkboard"]], [], [["slate"]]),
    "puppy": ([["dog", "scottie", "scotty", "puppy"]], [], []),
    "lamp": ([["lamp"]], [], [["lantern", "night light"]]),
}

_TOKEN = re.compile(r"[^\W_]+")


def tokens(text: str) -> list[str]:
    return [t.casefold() for t in _TOKEN.findall(text or "")]


def _word_eq(token: str, word: str) -> bool:
    return token == word or token == word + "s" or token == word + "es"


def has(title_tokens: list[str], phrase: str) -> bool:
    """Whether the phrase (one or more words) occurs as consecutive tokens."""
    words = phrase.split()
    n = len(words)
    return any(all(_word_eq(title_tokens[i + j], w) for j, w in enumerate(words))
               for i in range(len(title_tokens) - n + 1))


def group_ok(title_tokens: list[str], group: list[str]) -> bool:
    return any(has(title_tokens, alt) for alt in group)


def grade(title: str, spec: tuple[list, list, list]) -> int | None:
    req, mods, related = spec
    t = tokens(title)
    if all(group_ok(t, g) for g in req):
        return 3 if all(group_ok(t, g) for g in mods) else 2
    if any(group_ok(t, g) for g in related):
        return 1
    return None


def judge(items: list[tuple[str, str]]) -> list[tuple[str, str, int]]:
    rows = []
    for query, spec in SPECS.items():
        q_words = set(tokens(query))
        decoys = 0
        for item_id, title in items:
            g = grade(title, spec)
            if g is None and decoys < MAX_DECOYS and q_words & set(tokens(title)):
                g, decoys = 0, decoys + 1
            if g is not None:
                rows.append((query, item_id, g))
    return rows


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from merch_app.data.demo import ensure_demo_workspace
    from merch_app.data.workspace import open_workspace

    with tempfile.TemporaryDirectory() as tmp:
        path = ensure_demo_workspace(Path(tmp) / "demo.merch.sqlite")
        db = open_workspace(path)
        items = [(str(i), t or "") for i, t in db.execute("SELECT item_id, title FROM items ORDER BY item_id")]
        db.close()
    rows = judge(items)
    with OUT.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["query", "item_id", "grade"])
        w.writerows(rows)
    per_query = {}
    for q, _i, g in rows:
        per_query.setdefault(q, [0, 0, 0, 0])[g] += 1
    for q, counts in per_query.items():
        print(f"{q:<26} grades 0/1/2/3: {counts}")
    print(f"wrote {OUT} ({len(rows)} judgments, {len(per_query)} queries)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

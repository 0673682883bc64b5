"""Screenshots of the Search log screen over the demo catalogue and a generated search log.

Usage (from the repository root)::

    .venv/bin/python docs/screenshots/make_search_log_screenshots.py [--sessions N]

Imports the demo files into a fresh temp workspace, then a seeded search log of
``--sessions`` sessions (default 450) over real demo titles, imported through
the Data screen as an events CSV with a query and a session column:

* searches made of title words ("lunch bag", "cake stand", "christmas"), each
  query with its own click-through, followed by clicks on matching items and
  sometimes a cart and a purchase;
* reformulations: a search in shop words the titles do not use (``xmas`` →
  ``christmas``, ``cup`` → ``mug``, ``serviette`` → ``napkin``, ``pillow`` →
  ``cushion``, ``tealight`` → ``t-light``) or misspelt (``chrismas``,
  ``lantren``), no click, then the title word a minute later, clicked;
* dead ends: words no item has ("airpods", "phone case"), misspellings nobody
  corrects, and vague queries nobody clicks.

Writes ``search_log.png`` (1400x900, the Synonym suggestions tab) and
``search_log_720.png`` (1280x720, the Top queries tab).  Text-only ranking,
no model: a minute or so.  ``--all-tabs DIR`` also saves every tab to DIR.
"""
from __future__ import annotations

import argparse
import csv
import random
import sys
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shots import open_window, pump, save, temp_home, wait_idle  # noqa: E402  (sets offscreen/offline first)

# (query, click-through, purchase after a click); title words of the demo catalogue
HEAD = [("christmas", 0.7, 0.3), ("lunch bag", 0.85, 0.45), ("cake stand", 0.8, 0.4), ("heart", 0.55, 0.25),
        ("jam jar", 0.6, 0.2), ("candle", 0.65, 0.3), ("doormat", 0.75, 0.35), ("bunting", 0.7, 0.3),
        ("retrospot", 0.6, 0.3), ("mug", 0.5, 0.25), ("lantern", 0.55, 0.2), ("t-light holder", 0.7, 0.3),
        ("photo frame", 0.45, 0.15), ("garland", 0.5, 0.2), ("cake tin", 0.6, 0.3), ("water bottle", 0.65, 0.35),
        ("childrens", 0.4, 0.1), ("vintage", 0.0, 0.0), ("pink", 0.0, 0.0), ("large", 0.0, 0.0)]
# searched first (no click), then (clicked)
REFORMULATIONS = [("xmas tree", "christmas tree"), ("xmas decoration", "christmas decoration"),
                  ("coffee cup", "coffee mug"), ("cup", "mug"), ("paper serviette", "paper napkin"),
                  ("pillow", "cushion"), ("tealight holder", "t-light holder"), ("polka dot bag", "retrospot bag"),
                  ("chrismas", "christmas"), ("lantren", "lantern"), ("kids apron", "childrens apron")]
DEAD_ENDS = ["airpods", "phone case", "hoodie", "gift card", "yoga mat", "cusion cover", "bunttng", "candel"]
START = datetime(2011, 10, 1)


def matching(titles: list[tuple[str, str]], query: str) -> list[str]:
    words = query.upper().split()
    return [i for i, t in titles if all(w in t.upper().split() or w in t.upper() for w in words)]


def search_log(titles: list[tuple[str, str]], sessions: int, seed: int = 7) -> list[list[str]]:
    """Event rows (user_id, item_id, event_type, timestamp, query, session_id) of a seeded search log."""
    rng = random.Random(seed)
    weights = [1.0 / (r + 1) ** 0.8 for r in range(len(HEAD))]
    rows: list[list[str]] = []

    def stamp(t: datetime) -> str:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    def outcome(user, sid, t, query, ctr, buy):
        rows.append([user, "", "search", stamp(t), query, sid])
        hits = matching(titles, query)
        if not hits or rng.random() >= ctr:
            return
        item = rng.choice(hits[:40])
        t += timedelta(seconds=rng.randrange(20, 120))
        rows.append([user, item, "click", stamp(t), "", sid])
        if rng.random() < buy:
            rows.append([user, item, "cart", stamp(t + timedelta(seconds=40)), "", sid])
            rows.append([user, item, "purchase", stamp(t + timedelta(seconds=150)), "", sid])

    for n in range(sessions):
        user, sid = f"S{rng.randrange(1, 180):04d}", f"SL{n:05d}"
        t = START + timedelta(days=rng.randrange(70), seconds=rng.randrange(8 * 3600, 22 * 3600))
        r = rng.random()
        if r < 0.6:
            query, ctr, buy = rng.choices(HEAD, weights=weights)[0]
            outcome(user, sid, t, query, ctr, buy)
        elif r < 0.88:
            first, second = rng.choice(REFORMULATIONS)
            rows.append([user, "", "search", stamp(t), first, sid])
            outcome(user, sid, t + timedelta(seconds=rng.randrange(30, 180)), second, 0.9, 0.45)
        else:
            rows.append([user, "", "search", stamp(t), rng.choice(DEAD_ENDS), sid])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=450)
    ap.add_argument("--all-tabs", type=Path, default=None, help="also save every tab into this folder")
    args = ap.parse_args()

    from merch_app.data.workspace import open_workspace
    from merch_app.paths import demo_files
    from merch_app.ui.screens.mapping_dialog import ImportRequest

    tmp = temp_home("merch_searchlog_shots_")
    ws = tmp / "shop.merch.sqlite"
    app, window = open_window(ws)
    data = window.show_screen("Data")
    data.start_import([ImportRequest(p) for p in demo_files()])
    wait_idle(app, window)
    db = open_workspace(ws)
    titles = [(str(i), t or "") for i, t in db.execute("SELECT item_id, title FROM items ORDER BY item_id")]
    db.close()
    log_csv = tmp / "search_log.csv"
    with log_csv.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "item_id", "event_type", "timestamp", "query", "session_id"])
        w.writerows(search_log(titles, args.sessions))
    data.start_import([ImportRequest(log_csv, kind="events")])
    wait_idle(app, window)

    screen = window.show_screen("Search log")
    wait_idle(app, window)
    if not screen.result or not screen.result.get("has_log"):
        print("no search log on the screen:", screen.header.text())
        return 1
    print(screen.header.text())
    if args.all_tabs:
        args.all_tabs.mkdir(parents=True, exist_ok=True)
        for size in ((1400, 900), (1280, 720)):
            window.resize(*size)
            for i in range(screen.tabs.count()):
                screen.tabs.setCurrentIndex(i)
                pump(app, 0.4)
                window.banner.hide()
                window.grab().save(str(args.all_tabs / f"tab{i}_{size[0]}.png"))
        window.resize(1400, 900)
    screen.tabs.setCurrentIndex(3)
    screen.synonyms.view.selectRow(0)
    pump(app, 0.4)
    save(app, window, "search_log.png")
    window.resize(1280, 720)
    screen.tabs.setCurrentIndex(0)
    pump(app, 0.6)
    save(app, window, "search_log_720.png")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

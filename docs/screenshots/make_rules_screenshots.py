"""Screenshots of the Rules screen: lifecycle, conflicts on save, activity log, preview as of next week.

Usage (from the repository root)::

    .venv/bin/python docs/screenshots/make_rules_screenshots.py [--encoder hashing:64]

Imports the demo files into a fresh temp workspace, the seeded search log of
``make_search_log_screenshots.py`` (so previews list the log's queries with their
searches) and the bundled demo suite (so they show the judged NDCG change per
query).  Then stores a few rules with dates relative to today: a Black Friday
pin that starts next week (edited once, so its activity log has two entries),
an expired boost, a draft synonym; saves a second pin for a query the first one
also fires on, confirming the conflict on the screen; selects the campaign rule
and previews it as of next week.

Writes ``rules.png`` (1400x900), ``rules_720.png`` and, on the Usage tab, ``rules_usage_720.png`` (1280x720).  Text-only
ranking, no model: a minute or so.
"""
from __future__ import annotations

import argparse
import csv
import sys
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shots import open_window, pump, save, temp_home, wait_idle  # noqa: E402  (sets offscreen/offline first)
from make_search_log_screenshots import search_log  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=450)
    ap.add_argument("--encoder", default=None, help="query encoder override (e.g. hashing:64)")
    args = ap.parse_args()

    from PySide6.QtCore import QDate

    from merch_app.data.workspace import open_workspace
    from merch_app.paths import demo_files
    from merch_app.ranking.rules import MerchRule, save_rule, set_rule_status
    from merch_app.ui.screens.mapping_dialog import ImportRequest

    tmp = temp_home("merch_rules_shots_")
    ws = tmp / "shop.merch.sqlite"
    app, window = open_window(ws)
    data = window.show_screen("Data")
    data.start_import([ImportRequest(p) for p in demo_files()])
    wait_idle(app, window)
    db = open_workspace(ws)
    titles = [(str(i), t or "") for i, t in db.execute("SELECT item_id, title FROM items ORDER BY item_id")]
    log_csv = tmp / "search_log.csv"
    with log_csv.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "item_id", "event_type", "timestamp", "query", "session_id"])
        w.writerows(search_log(titles, args.sessions))
    data.start_import([ImportRequest(log_csv, kind="events")])
    wait_idle(app, window)
    ev = window.show_screen("Evaluate")
    ev.add_demo_suite()
    wait_idle(app, window)

    def first(words: str) -> str:
        return next(i for i, t in titles if all(w in t.upper().split() for w in words.upper().split()))

    today = date.today()
    start, end = today + timedelta(days=7), today + timedelta(days=10)
    campaign = save_rule(db, MerchRule("pin", "christmas", {"item_id": first("christmas tree"), "position": 1},
                                       match="phrase", start=start.isoformat(), end=(end - timedelta(days=1))
                                       .isoformat(), owner="ana", comment="Black Friday: trees first",
                                       tags=["black friday"]), actor="ana")
    save_rule(db, MerchRule("pin", "christmas", {"item_id": first("christmas tree"), "position": 1},
                            name="", match="phrase", start=start.isoformat(), end=end.isoformat(), owner="ana",
                            comment="Black Friday: trees first", tags=["black friday"],
                            rule_id=campaign.rule_id), actor="ben")
    save_rule(db, MerchRule("boost", "lunch bag", {"attribute": "item", "value": first("lunch bag"), "weight": 0.3},
                            match="phrase", end=(today - timedelta(days=20)).isoformat(), owner="ben",
                            comment="summer sale"), actor="ben")
    save_rule(db, MerchRule("synonym", "*", {"terms": "xmas, christmas"}, status="draft", owner="search log",
                            comment="mined from reformulations"), actor="ana")
    set_rule_status(db, save_rule(db, MerchRule("hide", "mug", {"item_id": first("mug")}, match="exact"),
                                  actor="ben").rule_id, "expired", actor="ben")
    db.close()

    screen = window.show_screen("Rules")
    screen.encoder_spec = args.encoder
    screen.refresh()
    screen.confirm_conflicts = lambda _text: True  # the "Save anyway?" answer
    screen.new_rule()
    screen.kind.setCurrentText("pin")
    screen.pattern.setText("christmas lights")
    screen.match.setCurrentText("phrase")
    screen.item.setText(first("christmas lights"))
    screen.owner.setText("ben")
    screen.start_on.setChecked(True)
    screen.start_date.setDate(QDate(start.year, start.month, start.day))
    screen.save_rule()
    wait_idle(app, window)
    print(screen.conflict_label.text())

    row = next(i for i, r in enumerate(screen.rules) if r.rule_id == campaign.rule_id)
    screen.table.selectRow(row)
    screen.as_of.setDate(QDate(start.year, start.month, start.day))
    screen.suite_combo.setCurrentIndex(max(screen.suite_combo.findData("demo"), 0))
    screen.preview_impact()
    wait_idle(app, window)
    print(screen.impact_label.text())
    pump(app, 0.4)
    save(app, window, "rules.png")
    window.resize(1280, 720)
    pump(app, 0.6)
    save(app, window, "rules_720.png")
    screen.below.setCurrentWidget(screen.usage)  # every rule's use of the log (the demo has searches)
    screen.usage.count()
    wait_idle(app, window)
    print(screen.usage.summary.text())
    save(app, window, "rules_usage_720.png")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

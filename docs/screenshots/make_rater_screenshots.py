"""Render the Judge tab's team judging offscreen on the demo data and save ``evaluate_raters.png`` beside this file.

Usage::

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_rater_screenshots.py [--workspace W]
        [--encoder hashing:64]

Creates (or reuses) a demo workspace and imports the bundled demo suite as ``team``.  Two raters
grade its first 40 judged pairs: ``ann`` gives the file's grade, ``bob`` the same grade except on
every fifth pair (one grade up, or two down on every tenth).  Then ann opens her blind queue
(the top 10 of every query she has not graded) on the Judge tab; the suite line above shows the
agreement (Cohen's kappa, n, disagreements).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shots import open_window, save, temp_home, wait_idle  # sets the offscreen/offline switches first


def grade_as_team(ws: Path) -> None:
    """Store the demo suite as ``team`` and give it ann's and bob's grades on 40 pairs."""
    from merch_app.data.workspace import open_workspace
    from merch_app.evaluation.raters import rate
    from merch_app.evaluation.suite_files import read_suite_file
    from merch_app.evaluation.suites import save_suite
    from merch_app.paths import resource_path

    db = open_workspace(ws)
    try:
        suite = read_suite_file(resource_path("demo", "demo_suite.csv"), "team")
        save_suite(db, suite)
        for n, (q, item_id, g) in enumerate(suite.rows()[:40]):
            rate(db, "team", q, item_id, g, "ann")
            other = g if n % 5 else (max(g - 2, 0) if n % 10 == 0 else min(g + 1, 3))
            rate(db, "team", q, item_id, other, "bob")
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", type=Path, default=None, help="demo workspace to use (default: a temp one)")
    ap.add_argument("--encoder", default=None, help="query encoder override (e.g. hashing:64)")
    args = ap.parse_args(argv)

    tmp = temp_home("merch_rater_shots_")
    from merch_app.data.demo import ensure_demo_workspace

    ws = ensure_demo_workspace(args.workspace or tmp / "demo.merch.sqlite")
    grade_as_team(ws)
    app, window = open_window(ws)

    ev = window.show_screen("Evaluate")
    ev.encoder_spec = args.encoder
    ev.refresh_suites(select="team")
    ev.tabs.setCurrentIndex(0)
    judge = ev.judge
    judge.rater_edit.setText("ann")
    judge.rater_edit.editingFinished.emit()
    wait_idle(app, window)
    judge.start_blind_queue()
    wait_idle(app, window)
    for grade in (2, 0, 3):  # ann grades three results of her queue
        judge.blind_rate(grade)
    wait_idle(app, window)
    save(app, window, "evaluate_raters.png")
    print("evaluate_raters.png", ev.suite_info.text(), "|", judge.card.progress.text())
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

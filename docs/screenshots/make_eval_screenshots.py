"""Render the Evaluate screen offscreen on the demo data and save PNGs beside this file.

Usage::

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_eval_screenshots.py [--workspace W]

Creates (or reuses) a demo workspace, imports the bundled demo suite, runs it
with the default hybrid weights and with lexical-only weights, and compares the two.
Writes ``evaluate.png``, ``evaluate_compare.png`` (also at 1280×720) and, after a third run, the History tab as
``evaluate_history.png`` and ``evaluate_history_720.png`` (the Rules screen's ``rules.png``
is made by ``make_rules_screenshots.py``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shots import open_window, pump, save, temp_home, wait_idle  # sets the offscreen/offline switches first


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", type=Path, default=None, help="demo workspace to use (default: a temp one)")
    ap.add_argument("--encoder", default=None, help="query encoder override (e.g. hashing:64)")
    args = ap.parse_args(argv)

    tmp = temp_home("merch_eval_shots_")
    from merch_app.data.demo import ensure_demo_workspace

    ws = ensure_demo_workspace(args.workspace or tmp / "demo.merch.sqlite")
    app, window = open_window(ws)

    ev = window.show_screen("Evaluate")
    ev.encoder_spec = args.encoder
    if ev.suite_combo.findData("demo") < 0:
        ev.add_demo_suite()
        wait_idle(app, window)
    ev.suite_combo.setCurrentIndex(ev.suite_combo.findData("demo"))
    for label, weights in (("lexical only", {"lex": 1.0, "text": 0.0, "cf": 0.0, "pop": 0.0}),
                           ("hybrid (default)", None)):
        ev.label_edit.setText(label)
        if weights:
            for k, v in weights.items():
                ev.weight_boxes[k].setValue(v)
        else:
            from merch_app.ranking.types import Weights

            for k in ev.weight_boxes:
                ev.weight_boxes[k].setValue(getattr(Weights(), k))
        ev.run_suite()
        wait_idle(app, window)
    ev.tabs.setCurrentIndex(1)
    save(app, window, "evaluate.png")
    print("evaluate.png", {k: round(v, 4) for k, v in ev.run.mean.items()})

    cmp = ev.compare
    cmp.baseline.setCurrentText("lexical only")
    cmp.compare()
    ev.tabs.setCurrentIndex(2)
    pump(app)
    cmp.queries.view.selectRow(0)
    save(app, window, "evaluate_compare.png")
    print("evaluate_compare.png", cmp.status.text())
    size = window.size()
    window.resize(1280, 720)
    pump(app)
    save(app, window, "evaluate_compare_720.png")
    window.resize(size)
    pump(app)

    # a third kept run, then the History tab: the metric over the kept runs, the changes, a diff
    ev.label_edit.setText("popularity only")
    for k, v in {"lex": 0.0, "text": 0.0, "cf": 0.0, "pop": 1.0}.items():
        ev.weight_boxes[k].setValue(v)
    ev.run_suite()
    wait_idle(app, window)
    ev.tabs.setCurrentIndex(3)
    ev.history.diff_selected()
    save(app, window, "evaluate_history.png")
    print("evaluate_history.png", [(p.label, round(p.value or 0, 4), p.changes) for p in ev.history.points])
    window.resize(1280, 720)
    pump(app)
    save(app, window, "evaluate_history_720.png")

    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

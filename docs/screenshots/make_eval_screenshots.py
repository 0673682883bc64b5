"""Render the Evaluate and Rules screens offscreen on the demo data and save PNGs beside this file.

Usage::

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_eval_screenshots.py [--workspace W]

Creates (or reuses) a demo workspace, imports the bundled demo suite, runs it
with the default hybrid weights and with lexical-only weights, compares the two,
then drafts a rule on the Rules screen and previews its impact.
Writes ``evaluate.png``, ``evaluate_compare.png`` and ``rules.png``.
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

    rules = window.show_screen("Rules")
    rules.encoder_spec = args.encoder
    from merch_app.ranking.rules import MerchRule, load_rules, save_rule

    if not load_rules(window.ctx.db):  # two stored rules so the list is not empty
        save_rule(window.ctx.db, MerchRule("pin", "lunch bag", {"item_id": "20725", "position": 1},
                                           name="best seller first for lunch bag"))
        save_rule(window.ctx.db, MerchRule("bury", "*", {"attribute": "price", "min": 50.0, "weight": 0.3},
                                           enabled=False))
        rules.refresh()
    rules.kind.setCurrentText("synonym")
    rules.terms.setText("kids, childrens")
    rules.name.setText("kids means childrens")
    rules.suite_combo.setCurrentIndex(max(rules.suite_combo.findData("demo"), 0))
    rules.preview_impact()
    wait_idle(app, window)
    save(app, window, "rules.png")
    print("rules.png", rules.impact_label.text())
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

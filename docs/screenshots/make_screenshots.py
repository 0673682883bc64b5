"""Render the main screens offscreen with real data and save PNGs beside this file.

Usage::

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_screenshots.py [--encoder hashing:64]

Imports the demo files into a fresh temp workspace through the Data screen,
trains a short model through the Train screen, runs a query on the Query
screen and selects a result for the explanation panel.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shots import OUT, open_window, pump, save, temp_home, wait_idle  # sets the offscreen/offline switches first


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", default="minilm", help="text encoder spec for training (minilm | hashing:64)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--query", default="vintage heart")
    ap.add_argument("--why-not", default="regency cakestand", help="item id or title for the why-not box")
    ap.add_argument("--no-train", action="store_true", help="skip training (text-only ranking)")
    ap.add_argument("--user", default="top", help="rank as this user id on the Query screen ('top': most active)")
    ap.add_argument("--files", nargs="*", type=Path, help="files to import (default: the demo files)")
    args = ap.parse_args(argv)

    tmp = temp_home("merch_shots_")
    from merch_app.paths import demo_files
    from merch_app.ui.screens.mapping_dialog import ImportRequest

    app, window = open_window(tmp / "screenshots.merch.sqlite")

    data = window.show_screen("Data")
    files = args.files or demo_files()
    data.start_import([ImportRequest(p) for p in files])
    wait_idle(app, window)
    save(app, window, "data.png")
    print("data.png", data.summary.items if data.summary else None, "items")
    bad = tmp / "orders_export.csv"  # a file that is not a CSV export: the message floats over the screen
    bad.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    data.start_import([ImportRequest(bad)])
    wait_idle(app, window)
    pump(app, 0.4)
    window.grab().save(str(OUT / "message.png"))  # not save(): it hides the banner
    print("wrote message.png:", window.banner.label.text()[:80])
    window.banner.hide()

    if "Train" in window.screens and not args.no_train:
        train = window.show_screen("Train")
        train.form.set_encoder(args.encoder)
        train.start_training(overrides={"epochs": args.epochs})
        while window.busy() and len(train.history["epoch"]) < max(args.epochs // 2, 1):
            pump(app, 0.05)
        pump(app, 0.6)  # one more running-loss redraw
        save(app, window, "train_running.png")  # mid-run: fixed epoch axis, curves growing to the right
        wait_idle(app, window, timeout=1800)
        save(app, window, "train.png")
        print("train.png", train.log.toPlainText().splitlines()[-1:])

    if "Query" in window.screens:
        query = window.show_screen("Query")
        if args.encoder.startswith("hashing"):
            query.encoder_spec = args.encoder
        pump(app, 0.5)  # let the debounced first query start (it loads the model)
        wait_idle(app, window)
        query.controls.query_box.setText(args.query)
        pump(app, 0.5)
        wait_idle(app, window)
        if args.user:
            user = args.user
            if user == "top" and query.engine_info and query.engine_info.users:
                user = query.engine_info.users[0][0]  # the most active customer
            query.controls.set_user(user)
        query.controls.query_box.setText(args.query)
        pump(app, 0.5)
        wait_idle(app, window)
        query.select_row(0)
        wait_idle(app, window)
        query.show_overview_tab()
        save(app, window, "query.png")
        query.explain.why_not_box.setText(args.why_not)
        query.explain.why_not_button.click()
        pump(app, 0.2)
        wait_idle(app, window)
        query.show_explanation_tab()
        save(app, window, "explain.png")
        print("query.png/explain.png", query.model.rowCount(), "rows")
        window.resize(1280, 720)
        pump(app, 0.3)
        save(app, window, "explain_720.png")
        print("explain_720.png:", query.explain.model_parts_label.text())

    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

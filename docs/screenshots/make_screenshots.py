"""Render the main screens offscreen with real data and save PNGs beside this file.

Usage::

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_screenshots.py [--encoder hashing:64]

Imports the demo files into a fresh temp workspace through the Data screen,
trains a short model through the Train screen, runs a query on the Query
screen and selects a result for the explanation panel.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

OUT = Path(__file__).resolve().parent


def pump(app, seconds: float = 0.3) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def wait_idle(app, window, timeout: float = 900) -> None:
    end = time.perf_counter() + timeout
    while window.busy() and time.perf_counter() < end:
        pump(app, 0.05)
    pump(app, 0.5)


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

    tmp = Path(tempfile.mkdtemp(prefix="merch_shots_"))
    os.environ["MERCH_APP_HOME"] = str(tmp / "home")
    from merch_app.paths import demo_files
    from merch_app.ui.app import create_app
    from merch_app.ui.main_window import MainWindow
    from merch_app.ui.screens.mapping_dialog import ImportRequest

    app = create_app()
    window = MainWindow(tmp / "screenshots.merch.sqlite")
    window.resize(1400, 900)
    window.show()
    pump(app)

    data = window.show_screen("Data")
    files = args.files or demo_files()
    data.start_import([ImportRequest(p) for p in files])
    wait_idle(app, window)
    window.banner.hide()
    pump(app)
    window.grab().save(str(OUT / "data.png"))
    print("data.png", data.summary.items if data.summary else None, "items")

    if "Train" in window.screens and not args.no_train:
        train = window.show_screen("Train")
        train.form.set_encoder(args.encoder)
        train.start_training(overrides={"epochs": args.epochs})
        wait_idle(app, window, timeout=1800)
        window.banner.hide()
        pump(app)
        window.grab().save(str(OUT / "train.png"))
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
        window.banner.hide()
        pump(app)
        query.show_overview_tab()
        pump(app)
        window.grab().save(str(OUT / "query.png"))
        query.explain.why_not_box.setText(args.why_not)
        query.explain.why_not_button.click()
        pump(app, 0.2)
        wait_idle(app, window)
        query.show_explanation_tab()
        pump(app)
        window.grab().save(str(OUT / "explain.png"))
        print("query.png/explain.png", query.model.rowCount(), "rows")

    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

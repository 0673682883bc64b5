"""Helpers for the UI tests: a small shop export and a window bound to a temp workspace."""
from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta
from pathlib import Path

WORDS = {
    "kitchen": ["mug", "teapot", "cup", "plate", "bowl", "spoon", "jar"],
    "garden": ["lantern", "pot", "bird feeder", "watering can", "gnome"],
    "decor": ["candle", "frame", "cushion", "clock", "mirror", "vase"],
    "toys": ["doll", "puzzle", "kite", "robot", "ball"],
}
COLOURS = ["red", "blue", "white", "vintage", "pink", "green"]


def write_shop(folder: Path, n_items: int = 60, n_users: int = 25, n_events: int = 900, seed: int = 3,
               bad_rows: int = 3) -> tuple[Path, Path]:
    """Write ``catalogue.csv`` and ``events.csv`` (with ``bad_rows`` broken event lines)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cat_path, ev_path = folder / "catalogue.csv", folder / "events.csv"
    items = []
    cats = list(WORDS)
    for i in range(n_items):
        cat = cats[i % len(cats)]
        noun = WORDS[cat][(i // len(cats)) % len(WORDS[cat])]
        title = f"{COLOURS[i % len(COLOURS)]} {noun} {i}"
        items.append((f"SKU{i:03d}", title, cat, round(2 + (i * 7919 % 97) / 3, 2)))
    with cat_path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["sku", "product name", "category", "price"])
        for sku, title, cat, price in items:
            w.writerow([sku, title, cat, price])
    start = datetime(2024, 1, 1)
    weights = [1.0 / (r + 1) ** 0.9 for r in range(n_items)]
    with ev_path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "event_type", "timestamp"])
        for n in range(n_events):
            user = "" if n % 10 == 0 else f"U{rng.randrange(n_users):02d}"
            user_pref = int(user[1:]) % len(cats) if user else 0
            sku = rng.choices(items, weights=weights)[0][0]
            if user and rng.random() < 0.6:  # users stick to one category
                pool = [it for it in items if it[2] == cats[user_pref]]
                sku = rng.choice(pool)[0]
            et = rng.choices(["view", "click", "cart", "purchase"], weights=[5, 3, 1, 1])[0]
            ts = start + timedelta(days=rng.randrange(60), seconds=rng.randrange(86400))
            w.writerow([user, sku, et, ts.strftime("%Y-%m-%dT%H:%M:%SZ")])
        for b in range(bad_rows):
            w.writerow([f"U{b:02d}", "SKU001", "view", "not a date"])
    return cat_path, ev_path


def import_shop(folder: Path, ws_path: Path, **shop_options) -> None:
    """Write a shop export with :func:`write_shop` into ``folder`` and import both files into ``ws_path``."""
    from merch_app.data.importer import import_file

    cat, ev = write_shop(folder, **shop_options)
    import_file(ws_path, cat)
    import_file(ws_path, ev)


def make_window(qtbot, workspace: Path):
    """A MainWindow on ``workspace`` registered with qtbot (closed at teardown)."""
    from merch_app.ui.app import create_app
    from merch_app.ui.main_window import MainWindow

    create_app()
    window = MainWindow(workspace)
    qtbot.addWidget(window, before_close_func=lambda w: [r.shutdown() for r in w.runners])
    window.resize(1400, 900)
    window.show()
    return window


def wait_idle(qtbot, window, timeout: int = 120_000) -> None:
    """Wait until no runner of ``window`` has a job queued or running."""
    qtbot.waitUntil(lambda: not window.busy(), timeout=timeout)

"""The Train screen in the middle of a training: one overall bar, the phase label, the phase log.

Usage (from the repository root)::

    .venv/bin/python docs/screenshots/make_train_running_screenshots.py [--encoder hashing:64]

Imports the demo files into a fresh temp workspace, starts a 20-epoch training
through the Train screen and saves ``train_running.png`` (1400x900) during the
epochs and ``train_running_720.png`` (1280x720) a few epochs later.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shots import OUT, open_window, pump, temp_home, wait_idle  # noqa: E402  (sets offscreen/offline first)


def wait_epochs(app, window, train, n: int) -> None:
    """Process events until the run has drawn ``n`` epochs (or has ended)."""
    while window.busy() and len(train.history["epoch"]) < n:
        pump(app, 0.05)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", default="minilm", help="text encoder spec for training (minilm | hashing:64)")
    args = ap.parse_args(argv)
    from merch_app.data.demo import import_demo_files

    tmp = temp_home("merch_train_running_")
    ws = tmp / "demo.merch.sqlite"
    import_demo_files(ws)
    app, window = open_window(ws)
    wait_idle(app, window)
    train = window.show_screen("Train")
    train.form.set_encoder(args.encoder)
    train.start_training(overrides={"epochs": 20, "early_stopping_patience": 20})
    wait_epochs(app, window, train, 6)
    window.banner.hide()
    window.grab().save(str(OUT / "train_running.png"))
    print("wrote train_running.png:", train.eta_label.text())
    window.resize(1280, 720)
    wait_epochs(app, window, train, 10)
    pump(app, 0.2)
    window.grab().save(str(OUT / "train_running_720.png"))
    print("wrote train_running_720.png:", train.eta_label.text())
    wait_idle(app, window, timeout=1800)
    print("\n".join(train.log.toPlainText().splitlines()))
    window.close()  # stops the workers: a thread still running at exit aborts Python
    return 0


if __name__ == "__main__":
    sys.exit(main())

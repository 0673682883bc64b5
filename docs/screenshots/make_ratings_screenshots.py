"""Render the Train screen of a ratings workspace offscreen: predicted ratings against the bias baselines.

Usage::

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/make_ratings_screenshots.py

Fills a temp workspace with the MovieLens-shaped synthetic ratings of ``benchmarks/synth_ratings.py``
(data seed 0), trains an explicit model through the Train screen with the hashing encoder, and saves
``train_ratings.png`` and ``train_ratings_720.png``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from shots import open_window, pump, save, temp_home, wait_idle  # sets the offscreen/offline switches first

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def main() -> int:
    import synth_ratings

    from merch_app.data.workspace import open_workspace

    tmp = temp_home("merch_ratings_shots_")
    path = tmp / "ratings.merch.sqlite"
    db = open_workspace(path)
    synth_ratings.fill_workspace(db, synth_ratings.generate(0))
    db.close()
    app, window = open_window(path)
    train = window.show_screen("Train")
    train.form.set_encoder("hashing:256")
    train.start_training(overrides={"epochs": 6})
    wait_idle(app, window)
    pump(app, 1.0)
    save(app, window, "train_ratings.png")
    window.resize(1280, 720)
    pump(app)
    save(app, window, "train_ratings_720.png")
    rows = train.versions.baselines_table.rowCount()
    print("rating rows", rows, train.versions.chart.widget.plotItem.titleLabel.text)
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

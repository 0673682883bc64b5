"""Train screen: a short training run draws live curves and lands in the versions table."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from merch_app.data.workspace import open_workspace  # noqa: E402
from merch_app.model import registry  # noqa: E402
from merch_app.ui.screens.model_versions import RATING_TITLE  # noqa: E402
from ui_support import import_shop, make_window, wait_idle  # noqa: E402


def list_versions(path):
    db = open_workspace(path)
    try:
        return registry.list_versions(db)
    finally:
        db.close()


def active_version(path):
    db = open_workspace(path)
    try:
        return registry.active_version(db)
    finally:
        db.close()


@pytest.fixture
def train_window(qtbot, tmp_path, ws_path):
    import_shop(tmp_path / "shop", ws_path, n_events=1500)
    window = make_window(qtbot, ws_path)
    screen = window.show_screen("Train")
    wait_idle(qtbot, window)
    screen.form.set_encoder("hashing:64")
    screen.form.dim.setValue(16)
    screen.form.batch_size.setValue(256)
    return window, screen


def test_short_training_draws_curves_and_registers_a_version(qtbot, train_window, ws_path):
    window, screen = train_window
    assert screen.versions.table.rowCount() == 0
    screen.start_training(overrides={"epochs": 2, "refit_epochs": 1})
    assert screen.form.epochs.value() == 2  # the form shows the epochs that run
    assert not screen.start_button.isEnabled() and screen.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: screen.last_version is not None, timeout=120_000)
    wait_idle(qtbot, window)

    x, y = screen.loss_curve.getData()
    assert list(x) == [1.0, 2.0] and np.all(np.isfinite(y))
    assert screen.batch_curve.getData()[0].size >= 1  # batch reports are rate-limited to 10/s
    nd = screen.ndcg_curve.getData()[1]
    assert len(nd) == 2 and np.all((nd >= 0) & (nd <= 1))
    versions = list_versions(ws_path)
    assert len(versions) == 1
    # the versions table refreshes in a later pass of the event loop (models_changed is deferred)
    qtbot.waitUntil(lambda: screen.versions.table.rowCount() == 1, timeout=10_000)
    assert screen.versions.table.item(0, 0).text() == versions[0].name
    assert "MAE" not in screen.versions.columns  # implicit feedback: no rating error column
    assert screen.versions.table.item(0, screen.versions.columns.index("active")).text() == "✔"  # first version: active
    assert "epoch 2" in screen.log.toPlainText() and "Saved model version" in screen.log.toPlainText()
    best = versions[0].metrics["best_epoch"]
    assert f"refit 1/1 on all data, from epoch {best}'s parameters" in screen.log.toPlainText()
    assert list(screen.refit_curve.getData()[0]) == [best + 1.0]
    # model vs baselines: table rows = model + baselines, chart bars filled
    assert screen.versions.baselines_table.rowCount() >= 2
    assert "model" in screen.versions.chart.items
    assert len(screen.versions.chart.items["model"].opts["height"]) > 0
    assert window.model_label.text() == f"Active model: {versions[0].name}"
    assert screen.start_button.isEnabled()


def test_rename_activate_delete(qtbot, train_window, ws_path):
    window, screen = train_window
    for _ in range(2):
        screen.start_training(overrides={"epochs": 1, "refit_epochs": 0})
        qtbot.waitUntil(lambda: not screen.train_runner.is_busy(), timeout=120_000)
    wait_idle(qtbot, window)
    versions = list_versions(ws_path)
    assert len(versions) == 2
    qtbot.waitUntil(lambda: screen.versions.table.rowCount() == 2, timeout=10_000)  # models_changed is deferred
    inactive = next(v for v in versions if not v.active)
    screen.versions.rename(inactive.model_id, "candidate B")
    screen.versions.activate(inactive.model_id)
    wait_idle(qtbot, window)
    assert active_version(ws_path).name == "candidate B"
    qtbot.waitUntil(lambda: any(screen.versions.table.item(r, 0).text() == "candidate B"
                                for r in range(screen.versions.table.rowCount())), timeout=10_000)
    other = next(v for v in versions if v.model_id != inactive.model_id)
    screen.versions.delete(other.model_id)
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: screen.versions.table.rowCount() == 1, timeout=10_000)
    assert [v.name for v in list_versions(ws_path)] == ["candidate B"]


def test_cancel_training_saves_nothing(qtbot, train_window, ws_path, monkeypatch):
    import threading
    import time

    from merch_app.services import training

    real = training.train
    in_batches = threading.Event()

    def held(db, config, progress=None, cancel=None, **kw):
        """Training whose batch reports wait for the cancel (no race with a fast machine)."""
        deadline = time.perf_counter() + 20

        def prog(p):
            progress(p)
            if "batch" in p.data:
                in_batches.set()
                while not cancel.cancelled and time.perf_counter() < deadline:
                    time.sleep(0.01)

        return real(db, config, progress=prog, cancel=cancel, **kw)

    monkeypatch.setattr(training, "train", held)
    window, screen = train_window
    screen.start_training(overrides={"epochs": 50, "early_stopping_patience": 50})
    # The GUI may coalesce rate-limited batch reports: wait for the worker itself.
    qtbot.waitUntil(in_batches.is_set, timeout=120_000)
    screen.cancel_button.click()
    qtbot.waitUntil(lambda: not screen.train_runner.is_busy(), timeout=60_000)
    assert list_versions(ws_path) == []
    assert "cancelled" in screen.log.toPlainText()
    assert screen.start_button.isEnabled()


def test_batch_losses_are_drawn_at_most_every_redraw_interval(qtbot, ws_path):
    from merch_app.jobs import Progress
    from merch_app.ui.screens.train_screen import BATCH_REDRAW_MS

    window = make_window(qtbot, ws_path)
    screen = window.show_screen("Train")
    screen._run_epochs = 2
    for b in range(1, 21):  # 20 reports in a burst: one redraw after the interval, not 20
        screen._on_progress(Progress(b, 40, "epoch 1/2", None, {"phase": "train", "epoch": 1, "batch": b,
                                                                 "loss": 1.0 / b}))
    assert screen.batch_curve.getData()[0] is None or screen.batch_curve.getData()[0].size == 0
    qtbot.wait(BATCH_REDRAW_MS + 150)
    x, y = screen.batch_curve.getData()
    assert x.size == 20 and y[-1] == pytest.approx(1 / 20)
    # an epoch end draws at once, with the epoch's mean as the curve's last point
    screen._on_progress(Progress(20, 40, "epoch 1/2", None, {"phase": "train", "epoch": 1, "loss": 0.5,
                                                              "epoch_end": True}))
    x, y = screen.batch_curve.getData()
    assert x.size == 21 and x[-1] == 1.0 and y[-1] == 0.5
    assert list(screen.loss_curve.getData()[0]) == [1.0]


def test_metric_axis_labels_are_short():
    from merch_app.ui.screens.model_versions import axis_label

    assert [axis_label(m) for m in ("ndcg@10", "precision@10", "recall@10", "map@10", "mrr", "coverage")] == \
        ["nDCG@10", "P@10", "R@10", "MAP@10", "MRR", "coverage"]


def test_starting_a_training_while_another_process_trains_asks_first(qtbot, train_window, ws_path, monkeypatch):
    """A window and the CLI (another process) on one workspace: the second training is only started if agreed."""
    import socket
    import subprocess
    import sys

    from PySide6.QtWidgets import QMessageBox

    window, screen = train_window
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    db = open_workspace(ws_path)
    with db.conn:
        db.execute("INSERT INTO job_marks(kind, label, pid, host, started) VALUES ('train', 'cli run', ?, ?, "
                   "'2026-01-01T05:40:00Z')", [other.pid, socket.gethostname()])
    db.close()
    asked = []

    def answer(parent, title, text, *args):
        asked.append(text)
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", answer)
    try:
        screen.start_training(overrides={"epochs": 1, "refit_epochs": 0})
        assert len(asked) == 1 and f"a training (“cli run”) in process {other.pid}" in asked[0]
        assert "Start this training as well?" in asked[0]
        assert screen.start_button.isEnabled() and not screen.train_runner.is_busy()  # not started
    finally:
        other.kill()
        other.wait()
    screen.start_training(overrides={"epochs": 1, "refit_epochs": 0})  # the other process is gone: no question
    assert len(asked) == 1
    qtbot.waitUntil(lambda: screen.last_version is not None, timeout=120_000)
    wait_idle(qtbot, window)


def test_the_bar_shows_the_whole_job_and_reaches_100_only_at_the_end(qtbot, train_window):
    window, screen = train_window
    values, labels = [], []
    screen.progress.valueChanged.connect(values.append)
    shown = screen._on_progress

    def spy(p):
        shown(p)
        labels.append(screen.eta_label.text())

    screen._on_progress = spy  # the runner gets the bound callback when the training starts
    screen.start_training(overrides={"epochs": 4, "refit_epochs": 1, "early_stopping_patience": 10})
    qtbot.waitUntil(lambda: screen.last_version is not None, timeout=120_000)
    wait_idle(qtbot, window)
    assert values == sorted(values)  # one bar for the whole job: it never goes back at a phase change
    assert values[-1] == 1000 and all(v < 1000 for v in values[:-1])
    assert any(v < 500 for v in values)  # the bar moved through the job, not in one jump at the end
    assert any(t.startswith("phase 3 of 5: train · epoch 2/4") for t in labels)
    assert any(t.startswith("phase 1 of 5: encode") for t in labels)
    log = screen.log.toPlainText()
    starts = [line.split("] ", 1)[1].split(" — ")[0] for line in log.splitlines() if "] phase " in line]
    assert starts == ["phase 1 of 5: encode", "phase 2 of 5: user vectors", "phase 3 of 5: train",
                      "phase 4 of 5: evaluate", "phase 5 of 5: save"]
    note = screen.split_label.text()
    assert "held-out users inside the training period" in note and "at 80% of it" in note
    assert "test period after the split date" in note
    assert "15% of the users (at most 2,000)" in screen.split_label.toolTip()


def test_early_stopping_is_said_in_the_log(qtbot, ws_path):
    from merch_app.jobs import Progress

    window = make_window(qtbot, ws_path)
    screen = window.show_screen("Train")
    text = "early stopping at epoch 12 of 20 (no gain in validation NDCG@10 of the CF part for 3 epochs)"
    screen._on_progress(Progress(100, 100, text, None, {"phase": "train", "epoch": 12, "early_stop": True,
                                                        "overall": 0.7, "phase_index": 2,
                                                        "phases": ["encode", "user vectors", "train", "evaluate"]}))
    assert text in screen.log.toPlainText()
    assert screen.progress.value() == 700
    assert screen.eta_label.text().startswith("phase 3 of 4: train")


def test_training_on_ratings_shows_rating_errors(qtbot, ws_path):
    """Explicit ratings: RMSE / MAE curves, the chosen baseline parts in the log, MAE against the bias baselines."""
    from datetime import datetime, timezone

    from test_rating_drift_taste import drifting

    train, _, _ = drifting()
    db = open_workspace(ws_path)
    with db.conn:
        db.insert_rows("items", [{"item_id": str(i), "title": f"film {i}"} for i in train.item_ids])
        db.insert_rows("events", [
            {"user_id": str(train.user_ids[u]), "item_id": str(train.item_ids[i]), "event_type": "rating",
             "value": float(v), "ts": datetime.fromtimestamp(t * 86400.0, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
            for u, i, v, t in zip(train.user_idx, train.item_idx, train.value, train.ts)])
    db.close()
    window = make_window(qtbot, ws_path)
    screen = window.show_screen("Train")
    wait_idle(qtbot, window)
    screen.form.set_encoder("hashing:64")
    screen.form.dim.setValue(8)
    screen.start_training(overrides={"epochs": 3})
    qtbot.waitUntil(lambda: screen.last_version is not None, timeout=120_000)
    wait_idle(qtbot, window)
    legend = screen.val_chart.legend
    assert [legend.getLabel(c).text for c in (screen.ndcg_curve, screen.prec_curve)] == ["RMSE", "MAE"]
    rmse = screen.ndcg_curve.getData()[1]
    assert len(rmse) >= 1 and np.all(np.isfinite(rmse))
    log = screen.log.toPlainText()
    assert "user-bias drift: λ" in log and "val RMSE" in log and "test MAE" in log
    panel = screen.versions
    qtbot.waitUntil(lambda: panel.table.rowCount() == 1, timeout=10_000)
    assert float(panel.table.item(0, panel.columns.index("MAE")).text()) == pytest.approx(
        screen.last_version.metrics["mae"], abs=1e-4)
    assert [panel.baselines_table.item(r, 0).text() for r in range(panel.baselines_table.rowCount())] == [
        "model", "damped biases", "damped item bias", "global mean"]
    assert panel.chart.widget.plotItem.titleLabel.text == RATING_TITLE
    assert len(panel.chart.items["model"].opts["height"]) >= 2

"""``run_gui(demo=True)`` path: demo import in a worker behind a progress dialog, then a short training."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from merch_app.data.summary import data_summary  # noqa: E402


def test_demo_workspace_is_imported_then_trained(qtbot, tmp_path, monkeypatch):
    from merch_app.ui import app

    monkeypatch.setattr(app, "DEMO_TRAIN_OVERRIDES",
                        {"epochs": 1, "refit_epochs": 0, "dim": 16, "encoder": "hashing:64"})
    ws = tmp_path / "demo.merch.sqlite"
    window = app.build_window(ws, demo=True)
    qtbot.addWidget(window, before_close_func=lambda w: [r.shutdown() for r in w.runners])
    window.show()
    qtbot.waitUntil(lambda: window.demo_loader.finished, timeout=120_000)
    assert window.ctx.path == ws.resolve()
    assert window.windowTitle().startswith("demo")
    summary = data_summary(ws)
    assert summary.items > 2000 and summary.users == 300
    train = window.screens["Train"]
    assert window.stack.currentWidget() is train  # the short demo training started
    qtbot.waitUntil(lambda: train.last_version is not None, timeout=300_000)
    qtbot.waitUntil(lambda: train.versions.table.rowCount() == 1, timeout=30_000)  # list refreshed in a worker
    assert window.model_label.text() == f"Active model: {train.last_version.name}"

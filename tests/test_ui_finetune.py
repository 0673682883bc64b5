"""Train screen, "Fine-tune encoder" step: a tiny-BERT run draws its curves, fills the before/after table,
lands in the encoder versions list and reaches the Query screen; cancel and quit leave everything as it was."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from finetune_support import basket_shop, tiny_bert  # noqa: E402
from merch_app.data.workspace import open_workspace  # noqa: E402
from merch_app.model import encoder_versions as ev  # noqa: E402
from model_fixtures import fill_workspace  # noqa: E402
from ui_support import make_window, wait_idle  # noqa: E402

# lr and frozen layers suited to a random 2-layer BERT (the defaults are MiniLM's); validation on
FAST = dict(max_pairs=600, batch_size=16, lr=1e-3, epochs=2, freeze_embeddings=False, freeze_layers=0,
            val_fraction=0.2, min_val_pairs=1, evals_per_epoch=3)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("bert") / "tiny")


def read(path, fn):
    db = open_workspace(path)
    try:
        return fn(db)
    finally:
        db.close()


@pytest.fixture
def ft_window(qtbot, ws_path, bert_dir):
    read(ws_path, lambda db: fill_workspace(db, *basket_shop()))
    window = make_window(qtbot, ws_path)
    screen = window.show_screen("Train")
    panel = screen.show_finetune()
    panel.encoder_spec = str(bert_dir)
    wait_idle(qtbot, window)
    return window, screen, panel


def test_form_defaults_are_the_configs():
    from merch_app.model.finetune import FinetuneConfig
    from merch_app.ui.screens.train_form import FINETUNE_DEFAULTS

    cfg = FinetuneConfig()
    assert FINETUNE_DEFAULTS == {"epochs": cfg.epochs, "max_pairs": cfg.max_pairs}


def test_finetune_from_the_screen_curves_table_versions_and_query(qtbot, ft_window, ws_path):
    window, screen, panel = ft_window
    assert panel.versions.table.rowCount() == 0
    panel.form.activate.setChecked(False)  # "activate when better" off: registered, not active
    panel.form.name.setText("shop v2")
    panel.start_finetune(overrides=FAST)
    assert not panel.start_button.isEnabled() and panel.cancel_button.isEnabled()
    assert window.long_jobs() == ["Fine-tuning encoder"]
    qtbot.waitUntil(lambda: panel.last_result is not None, timeout=120_000)
    wait_idle(qtbot, window)

    x, y = panel.loss_curve.getData()
    assert x is not None and x.size >= 1 and np.all(np.isfinite(y))
    vx, nd = panel.ndcg_curve.getData()
    assert vx[0] == 0 and len(nd) >= 2 and np.all((nd >= 0) & (nd <= 1))  # before training, then during
    assert not panel.val_chart.empty.shown
    assert len(panel.recall_curve.getData()[1]) == len(nd)
    # before/after table from the service's result; the curves hold every step of its history
    result = panel.last_result
    assert x.size == result.version.metrics["steps"]
    assert vx.size == len([h for h in result.version.metrics["history"] if h.get("validation")])
    assert panel.table.rowCount() == 5
    assert [panel.table.item(r, 0).text() for r in range(5)] == [
        "NDCG@10", "recall@10", "recall@50", "related NDCG@10", "related recall@10"]
    related = result.comparison["related"]
    assert float(panel.table.item(3, 2).text()) == pytest.approx(related["ndcg@10"]["after"], abs=1e-4)
    assert f"related: {related['n_items']:,} products" in panel.table_caption.text()
    row = result.comparison["ndcg@10"]
    assert float(panel.table.item(0, 1).text()) == pytest.approx(row["before"], abs=1e-4)
    assert float(panel.table.item(0, 2).text()) == pytest.approx(row["after"], abs=1e-4)
    assert panel.table.item(0, 3).text() == f"{row['delta']:+.4f}"
    assert f"{result.comparison['n_anchors']:,} held-out anchors" in panel.table_caption.text()
    assert "Saved encoder version" in panel.log.toPlainText() and "ETA" not in panel.eta_label.text()
    assert panel.start_button.isEnabled() and window.long_jobs() == []

    # the versions list (refreshed on models_changed, a later pass)
    v = result.version
    assert not v.active
    qtbot.waitUntil(lambda: panel.versions.table.rowCount() == 1, timeout=10_000)
    cols = ev_cols(panel)
    assert panel.versions.table.item(0, cols["id"]).text() == v.version_id
    assert v.name == panel.versions.table.item(0, cols["name"]).text() == "shop v2"
    assert panel.versions.table.item(0, cols["parent"]).text() == "tiny"
    assert panel.versions.table.item(0, cols["pairs"]).text() == str(v.n_pairs)
    assert "→" in panel.versions.table.item(0, cols["NDCG@10 (held out)"]).text()
    related = result.comparison["related"]["ndcg@10"]
    assert panel.versions.table.item(0, cols["related NDCG@10"]).text() == (
        f"{related['before']:.3f} → {related['after']:.3f} ({related['delta']:+.3f})")
    assert panel.versions.table.item(0, cols["active"]).text() == ""
    assert panel.versions.activate_button.isEnabled() and not panel.versions.base_button.isEnabled()

    # activate: the registry and the Query screen (text-only ranking follows the active encoder)
    panel.versions.activate(v.version_id)
    wait_idle(qtbot, window)
    assert read(ws_path, ev.active_encoder_version).version_id == v.version_id
    qtbot.waitUntil(lambda: panel.versions.table.item(0, cols["active"]).text() == "✔", timeout=10_000)
    assert panel.versions.active_label.text().strip() == "active: shop v2 (fine-tuned)"
    query = window.show_screen("Query")
    query.controls.query_box.setText("candle")
    qtbot.waitUntil(lambda: query.engine_info is not None and query.result is not None, timeout=60_000)
    wait_idle(qtbot, window)
    assert query.engine_info.encoder_id == v.encoder_id
    assert f"encoder: shop v2 [{v.version_id}] (fine-tuned)" in query.status.text()

    # the Query screen's encoder box shows the active version and switches the workspace's encoder
    qtbot.waitUntil(lambda: query.selected_encoder() == v.version_id, timeout=10_000)
    box = query.encoder_box
    assert [box.itemText(i) for i in range(box.count())] == ["base encoder", "shop v2 (fine-tuned)"]
    assert "NDCG@10" in box.itemData(1, Qt.ItemDataRole.ToolTipRole)
    box.setCurrentIndex(0)
    box.activated.emit(0)  # as a click on "base encoder"
    wait_idle(qtbot, window)
    assert read(ws_path, ev.active_encoder_version) is None
    qtbot.waitUntil(lambda: query.result is not None and query.engine_info.encoder_id != v.encoder_id,
                    timeout=60_000)
    assert "(fine-tuned)" not in query.status.text() and query.encoder_mismatch() is None
    box.setCurrentIndex(1)
    box.activated.emit(1)
    wait_idle(qtbot, window)
    assert read(ws_path, ev.active_encoder_version).version_id == v.version_id

    # back to base, then delete
    window.show_screen("Train")
    panel.versions.back_to_base()
    wait_idle(qtbot, window)
    assert read(ws_path, ev.active_encoder_version) is None
    qtbot.waitUntil(lambda: panel.versions.table.item(0, cols["active"]).text() == "", timeout=10_000)
    generation = query.generation
    panel.versions.delete(v.version_id)
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: panel.versions.table.rowCount() == 0, timeout=10_000)
    assert read(ws_path, ev.list_encoder_versions) == []
    assert query.generation > generation  # the Query screen reloads its ranker when shown


def test_the_query_screen_says_when_the_model_ranks_with_another_encoder(qtbot, ws_path):
    from merch_app.services.query_engine import EngineInfo

    read(ws_path, lambda db: fill_workspace(db, *basket_shop(n_users=5, days=5)))
    window = make_window(qtbot, ws_path)
    query = window.show_screen("Query")
    wait_idle(qtbot, window)
    tuned = ev.new_version_id()
    query.encoder_box.addItem("shop v2 (fine-tuned)", tuned)
    query.encoder_box.setCurrentIndex(query.encoder_box.count() - 1)
    query.engine_info = EngineInfo("model one", "m1", "all-MiniLM-L6-v2@ab12", 3)
    assert "retrain to rank with shop v2 (fine-tuned)" in query.encoder_mismatch()
    query.engine_info = EngineInfo("model one", "m1", f"{tuned}@cd34", 3)
    assert query.encoder_mismatch() is None
    query.engine_info = EngineInfo("text only (no model)", None, "all-MiniLM-L6-v2@ab12", 3)
    assert query.encoder_mismatch() is None  # text only ranks with the chosen encoder itself
    query.encoder_box.setCurrentIndex(0)
    query.engine_info = EngineInfo("model one", "m1", "all-MiniLM-L6-v2@ab12", 3)
    assert query.encoder_mismatch() is None


def ev_cols(panel) -> dict[str, int]:
    return {name: i for i, name in enumerate(panel.versions.COLUMNS)}


def test_cancel_and_quit_while_fine_tuning_leave_the_versions_unchanged(qtbot, ft_window, ws_path, monkeypatch):
    from merch_app.services import finetune as service

    real = service.finetune
    in_steps = threading.Event()

    def held(db, config, progress=None, cancel=None, **kw):
        """A run whose step reports wait for the cancel (no race with a fast machine)."""
        deadline = time.perf_counter() + 30

        def prog(p):
            held_here = p.data.get("phase") == "finetune" and p.done >= 1
            if held_here:
                time.sleep(0.15)  # past the runner's 10/s rate limit: this report reaches the screen
            progress(p)
            if held_here:
                in_steps.set()
                while not cancel.cancelled and time.perf_counter() < deadline:
                    time.sleep(0.01)

        return real(db, config, progress=prog, cancel=cancel, **kw)

    monkeypatch.setattr(service, "finetune", held)
    window, screen, panel = ft_window
    panel.start_finetune(overrides=FAST)
    qtbot.waitUntil(in_steps.is_set, timeout=120_000)
    qtbot.waitUntil(lambda: "step" in panel.eta_label.text(), timeout=10_000)
    assert "fine-tuning · step" in panel.eta_label.text()

    # quitting asks first; "No" keeps the window and the job
    asked = []
    monkeypatch.setattr(window, "confirm_quit", lambda jobs: asked.append(jobs) or False)
    window.close()
    assert asked == [["Fine-tuning encoder"]]
    assert window.isVisible() and panel.is_running()

    panel.cancel_button.click()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=60_000)
    wait_idle(qtbot, window)
    assert read(ws_path, ev.list_encoder_versions) == []
    assert read(ws_path, ev.active_encoder_version) is None
    folder = read(ws_path, lambda db: ev.encoders_dir(db, create=False))
    assert not folder.exists() or not any(folder.iterdir())
    assert panel.last_result is None and panel.table.rowCount() == 0
    assert "cancelled" in panel.log.toPlainText() and panel.eta_label.text() == "cancelled"
    assert panel.start_button.isEnabled() and panel.versions.table.rowCount() == 0
    assert window.long_jobs() == []


def test_a_shop_too_small_to_validate_says_so_instead_of_an_empty_chart(qtbot, ft_window):
    window, screen, panel = ft_window
    panel.form.activate.setChecked(False)
    panel.start_finetune(overrides={**FAST, "epochs": 1, "min_val_pairs": 10_000})
    qtbot.waitUntil(lambda: panel.last_result is not None, timeout=120_000)
    wait_idle(qtbot, window)
    result = panel.last_result
    assert result.version is not None and not [h for h in result.version.metrics["history"] if h.get("validation")]
    assert panel.val_chart.empty.shown and "No validation" in panel.val_chart.empty.text.toPlainText()
    assert panel.ndcg_curve.getData()[0] is None or len(panel.ndcg_curve.getData()[0]) == 0
    x, _ = panel.loss_curve.getData()
    assert x is not None and x.size == result.version.metrics["steps"]

"""Query screen: as-you-type results, explanation charts, why-not, exports, stale results dropped."""
from __future__ import annotations

import json

import numpy as np

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from ui_support import import_shop, make_window, wait_idle  # noqa: E402


@pytest.fixture
def query_window(qtbot, tmp_path, ws_path):
    import_shop(tmp_path / "shop", ws_path)
    window = make_window(qtbot, ws_path)
    screen = window.screens["Query"]
    screen.encoder_spec = "hashing:64"
    window.show_screen("Query")
    qtbot.waitUntil(lambda: screen.engine_info is not None, timeout=30_000)  # first (debounced) query ran
    wait_idle(qtbot, window)
    return window, screen


def test_typing_ranks_and_explains(qtbot, query_window, tmp_path):
    window, screen = query_window
    shown = screen.results_shown
    qtbot.keyClicks(screen.controls.query_box, "vintage mug")
    qtbot.waitUntil(lambda: screen.results_shown > shown and screen.result.request.query == "vintage mug",
                    timeout=30_000)
    wait_idle(qtbot, window)
    rl = screen.result.ranked
    assert screen.model.rowCount() == len(rl) > 0
    assert "mug" in rl.titles[0].lower()
    # histogram and map hold data
    x, y = screen.histogram.curve.getData()
    assert y.sum() == rl.n_candidates
    assert len(screen.map.all.data) > 0 and len(screen.map.hits.data) == len(rl)

    screen.select_row(0)
    qtbot.waitUntil(lambda: screen.explain.explanation is not None, timeout=30_000)
    exp = screen.explain.explanation
    assert exp.item_id == rl.item_ids[0]
    assert screen.explain.waterfall.bars.opts["height"] is not None
    heights = list(screen.explain.waterfall.bars.opts["height"])
    assert abs(heights[-1] - float(rl.scores[0])) < 1e-6  # total bar = the score
    assert screen.explain.heatmap.matrix.shape[0] == 2  # two query words
    assert "<b>" in screen.explain.header.text()

    last_id = rl.item_ids[-1]
    screen.explain.why_not_box.setText(last_id)
    screen.explain.why_not_button.click()
    qtbot.waitUntil(lambda: screen.explain.why_not_result is not None, timeout=30_000)
    assert screen.explain.why_not_result.rank == len(rl)
    assert f"rank <b>{len(rl)}</b>" in screen.explain.why_not_label.text()

    out = screen.export_results(tmp_path / "r.json")
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert len(doc["results"]) == len(rl) and doc["explanation"]["item_id"] == rl.item_ids[0]
    csv_out = screen.export_results(tmp_path / "r.csv")
    assert len(csv_out.read_text(encoding="utf-8").splitlines()) == len(rl) + 1
    pngs = screen.export_charts(tmp_path / "charts")
    assert all(p.stat().st_size > 1000 for p in pngs)


def test_weight_change_shows_rank_changes(qtbot, query_window):
    window, screen = query_window
    screen.controls.query_box.setText("red")
    qtbot.waitUntil(lambda: screen.result is not None and screen.result.request.query == "red", timeout=30_000)
    wait_idle(qtbot, window)
    n = screen.results_shown
    screen.controls.sliders["pop"].setValue(1.0)
    qtbot.waitUntil(lambda: screen.results_shown > n, timeout=30_000)
    wait_idle(qtbot, window)
    changes = screen.model.changes
    assert changes and all(c == "=" or c[0] in "▲▼" or c == "new" for c in changes)
    assert screen.result.request.weights.pop == 1.0


def test_stale_queries_are_dropped(qtbot, query_window):
    window, screen = query_window
    n = screen.results_shown
    for text in ("b", "bl", "blu", "blue", "blue c", "blue cu", "blue cup"):
        screen.controls.query_box.setText(text)
        screen.run_query()  # bypass the debounce: every keystroke starts a job
    qtbot.waitUntil(lambda: not window.busy(), timeout=30_000)
    assert screen.result.request.query == "blue cup"
    assert screen.results_shown - n <= 2  # older queries were cancelled or their results dropped


def test_user_profile_and_recommend_mode(qtbot, query_window):
    window, screen = query_window
    screen.controls.set_user("U03")
    qtbot.waitUntil(lambda: screen.controls.profile.text().startswith("U03:"), timeout=30_000)
    assert "events" in screen.controls.profile.text() and "last seen" in screen.controls.profile.text()
    screen.controls.mode.setCurrentIndex(screen.controls.mode.findData("recommend"))
    qtbot.waitUntil(lambda: screen.result is not None and screen.result.request.mode == "recommend",
                    timeout=30_000)
    assert screen.result.request.user_id == "U03" and screen.model.rowCount() > 0


@pytest.fixture
def trained_ws(tmp_path, ws_path):
    from merch_app.data.workspace import open_workspace
    from merch_app.model.encoder import load_encoder
    from merch_app.model.hybrid import HybridConfig
    from merch_app.services.training import train

    import_shop(tmp_path / "shop", ws_path, n_events=1500)
    db = open_workspace(ws_path)
    try:
        version = train(db, HybridConfig(dim=16, epochs=2, refit_epochs=1, batch_size=256, encoder="hashing:64"),
                        encoder=load_encoder("hashing:64"))
    finally:
        db.close()
    return ws_path, version


def test_user_query_with_trained_model_explains_behaviour(qtbot, trained_ws):
    ws_path, version = trained_ws
    window = make_window(qtbot, ws_path)
    screen = window.screens["Query"]
    window.show_screen("Query")
    qtbot.waitUntil(lambda: screen.engine_info is not None, timeout=30_000)
    wait_idle(qtbot, window)
    assert screen.engine_info.model_id == version.model_id and screen.engine_info.warning is None
    screen.controls.set_user("U01")
    screen.controls.mode.setCurrentIndex(screen.controls.mode.findData("recommend"))
    qtbot.waitUntil(lambda: screen.result is not None and screen.result.request.mode == "recommend"
                    and screen.result.request.user_id == "U01", timeout=30_000)
    wait_idle(qtbot, window)
    rl = screen.result.ranked
    assert len(rl) > 0 and float(np.abs(rl.components["cf"]).sum()) > 0
    screen.select_row(0)
    qtbot.waitUntil(lambda: screen.explain.explanation is not None, timeout=30_000)
    exp = screen.explain.explanation
    assert exp.cf and screen.explain.because_list.count() >= 1
    assert screen.explain.because_list.item(0).text() != ""
    assert screen.explain.model_parts_label.text().startswith(f"model score {exp.cf['model_score']:.4f} = ")


def test_damaged_active_model_still_opens_with_warning(qtbot, trained_ws):
    from merch_app.data.workspace import models_dir, open_workspace

    ws_path, version = trained_ws
    db = open_workspace(ws_path)
    folder = models_dir(db) / version.path
    db.close()
    (folder / "arrays.safetensors").write_bytes(b"garbage")  # damaged but present
    window = make_window(qtbot, ws_path)
    screen = window.screens["Query"]
    window.show_screen("Query")
    screen.encoder_spec = "hashing:64"
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: screen.engine_info is not None, timeout=30_000)
    assert screen.engine_info.warning and "cannot be loaded" in screen.engine_info.warning
    assert window.banner.level == "warning"
    screen.controls.query_box.setText("mug")
    qtbot.waitUntil(lambda: screen.result is not None and screen.result.request.query == "mug", timeout=30_000)
    assert len(screen.result.ranked) > 0  # text-only ranking still works

    (folder / "arrays.safetensors").unlink()  # missing file: caught already when the workspace opens
    window2 = make_window(qtbot, ws_path)
    wait_idle(qtbot, window2)
    assert "damaged" in window2.model_label.text() and window2.banner.level == "warning"


def test_filters_restrict_results(qtbot, query_window):
    window, screen = query_window
    c = screen.controls
    qtbot.waitUntil(lambda: c.category.count() > 1, timeout=30_000)  # filled from the loaded engine
    c.category.setCurrentIndex(c.category.findData("kitchen"))
    c.price_max.setText("20")
    c.query_box.setText("vintage")
    qtbot.waitUntil(lambda: screen.result is not None and screen.result.request.query == "vintage"
                    and screen.result.request.filters.price_max == 20.0, timeout=30_000)
    wait_idle(qtbot, window)
    rl = screen.result.ranked
    assert len(rl) > 0
    assert set(rl.categories) == {"kitchen"} and max(rl.prices) <= 20.0
    assert not screen.table.isColumnHidden(4)  # category column shown when items have categories


def test_misspelt_query_shows_correction_and_literal_link(qtbot, query_window):
    window, screen = query_window
    shown = screen.results_shown
    screen.controls.query_box.setText("vintge mug")
    qtbot.waitUntil(lambda: screen.results_shown > shown and screen.result.request.query == "vintge mug",
                    timeout=30_000)
    wait_idle(qtbot, window)
    rl = screen.result.ranked
    assert rl.corrected_query == "vintage mug"
    assert not screen.spelling.isHidden()
    assert "Showing results for <b>vintage mug</b>" in screen.spelling.text()
    shown = screen.results_shown
    screen.spelling.linkActivated.emit("literal")  # "search instead for vintge mug"
    qtbot.waitUntil(lambda: screen.results_shown > shown, timeout=30_000)
    wait_idle(qtbot, window)
    assert screen.result.ranked.request.literal and screen.result.ranked.corrected_query is None
    assert "as typed" in screen.spelling.text()
    shown = screen.results_shown
    screen.controls.query_box.setText("vintage mug")  # a real word: no bar
    qtbot.waitUntil(lambda: screen.results_shown > shown and screen.result.request.query == "vintage mug",
                    timeout=30_000)
    assert screen.spelling.isHidden()


def _ranked(query, ids, **req):
    from merch_app.ranking.types import RankedList, RankRequest

    n = len(ids)
    comps = {c: np.zeros(n) for c in ("lexical", "text", "cf", "popularity", "rules")}
    return RankedList(RankRequest(query=query, **req), list(ids), np.ones(n), comps, comps, list(ids),
                      [""] * n, [0.0] * n, np.ones(n), n, 0.0)


def test_delta_compares_with_a_pinned_baseline_or_the_same_query_only(qtbot):
    from merch_app.ranking.types import Weights
    from merch_app.ui.screens.results_table import COLUMNS, ResultsModel

    model = ResultsModel()
    model.set_ranked(_ranked("mug", ["A", "B", "C"]))
    assert model.changes == ["", "", ""]
    model.set_ranked(_ranked("mugs", ["B", "A", "D"]))  # another keystroke: no comparison
    assert model.changes == ["", "", ""]
    model.set_ranked(_ranked("mugs", ["A", "B", "D"], weights=Weights(lex=1.0)))  # same query, new weights
    assert model.changes == ["▲1", "▼1", "="]
    tip = model.headerData(COLUMNS.index("change"), Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert "same query before the last change of settings" in tip
    model.pin("mugs")
    assert model.changes == ["=", "=", "="]
    model.set_ranked(_ranked("red mug", ["D", "X", "A"]))
    assert model.changes == ["▲2", "new", "▼2"]
    tip = model.headerData(COLUMNS.index("change"), Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert "pinned baseline “mugs”" in tip
    model.unpin()
    assert model.changes == ["", "", ""]


def test_pin_button_and_stale_results(qtbot, query_window):
    window, screen = query_window
    qtbot.keyClicks(screen.controls.query_box, "mug")
    qtbot.waitUntil(lambda: screen.result is not None and screen.result.request.query == "mug", timeout=30_000)
    wait_idle(qtbot, window)
    assert screen.table.styleSheet() == ""
    screen.pin_button.click()
    assert screen.pin_button.text() == "Unpin baseline" and screen.model.pinned[0] == "mug"
    screen.run_query()
    assert "color: #9a9a9a" in screen.table.styleSheet() and screen.status.text() == "searching…"
    qtbot.waitUntil(lambda: screen.table.styleSheet() == "", timeout=30_000)
    assert set(screen.model.changes) == {"="}
    screen.pin_button.click()
    assert screen.model.pinned is None and screen.pin_button.text() == "Pin baseline"

"""Search log screen: tables over a hand-made log, double-click opens Query, a synonym becomes a draft rule."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from merch_app.ranking.rules import load_rules  # noqa: E402
from ranking_fixtures import insert_items  # noqa: E402
from test_search_log import ITEMS, _events, log_rows  # noqa: E402  (the hand-made log of the insight tests)
from ui_support import make_window, wait_idle  # noqa: E402


def _open(qtbot, ws_path):
    window = make_window(qtbot, ws_path)
    window.screens["Query"].encoder_spec = "hashing:64"
    window.screens["Search log"].encoder_spec = "hashing:64"
    wait_idle(qtbot, window)
    screen = window.show_screen("Search log")
    qtbot.waitUntil(lambda: screen.loads >= 1, timeout=30_000)
    return window, screen


def _column(table, column=0):
    return [table.text(r, column) for r in range(table.row_count())]


def test_tables_query_link_and_synonym_rule(qtbot, ws, ws_path):
    insert_items(ws, ITEMS)
    _events(ws, log_rows())
    window, screen = _open(qtbot, ws_path)
    assert screen.pages.currentIndex() == 1
    assert "14 searches of 6 distinct queries" in screen.header.text().replace(",", "")
    top = {screen.top.text(r): [screen.top.text(r, c) for c in range(1, 6)] for r in range(screen.top.row_count())}
    assert len(top) == 6
    assert top["christmas lights"] == ["3", "3", "3", "100.0%", "100.0%"]
    assert top["mug"][:2] == ["3", "2"] and top["mug"][3] == "66.7%"
    assert set(_column(screen.zero)) == {"cup", "zzqx", "lantren"}
    corrected = dict(zip(_column(screen.zero), _column(screen.zero, 2)))
    assert corrected["lantren"] == "lantern" and corrected["zzqx"] == "—"
    assert _column(screen.no_clicks) == ["xmas lights", "cup", "zzqx"]
    assert [(screen.synonyms.text(r, 0), screen.synonyms.text(r, 1), screen.synonyms.text(r, 3))
            for r in range(screen.synonyms.row_count())] == [("xmas", "christmas", "3"), ("cup", "mug", "2")]
    assert screen.top.text(0, 6) == "new"  # one day of searches: all in the last 28 days
    x, y = screen.trend.curves["searches"].getData()  # one week, 14 searches; 5 find nothing (cup, zzqx, lantren)
    assert list(y) == [14] and list(screen.trend.curves["find nothing"].getData()[1]) == [5]

    # sortable: searches ascending puts a once-searched query first
    screen.top.view.sortByColumn(1, Qt.SortOrder.AscendingOrder)
    assert screen.top.text(0) == "lantren"

    # double-click a zero-result row: the Query screen searches it
    screen.tabs.setCurrentIndex(1)
    view = screen.zero.view
    qtbot.waitUntil(lambda: view.isVisible() and view.viewport().height() > 50, timeout=5_000)
    row = _column(screen.zero).index("zzqx")
    idx = screen.zero.proxy.index(row, 0)
    view.scrollTo(idx)
    pos = view.visualRect(idx).center()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    query = window.screens["Query"]
    assert window.stack.currentWidget() is query
    assert query.controls.query_box.text() == "zzqx"
    wait_idle(qtbot, window)

    # add the first suggestion as a synonym rule: saved switched off
    window.show_screen("Search log")
    screen.tabs.setCurrentIndex(3)
    screen.synonyms.view.selectRow(0)
    assert screen.add_button.isEnabled() and "xmas = christmas" in screen.add_button.text()
    screen.add_button.click()
    qtbot.waitUntil(lambda: screen.rule_answers == 1, timeout=10_000)
    assert "saved switched off" in screen.rule_note.text()
    qtbot.waitUntil(lambda: screen.impact is not None, timeout=60_000)  # its offline impact, measured at once
    note = screen.rule_note.text()
    assert "If switched on it fires on" in note and "from the search log" in note and "Rules screen" in note
    assert "xmas lights" in {q["query"] for q in screen.impact.fired}
    rules = load_rules(window.ctx.db)
    assert [(r.kind, r.params["terms"], r.enabled) for r in rules] == [("synonym", ["xmas", "christmas"], False)]
    screen.add_button.click()  # a second click does not add it twice
    qtbot.waitUntil(lambda: screen.rule_answers == 2, timeout=10_000)
    assert "already has these terms" in screen.rule_note.text()
    assert len(load_rules(window.ctx.db)) == 1
    rules_screen = window.show_screen("Rules")
    assert rules_screen.table.rowCount() == 1
    assert rules_screen.table.item(0, 0).checkState() == Qt.CheckState.Unchecked


def test_empty_state_then_refresh_on_import(qtbot, ws, ws_path):
    insert_items(ws, ITEMS)
    window, screen = _open(qtbot, ws_path)
    assert screen.pages.currentIndex() == 0
    assert "No event carries a query" in screen.empty.text()
    assert screen.top.row_count() == 0 and not screen.add_button.isEnabled()
    _events(ws, log_rows())
    loads = screen.loads
    window.ctx.data_changed.emit()  # what an import announces
    qtbot.waitUntil(lambda: screen.loads > loads, timeout=30_000)
    assert screen.pages.currentIndex() == 1 and screen.top.row_count() == 6

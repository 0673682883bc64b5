"""Rules screen (issue 21): status change, conflicts shown on save (refused, then confirmed), activity log,
status filter, and the impact preview as of next week."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QDate, Qt  # noqa: E402

from merch_app.data.workspace import open_workspace  # noqa: E402
from merch_app.ranking.rules import MerchRule, load_rules, save_rule  # noqa: E402
from ranking_fixtures import insert_items  # noqa: E402
from test_rules_lifecycle import ITEMS  # noqa: E402
from test_rules_usage import LOG  # noqa: E402
from ui_support import make_window, wait_idle  # noqa: E402


@pytest.fixture
def window(qtbot, ws_path):
    db = open_workspace(ws_path)
    insert_items(db, ITEMS)
    with db.conn:
        db.insert_rows("events", LOG)
    save_rule(db, MerchRule("pin", "christmas", {"item_id": "L1", "position": 1}), actor="ana")
    db.close()
    w = make_window(qtbot, ws_path)
    w.screens["Rules"].encoder_spec = "hashing:64"
    wait_idle(qtbot, w)
    return w


def _fill_pin(screen, pattern, item, status="live"):
    screen.new_rule()
    screen.kind.setCurrentText("pin")
    screen.pattern.setText(pattern)
    screen.match.setCurrentText("phrase")
    screen.item.setText(item)
    screen.position.setValue(1)
    screen.status.setCurrentText(status)


def test_conflict_shown_on_save_then_saved_when_confirmed(qtbot, window, monkeypatch):
    screen = window.show_screen("Rules")
    assert screen.table.rowCount() == 1 and screen.table.item(0, 2).text() == "live"
    asked = []
    monkeypatch.setattr(screen, "confirm_conflicts", lambda text: asked.append(text) or False)
    _fill_pin(screen, "christmas lights", "T1")
    screen.save_rule()
    qtbot.waitUntil(lambda: bool(asked), timeout=10_000)
    wait_idle(qtbot, window)
    assert "refused" in asked[0] and "pin #1" in asked[0]
    assert screen.conflict_label.isVisible() and "Not saved, conflicts" in screen.conflict_label.text()
    assert "for queries like 'christmas lights'" in screen.conflict_label.text()
    assert len(load_rules(window.ctx.db)) == 1
    monkeypatch.setattr(screen, "confirm_conflicts", lambda text: True)
    screen.save_rule()
    qtbot.waitUntil(lambda: screen.table.rowCount() == 2, timeout=10_000)
    assert "Saved despite conflicts" in screen.conflict_label.text()
    assert "pin #2 wins: newer rule" in screen.conflict_label.text()


def test_status_change_filter_and_activity_log(qtbot, window, monkeypatch):
    screen = window.show_screen("Rules")
    screen.table.selectRow(0)
    assert screen.editing_id == 1 and "Activity of rule 1 (1 change)" in screen.log_title.text()
    screen.draft_button.click()
    qtbot.waitUntil(lambda: load_rules(window.ctx.db)[0].status == "draft", timeout=10_000)
    wait_idle(qtbot, window)
    assert screen.table.item(0, 2).text() == "draft"
    assert screen.table.item(0, 0).checkState() == Qt.CheckState.Unchecked
    assert "Activity of rule 1 (2 changes)" in screen.log_title.text()
    assert screen.log_table.text(0, 3) == "status live → draft"
    screen.status_filter.setCurrentText("live")
    assert screen.table.rowCount() == 0
    screen.status_filter.setCurrentText("draft")
    assert screen.table.rowCount() == 1
    # tick "on" again: live (no other rule, no conflict)
    monkeypatch.setattr(screen, "confirm_conflicts", lambda text: pytest.fail("no conflict expected"))
    screen.table.item(0, 0).setCheckState(Qt.CheckState.Checked)
    qtbot.waitUntil(lambda: load_rules(window.ctx.db)[0].status == "live", timeout=10_000)


def test_preview_a_draft_as_of_next_week(qtbot, window):
    screen = window.show_screen("Rules")
    next_week = date.today() + timedelta(days=7)
    _fill_pin(screen, "christmas", "M1", status="draft")
    screen.start_on.setChecked(True)
    screen.start_date.setDate(QDate(next_week.year, next_week.month, next_week.day))
    screen.preview_impact()
    qtbot.waitUntil(lambda: screen.impacts_shown == 1, timeout=60_000)
    assert screen.impact.touched == [] and screen.touched.row_count() == 3  # fires on 3 log queries, no change
    screen.as_of.setDate(QDate(next_week.year, next_week.month, next_week.day))
    screen.preview_impact()
    qtbot.waitUntil(lambda: screen.impacts_shown == 2, timeout=60_000)
    assert {t["query"] for t in screen.impact.touched} >= {"christmas lights", "christmas tree"}
    assert f"as of {next_week.isoformat()}" in screen.impact_label.text()
    assert screen.slope.moves


def test_usage_tab_counts_each_rule_and_flags_rules_that_never_fire(qtbot, window):
    db = open_workspace(window.ctx.path)
    save_rule(db, MerchRule("pin", "zebra", {"item_id": "L1", "position": 1}, match="phrase"), actor="ana")
    db.close()
    screen = window.show_screen("Rules")
    screen.below.setCurrentWidget(screen.usage)
    screen.usage.count()
    qtbot.waitUntil(lambda: screen.usage.report is not None, timeout=60_000)
    usage = screen.usage
    by_rule = {usage.table.text(r, 0): (usage.table.text(r, 1), usage.table.text(r, 2))
               for r in range(usage.table.row_count())}
    assert by_rule == {load_rules(window.ctx.db)[0].label(): ("4", "3"), load_rules(window.ctx.db)[1].label(): ("0", "0")}
    assert usage.summary.text() == "5 searches counted · 1 of 2 rules never fire."


def test_form_makes_slot_and_redirect_rules(qtbot, window):
    screen = window.show_screen("Rules")
    screen.new_rule()
    screen.kind.setCurrentText("slot")
    assert screen.form.isRowVisible(screen.rows["position"]) and not screen.form.isRowVisible(screen.rows["weight"])
    screen.pattern.setText("christmas")
    screen.attribute.setCurrentText("category")
    screen.value.setText("Lights")
    screen.position.setValue(3)
    rule = screen.draft()
    assert (rule.kind, rule.params) == ("slot", {"attribute": "category", "value": "Lights", "position": 3})
    screen.kind.setCurrentText("redirect")
    assert screen.form.isRowVisible(screen.rows["url"]) and not screen.form.isRowVisible(screen.rows["position"])
    screen.url.setText("https://shop.example/christmas")
    rule = screen.draft()
    assert (rule.kind, rule.params) == ("redirect", {"url": "https://shop.example/christmas"})

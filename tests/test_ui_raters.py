"""Judge tab as a team: the Rater box (remembered per workspace), the blind queue, the agreement line."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from merch_app.evaluation.raters import Agreement, agreement, rater_grades  # noqa: E402
from merch_app.evaluation.suites import load_suite  # noqa: E402
from merch_app.services.rater_jobs import RATER_SETTING  # noqa: E402
from merch_app.data.workspace import get_setting  # noqa: E402
from merch_app.ui.screens.evaluate_judge import agreement_text  # noqa: E402
from ui_support import import_shop, make_window, wait_idle  # noqa: E402


@pytest.fixture
def window(qtbot, tmp_path, ws_path):
    import_shop(tmp_path / "shop", ws_path)
    w = make_window(qtbot, ws_path)
    w.screens["Evaluate"].encoder_spec = "hashing:64"
    wait_idle(qtbot, w)
    return w


def _set_rater(qtbot, window, judge, name):
    judge.rater_edit.setText(name)
    judge.rater_edit.editingFinished.emit()
    wait_idle(qtbot, window)


def test_rater_box_and_blind_queue(qtbot, window):
    screen = window.show_screen("Evaluate")
    screen.new_suite("team")
    qtbot.waitUntil(lambda: screen.suite_name() == "team", timeout=10_000)
    judge = screen.judge
    for query in ("mug", "cushion"):
        shown = judge.results_shown
        judge.new_query.setText(query)
        judge.add_button.click()
        qtbot.waitUntil(lambda: judge.results_shown > shown and judge.query == query, timeout=60_000)
    screen.k_spin.setValue(3)

    # ann rates the first mug result in the table: a rater grade, merged into the suite
    judge.queries.setCurrentRow(0)
    qtbot.waitUntil(lambda: judge.query == "mug", timeout=10_000)
    _set_rater(qtbot, window, judge, "  ann ")
    assert get_setting(window.ctx.db, RATER_SETTING) == "ann"
    qtbot.waitUntil(lambda: judge.results_shown > 0 and bool(judge.item_ids), timeout=60_000)
    first = judge.item_ids[0]
    judge.table.setFocus()
    judge.table.selectRow(0)
    saved = judge.saved
    qtbot.keyClick(judge.table, Qt.Key.Key_3)
    qtbot.waitUntil(lambda: judge.saved > saved, timeout=10_000)
    assert rater_grades(window.ctx.db, "team", "ann") == {"mug": {first: 3}}
    assert load_suite(window.ctx.db, "team").grades("mug") == {first: 3}

    # ann's blind queue: the top 3 of both queries but the one she graded, one at a time, title only
    judge.queue_button.click()
    qtbot.waitUntil(lambda: judge.pages.currentWidget() is judge.card, timeout=60_000)
    pairs = list(judge.queue)
    assert len(pairs) == 5 and ("mug", first) not in {(p["query"], p["item_id"]) for p in pairs}
    card = judge.card
    assert card.title.text() == pairs[0]["title"] and pairs[0]["query"] in card.query.text()
    shown_text = " ".join(w.text() for w in (card.progress, card.query, card.title))
    assert pairs[0]["item_id"] not in shown_text and "score" not in shown_text and "rank" not in shown_text
    assert card.progress.text().startswith("1 of 5")
    saved = judge.saved
    qtbot.keyClick(card, Qt.Key.Key_2)   # grades pair 0
    qtbot.keyClick(card, Qt.Key.Key_S)   # skips pair 1
    qtbot.keyClick(card, Qt.Key.Key_0)   # grades pair 2
    qtbot.waitUntil(lambda: judge.saved >= saved + 2, timeout=10_000)
    assert card.progress.text().startswith("4 of 5")
    ann = rater_grades(window.ctx.db, "team", "ann")
    assert ann[pairs[0]["query"]][pairs[0]["item_id"]] == 2 and ann[pairs[2]["query"]][pairs[2]["item_id"]] == 0
    assert pairs[1]["item_id"] not in ann.get(pairs[1]["query"], {})
    qtbot.keyClick(card, Qt.Key.Key_Escape)
    assert judge.pages.currentWidget() is judge.table

    # bob disagrees with ann on her first grade: the agreement line on the Evaluate screen counts it
    _set_rater(qtbot, window, judge, "bob")
    judge.queries.setCurrentRow(0)
    qtbot.waitUntil(lambda: judge.query == "mug" and bool(judge.item_ids), timeout=60_000)
    wait_idle(qtbot, window)
    assert judge.grades == {}  # bob sees his own grades, not ann's
    row = judge.item_ids.index(first)
    judge.table.setFocus()
    judge.table.selectRow(row)
    saved = judge.saved
    qtbot.keyClick(judge.table, Qt.Key.Key_1)
    qtbot.waitUntil(lambda: judge.saved > saved, timeout=10_000)
    a = agreement(window.ctx.db, "team")
    assert a.raters == ["ann", "bob"] and len(a.disagreements) == 1 and a.kappa_n == 1
    assert screen.suite_info.text().startswith("κ 0.00 (Cohen, n 1), 1 disagreement · 2 queries")
    assert load_suite(window.ctx.db, "team").grades("mug")[first] == 2  # mean(3, 1)


def test_agreement_text_names_the_kappa():
    fleiss = Agreement("t", ["ann", "bob", "cy"], 5, 5, 0.4, [], 0.52, 4, 3, [{}, {}, {}])
    assert agreement_text(fleiss) == "κ 0.52 (Fleiss, 3 raters, n 4), 3 disagreements"
    assert agreement_text(Agreement("t", ["ann"], 1, 0, None)) == ""  # one rater: no line

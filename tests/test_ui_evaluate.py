"""Evaluate and Rules screens: rate results inline, run a suite, compare, snapshot, report, rule impact."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from merch_app.evaluation.judgment_merge import DEFAULT_MERGE, MERGE_POLICIES  # noqa: E402
from merch_app.evaluation.suites import load_suite  # noqa: E402
from merch_app.ranking.rules import load_rules  # noqa: E402
from merch_app.ui.screens.evaluate_screen import MERGE_CHOICES  # noqa: E402
from ui_support import import_shop, make_window, wait_idle  # noqa: E402


@pytest.fixture
def window(qtbot, tmp_path, ws_path):
    import_shop(tmp_path / "shop", ws_path)
    w = make_window(qtbot, ws_path)
    for title in ("Evaluate", "Rules", "Query"):
        w.screens[title].encoder_spec = "hashing:64"
    wait_idle(qtbot, w)
    return w


def _judge(qtbot, screen, query):
    judge = screen.judge
    shown = judge.results_shown
    judge.new_query.setText(query)
    judge.add_button.click()
    qtbot.waitUntil(lambda: judge.results_shown > shown and judge.query == query, timeout=60_000)
    return judge


def test_rate_inline_and_run_suite(qtbot, window, tmp_path):
    screen = window.show_screen("Evaluate")
    screen.new_suite("mine")
    qtbot.waitUntil(lambda: screen.suite_name() == "mine", timeout=10_000)
    judge = _judge(qtbot, screen, "mug")
    assert judge.table.rowCount() >= 10
    first, second = judge.item_ids[0], judge.item_ids[1]
    judge.table.setFocus()
    judge.table.selectRow(0)
    saved = judge.saved
    qtbot.keyClick(judge.table, Qt.Key.Key_3)  # rates row 0 and moves to row 1
    qtbot.keyClick(judge.table, Qt.Key.Key_0)
    qtbot.waitUntil(lambda: judge.saved >= saved + 2, timeout=10_000)
    assert judge.table.item(0, 0).text() == "3 perfect" and judge.table.currentRow() == 2
    suite = load_suite(window.ctx.db, "mine")
    assert suite.judgments == {"mug": {first: 3, second: 0}}
    assert "1 queries · 2 judgments" in screen.suite_info.text()

    # a second query, then run the suite
    judge = _judge(qtbot, screen, "red cushion")
    judge.table.selectRow(0)
    qtbot.keyClick(judge.table, Qt.Key.Key_2)
    qtbot.waitUntil(lambda: len(load_suite(window.ctx.db, "mine").judgments["red cushion"]) == 1, timeout=10_000)
    screen.label_edit.setText("default")
    screen.run_suite()
    qtbot.waitUntil(lambda: screen.run is not None, timeout=60_000)
    run = screen.run
    assert [q.query for q in run.queries] == ["mug", "red cushion"]
    assert run.by_query()["mug"].metrics["ndcg@10"] == pytest.approx(1.0)  # the 3 is ranked first
    assert screen.results.row_count() == 2
    assert "ndcg@10" in screen.mean_label.text()
    assert len(screen.ndcg_chart.labels) == 2

    # a click on a query opens it in the Query screen
    screen.open_query_row(0)
    query = window.screens["Query"]
    assert window.stack.currentWidget() is query
    assert query.controls.query_box.text() == screen.results.text(0)
    window.show_screen("Evaluate")

    # another system, then compare with significance and overlap
    screen.label_edit.setText("popular")
    for key, value in (("lex", 0.0), ("text", 0.0), ("pop", 1.0)):
        screen.weight_boxes[key].setValue(value)
    screen.run_suite()
    qtbot.waitUntil(lambda: screen.run.label == "popular", timeout=60_000)
    wait_idle(qtbot, window)
    cmp = screen.compare
    cmp.baseline.setCurrentText("default")
    cmp.compare()
    assert cmp.comparison is not None and cmp.comparison.labels == ["default", "popular"]
    assert cmp.summary.row_count() == 1 and cmp.queries.row_count() == 2
    assert cmp.summary.text(0) == "popular"
    record = cmp.summary.model.item(0, cmp.summary.columns.index("W / L / T")).text()
    p0 = cmp.comparison.pairs[0]
    assert record == f"{p0['wins']} / {p0['losses']} / {p0['ties']}"
    # the system names keep their width (the last column stretches, not the first)
    view = cmp.summary.view
    assert view.columnWidth(0) >= view.fontMetrics().horizontalAdvance("popular")
    assert 0 <= cmp.comparison.pairs[0]["test"]["p_value"] <= 1
    assert cmp.slope.moves  # slope chart of the selected query

    # both runs were kept: the History tab shows them, the second flagged and annotated with what changed
    assert "1 query fell</b> by more than" in screen.mean_label.text()  # “red cushion” only
    hist = screen.history
    assert [p.label for p in hist.points] == ["default", "popular"] and hist.runs.row_count() == 2
    assert hist.points[0].changes == [] and hist.points[1].changes[0].startswith("weights lex 0 text 0")
    assert hist.points[1].value < hist.points[0].value and hist.chart.labels[0].isVisible()
    d = hist.diff_selected()
    assert d["regressions"] and hist.diff_table.row_count() == 2 and "fell by more than" in hist.summary.text()

    # snapshot of the baseline; the popular run regresses against it
    cmp.save_snapshot()
    qtbot.waitUntil(lambda: cmp.snapshots.count() == 3, timeout=10_000)
    cmp.baseline.setCurrentText("popular")
    cmp.diff_with_snapshot()
    assert cmp.diff["regressions"] and "regressions" in cmp.status.text()

    files = screen.export_report(tmp_path / "eval.html")
    names = sorted(p.name for p in files)
    assert names == ["eval.csv", "eval.html", "eval_comparison.csv", "eval_comparison.html"]
    html = (tmp_path / "eval.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 2

    # the suite exported for Quepid, then imported back from that file under another name
    screen.export_suite(tmp_path / "mine_quepid.csv", "quepid")
    wait_idle(qtbot, window)
    assert (tmp_path / "mine_quepid.csv").read_text(encoding="utf-8").splitlines()[0] == "query,docid,rating"
    screen.import_suite(tmp_path / "mine_quepid.csv", "back")
    qtbot.waitUntil(lambda: screen.suite_name() == "back", timeout=10_000)
    assert load_suite(window.ctx.db, "back").judgments == load_suite(window.ctx.db, "mine").judgments


def test_import_merges_repeated_judgments_and_says_how_many(qtbot, window, tmp_path):
    """The Import… path: repeated pairs merged by the chosen policy, the count in the message."""
    f = tmp_path / "raters.csv"
    f.write_text("query,item_id,grade\nmug,SKU001,1\nmug ,SKU001,2\nMug,SKU002,3\nmug,SKU002,3\n",
                 encoding="utf-8")
    assert list(MERGE_CHOICES.values())[0] == DEFAULT_MERGE  # the dialog's first choice is the default
    assert sorted(MERGE_CHOICES.values()) == sorted(MERGE_POLICIES)
    screen = window.show_screen("Evaluate")
    messages = []
    window.message_shown.connect(lambda text, level: messages.append((level, text)))
    screen.import_suite(f, "raters")
    qtbot.waitUntil(lambda: bool(messages), timeout=10_000)
    assert messages[-1] == ("info", "Suite “raters”: 1 queries, 2 judgments; 2 (query, item) pairs were judged more "
                                    "than once and merged to their mean grade (rounded half up) (4 rows kept).")
    assert load_suite(window.ctx.db, "raters").judgments == {"mug": {"SKU001": 2, "SKU002": 3}}
    screen.import_suite(f, "strict", merge="error")
    qtbot.waitUntil(lambda: len(messages) == 2, timeout=10_000)
    assert messages[-1][0] == "error" and "line 3: grade 2 for ('mug', 'SKU001') contradicts grade 1 at line 2" \
        in messages[-1][1]


def test_rule_impact_preview_and_save(qtbot, window):
    screen = window.show_screen("Rules")
    screen.kind.setCurrentText("pin")
    screen.pattern.setText("mug")
    screen.item.setText("SKU001")
    screen.position.setValue(1)
    screen.preview_impact()
    qtbot.waitUntil(lambda: screen.impacts_shown == 1, timeout=60_000)
    imp = screen.impact
    assert imp.touched and imp.touched[0]["query"] == "mug" and imp.touched[0]["after"][0] == "SKU001"
    assert "queries change" in screen.impact_label.text()
    assert screen.slope.moves
    assert load_rules(window.ctx.db) == []  # nothing saved by the preview
    screen.save_rule()
    qtbot.waitUntil(lambda: screen.table.rowCount() == 1, timeout=10_000)
    rules = load_rules(window.ctx.db)
    assert rules[0].params == {"item_id": "SKU001", "position": 1} and rules[0].enabled
    screen.table.item(0, 0).setCheckState(Qt.CheckState.Unchecked)
    qtbot.waitUntil(lambda: not load_rules(window.ctx.db)[0].enabled, timeout=10_000)
    screen.kind.setCurrentText("boost")
    screen.value.setText("")
    screen.preview_impact()
    assert "needs a value" in screen.impact_label.text()


def test_a_suite_graded_by_clicks_over_expected_clicks(qtbot, window):
    """Impressions with positions: the "From clicks" button stores a COEC suite and selects it.

    "mug": A at 1 and B at 3 get two clicks each in eight searches; elsewhere position 1 is clicked
    22 times in 28 and position 3 twice, so B's clicks are far above what its position earns, A's below."""
    from merch_app.data.workspace import open_workspace

    db = open_workspace(window.ctx.path)
    rows = []
    for n in range(8):  # "mug": A always at 1 and clicked half the time, B at 3 and clicked half the time
        s, ts = f"cs{n}", f"2026-02-01T10:{n:02d}:00Z"
        rows += [{"user_id": s, "session_id": s, "event_type": "search", "query": "mug", "ts": ts},
                 {"user_id": s, "session_id": s, "event_type": "impression", "item_id": "A", "position": 1,
                  "query": "mug", "ts": ts},
                 {"user_id": s, "session_id": s, "event_type": "impression", "item_id": "B", "position": 3,
                  "query": "mug", "ts": ts}]
        if n % 2:
            rows.append({"user_id": s, "session_id": s, "event_type": "click", "item_id": "A" if n % 4 == 1 else "B",
                         "ts": ts})
    for n in range(20):  # elsewhere position 1 is nearly always clicked and position 3 never
        s, ts = f"ls{n}", f"2026-02-02T10:{n:02d}:00Z"
        rows += [{"user_id": s, "session_id": s, "event_type": "search", "query": "lamp", "ts": ts},
                 {"user_id": s, "session_id": s, "event_type": "impression", "item_id": "C", "position": 1,
                  "query": "lamp", "ts": ts},
                 {"user_id": s, "session_id": s, "event_type": "impression", "item_id": "D", "position": 3,
                  "query": "lamp", "ts": ts},
                 {"user_id": s, "session_id": s, "event_type": "click", "item_id": "C", "ts": ts}]
    with db.conn:
        db.insert_rows("events", rows)
    db.close()
    screen = window.show_screen("Evaluate")
    messages = []
    window.message_shown.connect(lambda text, level: messages.append((level, text)))
    screen.buttons["clicks"].click()
    qtbot.waitUntil(lambda: screen.suite_name() == "clicks (COEC)", timeout=30_000)
    grades = load_suite(window.ctx.db, "clicks (COEC)").judgments["mug"]
    assert grades["B"] > grades["A"]  # the same clicks at a lower position are worth more
    assert messages and "graded by clicks over the clicks expected" in messages[-1][1]

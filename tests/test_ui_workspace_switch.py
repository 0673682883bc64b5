"""Switching workspace reloads every screen; a model change refreshes the screens that use the model."""
from __future__ import annotations

import re

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QAbstractItemView, QComboBox, QLabel, QLineEdit, QListWidget, QPlainTextEdit, QTextEdit,
)

from merch_app.data.importer import import_file  # noqa: E402
from merch_app.evaluation.suite_data import Suite  # noqa: E402
from merch_app.evaluation.suites import save_suite  # noqa: E402
from merch_app.data.workspace import open_workspace  # noqa: E402
from merch_app.model import registry  # noqa: E402
from merch_app.model.encoder import load_encoder  # noqa: E402
from merch_app.model.hybrid import HybridConfig, HybridModel  # noqa: E402
from merch_app.model.interactions import load_interactions  # noqa: E402
from merch_app.model.item_vectors import item_text_vectors  # noqa: E402
from ui_support import make_window, wait_idle, write_shop  # noqa: E402

HASHING = "hashing:64"


def shop_workspace(folder, path, prefix: str, users: str):
    """A workspace whose item ids start with ``prefix`` and user ids with ``users``, with a suite named after it."""
    cat, ev = write_shop(folder, n_items=30, n_users=12, n_events=500)
    for f in (cat, ev):
        text = f.read_text(encoding="utf-8").replace("SKU", prefix)
        f.write_text(re.sub(r"^U(\d\d),", users + r"\1,", text, flags=re.M), encoding="utf-8")
    import_file(path, cat)
    import_file(path, ev)
    db = open_workspace(path)
    s = Suite(f"suite-{prefix}", source="gui")
    s.set_grade("mug", f"{prefix}001", 3)
    save_suite(db, s)
    db.close()
    return path


def widget_texts(widget):
    """``(widget, text)`` of every text a screen shows: labels, line edits, combo items, list and table cells."""
    for w in [widget, *widget.findChildren(object)]:
        if isinstance(w, (QLabel, QLineEdit)):
            yield w, w.text()
        elif isinstance(w, (QPlainTextEdit, QTextEdit)):
            yield w, w.toPlainText()
        elif isinstance(w, QComboBox):
            yield w, "\n".join(w.itemText(i) for i in range(w.count()))
        elif isinstance(w, QListWidget):
            yield w, "\n".join(w.item(i).text() for i in range(w.count()))
        elif isinstance(w, QAbstractItemView) and w.model() is not None:
            m = w.model()
            cols = m.columnCount()
            cells = [str(m.index(r, c).data() or "") for r in range(min(m.rowCount(), 500)) for c in range(cols)]
            cells += [str(m.headerData(c, Qt.Orientation.Horizontal) or "") for c in range(cols)]
            yield w, "\n".join(cells)


def screen_texts(widget) -> str:
    return "\n".join(text for _w, text in widget_texts(widget))


def stale_widgets(widget, pattern: str) -> list[str]:
    """The widgets of ``widget`` whose text matches ``pattern`` (class name, object name, parent, match)."""
    out = []
    for w, text in widget_texts(widget):
        found = re.findall(pattern, text)
        if found:
            parent = w.parent()
            out.append(f"{type(w).__name__}({w.objectName()}) in {type(parent).__name__}: {sorted(set(found))[:3]}")
    return out


@pytest.fixture
def two_workspaces(tmp_path):
    a = shop_workspace(tmp_path / "shop_a", tmp_path / "alpha.merch.sqlite", "AAA", "ua")
    b = shop_workspace(tmp_path / "shop_b", tmp_path / "beta.merch.sqlite", "BBB", "ub")
    return a, b


def _visit_all(qtbot, window):
    for title in window.screens:
        window.show_screen(title)
        wait_idle(qtbot, window)


def test_switching_workspace_reloads_every_screen(qtbot, two_workspaces):
    a, b = two_workspaces
    window = make_window(qtbot, a)
    for s in window.screens.values():
        if hasattr(s, "encoder_spec"):
            s.encoder_spec = HASHING
    messages = []
    window.message_shown.connect(lambda text, level: messages.append((level, text)))
    _visit_all(qtbot, window)
    # put A's data on the screens that keep a selection
    query = window.show_screen("Query")
    query.controls.query_box.setText("mug")
    qtbot.waitUntil(lambda: query.result is not None and any(str(i).startswith("AAA") for i in query.result.ranked.item_ids),
                    timeout=60_000)
    cat = window.show_screen("Catalogue")
    cat.open_item("AAA001")
    users = window.show_screen("Users")
    qtbot.waitUntil(lambda: users.user_list.count() > 0, timeout=30_000)
    users.open_user("ua01")
    cat = window.show_screen("Catalogue")
    cat.run_doctor()
    qtbot.waitUntil(lambda: cat.doctor.report is not None, timeout=60_000)
    evaluate = window.show_screen("Evaluate")
    evaluate.suite_combo.setCurrentIndex(evaluate.suite_combo.findData("suite-AAA"))
    evaluate.label_edit.setText("first run")  # a system label typed by the user (kept)
    evaluate.run_suite()
    qtbot.waitUntil(lambda: evaluate.run is not None, timeout=60_000)
    wait_idle(qtbot, window)
    before = {t: screen_texts(s) for t, s in window.screens.items()}
    for title in ("Catalogue", "Users", "Evaluate", "Query"):
        assert "AAA" in before[title] or "ua0" in before[title], title

    assert window.open_workspace(b)
    _visit_all(qtbot, window)
    query = window.show_screen("Query")
    qtbot.waitUntil(lambda: query.result is not None, timeout=60_000)
    wait_idle(qtbot, window)
    assert all(str(i).startswith("BBB") for i in query.result.ranked.item_ids)
    assert "Run a suite to see" in evaluate.mean_label.text() and evaluate.results.row_count() == 0
    assert cat.doctor.report is None and cat.item_id is None
    after = {t: screen_texts(s) for t, s in window.screens.items()}
    stale = {t: stale_widgets(s, r"AAA\d+|ua\d\d|alpha") for t, s in window.screens.items()}
    stale = {t: v for t, v in stale.items() if v}
    assert not stale, "\n".join(f"{t}: {v}" for t, v in stale.items())
    assert "BBB" in after["Users"] or "ub" in after["Users"]
    assert "suite-BBB" in after["Evaluate"]
    assert [m for m in messages if m[0] == "error"] == []


def register_model(path, epochs: int = 2):
    """Fit a small hybrid model on ``path`` (hashing text vectors) and register it as the active version,
    through a connection of its own (as another window or the CLI would)."""
    db = open_workspace(path)
    try:
        encoder = load_encoder(HASHING)
        ids, vectors = item_text_vectors(db, encoder)
        model = HybridModel(HybridConfig(dim=8, epochs=epochs, refit_epochs=1, batch_size=1024)).fit(
            load_interactions(db, ids), vectors)
        return registry.save_version(db, model, name="fresh model", encoder_id=encoder.encoder_id,
                                     activate_mode="always")
    finally:
        db.close()


def test_a_model_change_refreshes_segments_and_users(qtbot, two_workspaces):
    _a, b = two_workspaces
    window = make_window(qtbot, b)
    for s in window.screens.values():
        if hasattr(s, "encoder_spec"):
            s.encoder_spec = HASHING
    cat = window.show_screen("Catalogue")
    qtbot.waitUntil(lambda: "need a trained CF model" in cat.seg_note.text(), timeout=60_000)
    users = window.show_screen("Users")
    qtbot.waitUntil(lambda: users.recs is not None, timeout=60_000)
    wait_idle(qtbot, window)
    assert users.recs_panel.nearest.item(0).text().startswith("— needs a trained CF model")

    version = register_model(b)
    window.ctx.models_changed.emit()  # what the Train screen says after it registered a version
    qtbot.waitUntil(lambda: users.recs_panel.nearest.count() > 1, timeout=60_000)
    assert "fresh model" in users.recs_panel.status.text()
    window.show_screen("Catalogue")
    qtbot.waitUntil(lambda: cat.segments is not None, timeout=60_000)
    assert cat.seg_note.text().startswith("Red: the segment prefers")
    assert window.model_label.text() == f"Active model: {version.name}"


def test_the_window_notices_another_process_within_a_poll(qtbot, two_workspaces, tmp_path):
    _a, b = two_workspaces
    window = make_window(qtbot, b)
    for s in window.screens.values():
        if hasattr(s, "encoder_spec"):
            s.encoder_spec = HASHING
    train = window.show_screen("Train")
    wait_idle(qtbot, window)
    messages = []
    window.message_shown.connect(lambda text, level: messages.append((level, text)))
    window.ctx.poll_changes()  # the first tick after this window's own start-up jobs is skipped
    assert window.ctx.poll_changes() == []  # nothing changed meanwhile
    assert window.model_label.text() == "Active model: none (text-only ranking)"

    version = register_model(b)  # another connection, as a second window or `merch-app train` would
    assert window.ctx.poll_changes() == ["models"]
    assert window.model_label.text() == f"Active model: {version.name}"
    assert messages[-1] == ("info", "Another window or program changed this workspace: a model version was "
                                    "trained, activated, renamed or deleted. The screens show it now.")
    wait_idle(qtbot, window)
    assert version.name in screen_texts(train)  # the versions list shows it
    window.ctx.poll_changes()  # the tick after the refresh jobs
    assert window.ctx.poll_changes() == []  # announced once

    cat, _ev = write_shop(tmp_path / "more", n_items=5, n_users=2, n_events=20)
    import_file(b, cat)
    assert window.ctx.poll_changes() == ["data"]
    assert messages[-1] == ("info", "Another window or program changed this workspace: data was imported or "
                                    "removed. The screens show it now.")


def test_rule_and_suite_edits_of_another_process_refresh_rules_and_evaluate(qtbot, two_workspaces):
    from merch_app.ranking.rules import MerchRule, save_rule

    _a, b = two_workspaces
    window = make_window(qtbot, b)
    for s in window.screens.values():
        if hasattr(s, "encoder_spec"):
            s.encoder_spec = HASHING
    rules = window.show_screen("Rules")
    wait_idle(qtbot, window)
    window.ctx.poll_changes()
    assert window.ctx.poll_changes() == [] and rules.table.rowCount() == 0

    db = open_workspace(b)  # another connection: a second window or `merch-app rules add`
    save_rule(db, MerchRule("pin", "mug", {"item_id": "SKU001", "position": 1}), actor="cli")
    db.close()
    assert window.ctx.poll_changes() == ["rules"]
    assert rules.table.rowCount() == 1

    evaluate = window.show_screen("Evaluate")
    wait_idle(qtbot, window)
    db = open_workspace(b)
    save_suite(db, Suite("from the cli", ["mug"], {"mug": {"SKU001": 3}}))
    db.close()
    assert (window.ctx.poll_changes() or window.ctx.poll_changes()) == ["suites"]  # the first tick may settle
    assert evaluate.suite_combo.findData("from the cli") >= 0  # the list was read again

    # this window's own edit (a worker's commit) is not announced as another program's
    evaluate.new_suite("mine")
    qtbot.waitUntil(lambda: evaluate.suite_name() == "mine", timeout=10_000)
    wait_idle(qtbot, window)
    window.ctx.poll_changes()
    assert window.ctx.poll_changes() == []

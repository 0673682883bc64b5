"""Data screen: import through the screen's slot, summary equals the core's, cancel leaves no trace."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("pytestqt")

from merch_app.data.importer import import_file  # noqa: E402
from merch_app.data.summary import data_summary  # noqa: E402
from merch_app.ui.screens.mapping_dialog import ImportRequest, MappingDialog  # noqa: E402
from ui_support import make_window, wait_idle, write_shop  # noqa: E402


def test_import_fills_summary_and_charts(qtbot, tmp_path, ws_path):
    cat, ev = write_shop(tmp_path / "shop")
    window = make_window(qtbot, ws_path)
    screen = window.screens["Data"]
    wait_idle(qtbot, window)
    screen.start_import([ImportRequest(cat), ImportRequest(ev)])
    qtbot.waitUntil(lambda: screen.summary is not None and screen.summary.events > 0, timeout=60_000)
    wait_idle(qtbot, window)

    core = data_summary(ws_path)
    assert core.items == 60 and core.events == 900
    assert screen.cards["items"].value.text() == f"{core.items:,}"
    assert screen.cards["users"].value.text() == f"{core.users:,}"
    assert screen.cards["events"].value.text() == f"{core.events:,}"
    assert screen.cards["anonymous_events"].value.text() == f"{core.anonymous_events:,}"
    x, y = screen.per_day_curve.getData()
    assert len(x) == len(core.events_per_day[0]) and y.sum() == sum(core.events_per_day[1])
    assert screen.long_tail_curve.getData()[0].size > 0
    assert list(screen.by_type.bars.opts["height"]) == list(core.events_by_type.values())
    assert screen.top_table.rowCount() == len(core.top_items)
    assert screen.imports_table.rowCount() == 2
    assert screen.rejected_table.rowCount() == 3
    assert "not a date" in screen.rejected_table.item(0, 3).text() or screen.rejected_table.item(0, 2).text()
    assert [r.status for r in screen.last_results] == ["ok", "ok"]

    out = tmp_path / "rejected.csv"
    screen.export_rejected_to(out)
    wait_idle(qtbot, window)
    assert len(out.read_text(encoding="utf-8").splitlines()) == 4


def test_mapping_dialog_request_reflects_choices(qtbot, tmp_path, ws):
    from merch_app.data.importer import preview_file
    from merch_app.data.header_mapping import FIELDS

    cat, _ = write_shop(tmp_path / "shop")
    preview = preview_file(ws, cat)
    dialog = MappingDialog(preview, FIELDS)
    qtbot.addWidget(dialog)
    assert dialog.kind_combo.currentData() == "catalogue"
    assert dialog.mapping() == preview.mapping
    dialog.columns.cellWidget(3, 1).setCurrentText("(ignore)")  # price column
    dialog.dup_group.button(1).setChecked(True)
    req = dialog.request()
    assert "price" not in req.mapping and req.mapping["sku"] == "item_id"
    assert req.on_duplicate == "replace" and req.kind == "catalogue"
    assert dialog.rows.rowCount() == len(preview.rows)


@pytest.fixture
def held_import(monkeypatch):
    """Make imports wait at their progress reports until they are cancelled (no timing race).

    Returns
    -------
    SimpleNamespace
        ``holding``: an event set once an import waits at a progress report
        (wait for it before cancelling, so the cancel reaches a running
        import); ``ends``: how each wait ended, ``"cancelled"``, or
        ``"deadline"`` when nobody cancelled within 20 s (a guard against
        hanging, not a measure).
    """
    import threading
    from types import SimpleNamespace

    from merch_app.data import importer

    real = importer.import_file
    state = SimpleNamespace(holding=threading.Event(), ends=[])

    def held(db, path, *, progress=None, cancel=None, **kw):
        deadline = time.perf_counter() + 20

        def prog(p):
            state.holding.set()
            while not cancel.cancelled and time.perf_counter() < deadline:
                time.sleep(0.01)
            state.ends.append("cancelled" if cancel.cancelled else "deadline")
            progress(p)

        return real(db, path, progress=prog, cancel=cancel, **kw)

    monkeypatch.setattr(importer, "import_file", held)
    return state


def test_cancel_import_leaves_workspace_unchanged(qtbot, tmp_path, ws_path, held_import):
    cat, ev = write_shop(tmp_path / "shop", n_events=30_000, bad_rows=0)
    import_file(ws_path, cat)
    before = data_summary(ws_path)
    window = make_window(qtbot, ws_path)
    screen = window.screens["Data"]
    wait_idle(qtbot, window)

    screen.start_import(ImportRequest(ev))
    qtbot.waitUntil(lambda: screen.import_runner.current is not None
                    and screen.import_runner.current.state == "running", timeout=20_000)
    qtbot.waitUntil(held_import.holding.is_set, timeout=20_000)  # the import waits at a progress report
    screen.cancel_button.click()
    qtbot.waitUntil(lambda: not screen.import_runner.is_busy(), timeout=30_000)
    wait_idle(qtbot, window)
    after = data_summary(ws_path)
    assert (after.items, after.events) == (before.items, before.events)
    assert held_import.ends and set(held_import.ends) == {"cancelled"}  # the button's cancel ended the hold
    assert window.banner.isVisible() and "cancelled" in window.banner.label.text()
    assert screen.cancel_button.isHidden()


def test_close_waits_for_running_import(qtbot, tmp_path, ws_path, held_import):
    _, ev = write_shop(tmp_path / "shop", n_events=30_000, bad_rows=0)
    window = make_window(qtbot, ws_path)
    screen = window.screens["Data"]
    screen.start_import(ImportRequest(ev))
    qtbot.waitUntil(lambda: screen.import_runner.current is not None
                    and screen.import_runner.current.state == "running", timeout=20_000)
    qtbot.waitUntil(held_import.holding.is_set, timeout=20_000)  # the import waits at a progress report
    window.close()
    assert not window.busy()
    assert all(not r._thread.isRunning() for r in window.runners)
    assert held_import.ends and set(held_import.ends) == {"cancelled"}  # close cancelled it; no hold ran out
    assert data_summary(ws_path).events == 0


def test_dropped_files_go_through_preview_and_mapping_dialog(qtbot, tmp_path, ws_path, monkeypatch):
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    cat, ev = write_shop(tmp_path / "shop")
    shown = []

    def fake_exec(dialog):  # the modal dialog, answered as a user would: OK with the proposed mapping
        shown.append((dialog.preview.kind, dialog.mapping()))
        return MappingDialog.DialogCode.Accepted

    monkeypatch.setattr(MappingDialog, "exec", fake_exec)
    window = make_window(qtbot, ws_path)
    screen = window.screens["Data"]
    wait_idle(qtbot, window)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(cat)), QUrl.fromLocalFile(str(ev))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    screen.dropEvent(event)
    qtbot.waitUntil(lambda: screen.summary is not None and screen.summary.events > 0, timeout=60_000)
    wait_idle(qtbot, window)
    assert [k for k, _ in shown] == ["catalogue", "events"]
    assert shown[0][1]["sku"] == "item_id"
    assert (screen.summary.items, screen.summary.events) == (60, 900)


def test_unreadable_file_is_reported_not_raised(qtbot, tmp_path, ws_path):
    bad = tmp_path / "empty.csv"
    bad.write_bytes(b"")
    window = make_window(qtbot, ws_path)
    screen = window.screens["Data"]
    wait_idle(qtbot, window)
    screen.open_files([bad])
    wait_idle(qtbot, window)
    assert window.banner.level == "error" and "empty.csv" in window.banner.label.text()
    screen.start_import(ImportRequest(bad))
    wait_idle(qtbot, window)
    assert [r.status for r in screen.last_results] == ["failed"]
    assert window.banner.level == "error"

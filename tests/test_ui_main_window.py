"""Main window: screens, title, recent workspaces, clear errors instead of crashes."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from ui_support import make_window, wait_idle  # noqa: E402


def test_screens_title_and_status(qtbot, ws_path):
    window = make_window(qtbot, ws_path)
    wait_idle(qtbot, window)
    titles = [window.sidebar.item(i).text() for i in range(window.sidebar.count())]
    assert titles[:3] == ["Data", "Train", "Query"]
    assert window.windowTitle().startswith("ws")
    assert "ws" in window.ws_label.text()
    assert window.model_label.text().startswith("Active model")
    window.show_screen("Query")
    assert window.stack.currentWidget() is window.screens["Query"]


def test_bad_workspace_shows_message_and_keeps_current(qtbot, ws_path, tmp_path):
    window = make_window(qtbot, ws_path)
    wait_idle(qtbot, window)
    bad = tmp_path / "not_a_db.merch.sqlite"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    assert window.open_workspace(bad) is False
    assert window.banner.level == "error" and "Cannot open workspace" in window.banner.label.text()
    assert window.ctx.path == ws_path.resolve()
    folder = tmp_path / "folder.merch.sqlite"
    folder.mkdir()
    assert window.open_workspace(folder) is False
    assert window.ctx.path == ws_path.resolve()


def test_recent_workspaces_are_remembered(qtbot, tmp_path):
    a, b = tmp_path / "a.merch.sqlite", tmp_path / "b.merch.sqlite"
    window = make_window(qtbot, a)
    wait_idle(qtbot, window)
    assert window.open_workspace(b)
    wait_idle(qtbot, window)
    assert window.recent_workspaces()[:2] == [str(b.resolve()), str(a.resolve())]
    actions = [act.text() for act in window.recent_menu.actions()]
    assert actions[:2] == [str(b.resolve()), str(a.resolve())]
    assert window.windowTitle().startswith("b")


class _BrokenScreen:
    pass


def test_a_screen_that_fails_to_start_does_not_stop_the_window(qtbot, ws_path, monkeypatch):

    from merch_app.ui import main_window
    from merch_app.ui.screens.base import Screen

    class Broken(Screen):
        title = "Broken"

        def __init__(self, window):
            super().__init__(window)
            raise RuntimeError("boom")

    monkeypatch.setattr(main_window, "SCREENS", main_window.SCREENS + [Broken])
    window = make_window(qtbot, ws_path)
    wait_idle(qtbot, window)
    assert "Broken" not in window.screens and "Data" in window.screens
    assert window.banner.level == "error" and "boom" in window.banner.label.text()


def test_messages_float_over_the_screens_without_resizing_them(qtbot, ws_path):
    window = make_window(qtbot, ws_path)
    wait_idle(qtbot, window)
    window.resize(1200, 800)
    qtbot.wait(50)
    screen = window.stack.currentWidget()
    size = screen.size()
    window.show_message("Imported 3 files<br>second line", "info")
    qtbot.wait(50)
    assert screen.size() == size  # nothing was pushed down
    banner, stack = window.banner.geometry(), window.stack.geometry()
    assert window.banner.isVisible() and stack.contains(banner) and banner.bottom() > stack.center().y()
    window.resize(1000, 700)
    qtbot.waitUntil(lambda: window.stack.geometry().contains(window.banner.geometry()), timeout=2000)
    assert window.banner.geometry().right() > window.stack.geometry().center().x()  # still at the bottom right

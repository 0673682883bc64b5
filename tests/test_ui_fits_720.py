"""Every screen fits a 1280×720 laptop window: no minimum size above it, no visible widget outside it."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QRect  # noqa: E402
from PySide6.QtWidgets import QAbstractScrollArea, QWidget  # noqa: E402

from ui_support import import_shop, make_window, wait_idle  # noqa: E402

W, H = 1280, 720


def _scrolled(w: QWidget) -> bool:
    """Inside a scroll area (content scrolled in its viewport may be larger than the window)."""
    p = w.parentWidget()
    while p is not None:
        if isinstance(p, QAbstractScrollArea):
            return True
        p = p.parentWidget()
    return False


def outside(window) -> list[str]:
    """Visible widgets of ``window`` that reach outside its client area."""
    area = QRect(0, 0, window.width(), window.height())
    out = []
    for w in window.findChildren(QWidget):
        if not w.isVisible() or w.isWindow() or _scrolled(w):
            continue
        rect = QRect(w.mapTo(window, QPoint(0, 0)), w.size())
        if not area.contains(rect):
            out.append(f"{type(w).__name__}({w.objectName()}) {rect.getRect()}")
    return out


@pytest.fixture
def window(qtbot, tmp_path, ws_path):
    import_shop(tmp_path / "shop", ws_path)
    w = make_window(qtbot, ws_path)
    for s in w.screens.values():
        if hasattr(s, "encoder_spec"):
            s.encoder_spec = "hashing:64"
    wait_idle(qtbot, w)
    return w


def problems_at_720(qtbot, window, titles) -> dict[str, list[str]]:
    """Per screen of ``titles``: what does not fit once the window is resized to 1280×720."""
    problems = {}
    for title in titles:
        window.show_screen(title)
        wait_idle(qtbot, window)
        window.resize(W, H)
        qtbot.wait(20)
        hint = window.minimumSizeHint()
        bad = []
        if hint.width() > W or hint.height() > H:
            bad.append(f"minimum size {hint.width()}×{hint.height()}")
        if window.width() > W or window.height() > H:
            bad.append(f"window forced to {window.width()}×{window.height()}")
        bad += outside(window)
        if bad:
            problems[title] = bad
    return problems


def test_every_screen_fits_1280x720(qtbot, window):
    titles = [t for t in window.screens if t != "Rules"]
    assert len(titles) == len(window.screens) - 1
    problems = problems_at_720(qtbot, window, titles)
    assert not problems, "\n".join(f"{t}: {v[:6]}" for t, v in problems.items())


def test_rules_screen_fits_1280x720(qtbot, window):
    problems = problems_at_720(qtbot, window, ["Rules"])
    assert not problems, problems

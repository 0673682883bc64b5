"""Shared setup of the screenshot scripts: offscreen Qt, a throwaway app home, event pumping, PNG saving.

Import this module before anything from ``merch_app``: it sets the offscreen
platform and the Hugging Face offline switches first.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

OUT = Path(__file__).resolve().parent


def shield_pyside_612() -> None:
    """PySide6 6.12.0 on Python 3.11 steals a None reference per void call; keep None alive."""
    import ctypes

    import PySide6

    if sys.version_info < (3, 12) and PySide6.__version__.startswith("6.12"):
        for obj in (None, True, False):
            ctypes.c_ssize_t.from_address(id(obj)).value += 10**9


def temp_home(prefix: str) -> Path:
    """A fresh temp folder, also used as the app's home (settings, default workspace).

    Parameters
    ----------
    prefix
        Start of the folder name.

    Returns
    -------
    Path
        The folder; the app home is its ``home`` subfolder.
    """
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["MERCH_APP_HOME"] = str(tmp / "home")
    return tmp


def pump(app, seconds: float = 0.3) -> None:
    """Process Qt events for ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def wait_idle(app, window, timeout: float = 900) -> None:
    """Process events until the window's workers are idle (or ``timeout`` seconds pass)."""
    end = time.perf_counter() + timeout
    pump(app, 0.2)
    while window.busy() and time.perf_counter() < end:
        pump(app, 0.05)
    pump(app, 0.5)


def open_window(path: Path):
    """The application and a shown 1400x900 main window on the workspace ``path``.

    Parameters
    ----------
    path
        Workspace file (created when missing).

    Returns
    -------
    tuple of (QApplication, MainWindow)
    """
    from merch_app.ui.app import create_app
    from merch_app.ui.main_window import MainWindow

    app = create_app()
    window = MainWindow(path)
    window.resize(1400, 900)
    window.show()
    pump(app)
    return app, window


def save(app, window, name: str) -> None:
    """Hide the message banner, let the window repaint and write it to ``OUT / name``."""
    window.banner.hide()
    pump(app, 0.4)
    window.grab().save(str(OUT / name))
    print("wrote", name)

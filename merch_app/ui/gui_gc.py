"""Keep Python's cyclic garbage collector in the GUI thread while worker threads run."""
from __future__ import annotations

import gc
from typing import Optional

from PySide6.QtCore import QTimer


class GuiThreadGC:
    """While worker threads exist, Python's cyclic GC runs only in the GUI thread.

    A collection triggered by an allocation in a worker thread may free the
    Python wrappers of Qt widgets (e.g. of a closed window); PySide then
    deletes their C++ objects from a "pending call" at a random point of the
    GUI thread, which crashes Qt.  As pyqtgraph's ``GarbageCollector`` does,
    automatic collection is switched off and a GUI-thread timer collects
    instead, for as long as any runner thread is alive.
    """

    def __init__(self) -> None:
        self.users = 0
        self.timer: Optional[QTimer] = None
        self.was_enabled = True

    def acquire(self) -> None:
        if self.users == 0:
            self.was_enabled = gc.isenabled()
            gc.disable()
            self.timer = QTimer()
            self.timer.timeout.connect(self.collect)
            self.timer.start(500)
        self.users += 1

    def release(self) -> None:
        self.users -= 1
        if self.users == 0 and self.timer is not None:
            self.timer.stop()
            self.timer = None
            gc.collect()
            if self.was_enabled:
                gc.enable()

    @staticmethod
    def collect() -> None:
        threshold = gc.get_threshold()
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > threshold[generation]:
                gc.collect(generation)
                return

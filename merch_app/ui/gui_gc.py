"""Keep Python's cyclic garbage collector in the GUI thread, in slices short enough not to stall it."""
from __future__ import annotations

import gc
import time
from typing import Optional

from PySide6.QtCore import QTimer

TICK_MS = 50
# With no job running, more new objects than this are frozen (moved out of the
# collector's reach, O(1)) instead of scanned: scanning a million objects holds
# the GIL for ~200 ms, and a burst that large is data just loaded (a table, a
# catalogue), not garbage.  While a job runs nothing is scanned at all.
FREEZE_ABOVE = 50_000
FULL_EVERY_S = 60.0


class GuiThreadGC:
    """While worker threads exist, Python's cyclic GC runs only in the GUI thread.

    A collection triggered by an allocation in a worker thread may free the
    Python wrappers of Qt widgets (e.g. of a closed window); PySide then
    deletes their C++ objects from a "pending call" at a random point of the
    GUI thread, which crashes Qt.  As pyqtgraph's ``GarbageCollector`` does,
    automatic collection is switched off and a GUI-thread timer collects
    instead, for as long as any runner thread is alive.

    Each collection stops every Python thread, so the timer keeps them short
    (measured in ``benchmarks/bench_responsiveness.py``: collections of 100-320
    ms were the GUI's longest stalls while encoding and training):

    * young generations every :data:`TICK_MS` while no job runs, so each scans little;
    * while a job runs, new objects are frozen instead of scanned, and so is any burst
      of more than :data:`FREEZE_ABOVE` new objects (acyclic ones are still freed by
      reference counting; cycles among them are not collected: the price of not
      stalling the GUI, small as the GUI and the jobs make few cycles);
    * full collections only while no job runs (``idle()``), at most every
      :data:`FULL_EVERY_S`, followed by ``gc.freeze()`` so the next one scans
      only what was created since.
    """

    def __init__(self) -> None:
        self.users = 0
        self.timer: Optional[QTimer] = None
        self.was_enabled = True
        self.idle = lambda: True  # set by the runners: no job running anywhere
        self._last_full = time.monotonic()

    def acquire(self) -> None:
        if self.users == 0:
            self.was_enabled = gc.isenabled()
            gc.disable()
            self.timer = QTimer()
            self.timer.timeout.connect(self.collect)
            self.timer.start(TICK_MS)
        self.users += 1

    def release(self) -> None:
        self.users -= 1
        if self.users == 0 and self.timer is not None:
            self.timer.stop()
            self.timer = None
            gc.collect()
            if self.was_enabled:
                gc.enable()

    def collect(self) -> None:
        """One GUI-thread step: a young collection, a freeze, or (when idle) a full collection."""
        threshold = gc.get_threshold()
        counts = gc.get_count()
        idle = self.idle()
        if counts[0] > FREEZE_ABOVE or not idle and (counts[0] > threshold[0] or counts[1] > threshold[1]):
            # While a job runs nothing is scanned: middle collections took 50-65 ms (the job's
            # live rows and tuples) and even young ones 85-126 ms now and then during training.
            gc.freeze()
        elif counts[2] > threshold[2] and time.monotonic() - self._last_full > FULL_EVERY_S and idle:
            gc.collect(2)
            gc.freeze()
            self._last_full = time.monotonic()
        elif counts[1] > threshold[1]:
            gc.collect(1)
        elif counts[0] > threshold[0]:
            gc.collect(0)


def settle_startup_heap() -> None:
    """Collect once and freeze what start-up created (modules, Qt wrappers): later full
    collections then never walk it."""
    gc.collect()
    gc.freeze()

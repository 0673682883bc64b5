"""The worker-thread side of :class:`~merch_app.ui.workers.JobRunner`.

:class:`JobHandle` is what the GUI keeps of a job, :class:`JobContext` what a
job function receives in the worker thread, and :class:`Executor` the object
living in the worker thread that runs the queued jobs one after the other and
reports back through queued signals.  Screens use :mod:`merch_app.ui.workers`.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, Signal, Slot

from merch_app.data.workspace import open_workspace
from merch_app.jobs import CancelToken, Cancelled, Progress

# progress reports reach the GUI at most this often (10 Hz is smooth for bars and curves;
# each report costs the GUI thread a slot call and a repaint)
PROGRESS_INTERVAL_S = 0.1
# Worker threads run at this nice level (Linux: per thread; threads they start, such as
# torch's compute threads, inherit it).  On a 2-core laptop a training job keeps both cores
# busy; the GUI thread (nice 0) then still gets a core as soon as it has an event to handle.
WORKER_NICE = 10


def lower_thread_priority(level: Optional[int] = None) -> bool:
    """Raise the calling thread's nice value to ``level`` (default :data:`WORKER_NICE`; True if set).

    Only Linux schedules threads by their own nice value; elsewhere (or
    without permission) nothing changes and False is returned.
    """
    level = WORKER_NICE if level is None else level
    if level <= 0 or not sys.platform.startswith("linux"):  # elsewhere a thread id is not a nice target
        return False
    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < level:
            os.setpriority(os.PRIO_PROCESS, tid, level)
    except OSError:
        return False
    lower_compute_pools(level)
    return True


_QT_THREADS = ("merch-", "Thread (pooled)", "Q", "gmain", "gdbus", "dconf")  # Qt's and GLib's threads keep theirs


def lower_compute_pools(level: int) -> int:
    """Raise the nice value of the process's unnamed native threads (torch's OpenMP / MKL pools) to ``level``.

    Intel's OpenMP runtime keeps one pool for the whole process, started by
    whichever thread first ran parallel torch code (the GUI thread's nice 0
    when it loaded the encoder): a worker's training then ran half its
    compute on a nice-0 pool thread, which took a core from the GUI thread
    (measured: 50 % of a core at nice 0 while a job ran at nice 10; the GUI
    painted 5-8x slower while typing during a training).  Python threads,
    the main thread and Qt's or GLib's own (named) threads are left alone.
    Returns how many threads were changed.
    """
    main = threading.main_thread().native_id
    python = {t.native_id for t in threading.enumerate()}
    changed = 0
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return 0
    for tid in tids:
        if tid == main or tid in python:
            continue
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip().startswith(_QT_THREADS):
                    continue
            if os.getpriority(os.PRIO_PROCESS, tid) < level:
                os.setpriority(os.PRIO_PROCESS, tid, level)
                changed += 1
        except OSError:  # the thread ended meanwhile
            continue
    return changed


@dataclass
class JobHandle:
    """What the GUI keeps of a queued/running job."""

    seq: int
    label: str
    channel: str = ""
    token: CancelToken = field(default_factory=CancelToken)
    state: str = "queued"  # queued | running | ok | error | cancelled | dropped
    superseded: bool = False  # a newer job of the same channel replaced it: its result is stale
    started: float = field(default_factory=time.perf_counter)
    last_progress: Optional[Progress] = None

    def cancel(self) -> None:
        self.token.cancel()

    @property
    def done(self) -> bool:
        return self.state in ("ok", "error", "cancelled", "dropped")


class JobContext:
    """Handed to a job function inside the worker thread."""

    def __init__(self, handle: JobHandle, executor: "Executor") -> None:
        self.handle = handle
        self.cancel = handle.token
        self._executor = executor
        self.state = executor.state
        self._last_emit = 0.0

    def progress(self, p: Progress) -> None:
        """Forward a progress report to the GUI (rate-limited; epoch ends and milestones always pass)."""
        now = time.perf_counter()
        important = bool(p.data.get("epoch_end") or p.data.get("milestone")) or (
            p.total is not None and p.done >= p.total)
        if not important and now - self._last_emit < PROGRESS_INTERVAL_S:
            return
        self._last_emit = now
        self._executor.progressed.emit(self.handle.seq, p)

    def db(self, path: Path | str):
        """A workspace connection owned by this worker thread (opened once, cached)."""
        key = ("db", str(path))
        conn = self.state.get(key)
        if conn is None:
            conn = open_workspace(path)
            self.state[key] = conn
        return conn

    def close_db(self, path: Path | str) -> None:
        """Close the cached connection to ``path`` (e.g. before the file is replaced)."""
        conn = self.state.pop(("db", str(path)), None)
        if conn is not None:
            conn.close()


@dataclass
class Job:
    handle: JobHandle
    fn: Callable[[JobContext], Any]


class Executor(QObject):
    """Lives in the worker thread; runs queued jobs one after the other.

    Jobs are handed over by sequence number through ``jobs`` (filled and
    emptied by the GUI thread) so that the job function and everything its
    closure holds (possibly widgets) are released in the GUI thread.
    """

    began = Signal(int)
    progressed = Signal(int, object)
    succeeded = Signal(int, object)
    failed = Signal(int, object, str)
    cancelled = Signal(int)

    def __init__(self) -> None:
        super().__init__()
        self.state: dict[Any, Any] = {}
        self.jobs: dict[int, Job] = {}
        self.lock = threading.Lock()
        self.niced = False

    @Slot(int)
    def execute(self, seq: int) -> None:
        if not self.niced:  # first job in this thread: from now on it yields the cores to the GUI
            self.niced = lower_thread_priority()
        with self.lock:
            job = self.jobs.get(seq)
        if job is None:
            return
        h, fn = job.handle, job.fn
        del job
        if h.token.cancelled:  # superseded while waiting in the queue
            self.cancelled.emit(seq)
            return
        self.began.emit(seq)
        outcome: tuple = ()
        try:
            outcome = ("ok", fn(JobContext(h, self)))
        except Cancelled:
            outcome = ("cancelled",)
        except BaseException as exc:  # noqa: BLE001 - every error goes to the GUI, never a crash
            tb = traceback.format_exc()
            outcome = ("error", exc.with_traceback(None), tb)
        del fn  # the GUI thread still holds the job; its closure dies there
        if outcome[0] == "ok":
            self.succeeded.emit(seq, outcome[1])
        elif outcome[0] == "cancelled":
            self.cancelled.emit(seq)
        else:
            self.failed.emit(seq, outcome[1], outcome[2])

    @Slot()
    def release(self) -> None:
        """Close thread-owned resources (connections) before the thread ends."""
        for key, value in list(self.state.items()):
            if isinstance(key, tuple) and key and key[0] == "db":
                try:
                    value.close()
                except Exception:  # noqa: BLE001
                    pass
        self.state.clear()

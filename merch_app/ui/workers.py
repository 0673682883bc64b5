"""Run core jobs off the GUI thread: the one way screens start long work.

A :class:`JobRunner` owns one worker ``QThread`` (one job at a time per
panel).  ``runner.start(fn, ...)`` cancels the job in flight, queues ``fn``
behind it and returns a :class:`JobHandle`.  ``fn(ctx)`` runs in the worker
thread and receives a :class:`JobContext` with

* ``ctx.progress`` — a :data:`merch_app.jobs.ProgressCallback` to hand to core jobs,
* ``ctx.cancel`` — the job's :class:`~merch_app.jobs.CancelToken`,
* ``ctx.db(path)`` — a SQLite connection opened *in this worker thread*
  (cached for the life of the runner, never shared with the GUI thread),
* ``ctx.state`` — a dict that persists between jobs of the same runner
  (e.g. a loaded model bundle for as-you-type querying).

Results, progress and errors come back through queued signals and are
delivered to the callbacks in the GUI thread.  The result of a job that was
superseded by a newer one is dropped (sequence numbers), so a stale query can
never overwrite a fresh one.  Workers never touch widgets.

The design follows Orange's ``ConcurrentWidgetMixin`` (cancel-and-replace,
results only for the latest task) and superqt's ``WorkerBase`` (signals
object + errors wrapped into a signal), with a dedicated thread per runner so
that thread-owned resources (SQLite connections) stay in one thread.
"""
from __future__ import annotations

import itertools
import logging
import sqlite3
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from merch_app.data.workspace import storage_problem
from merch_app.errors import MerchAppError
from merch_app.jobs import Cancelled, Progress
from merch_app.ui.gui_gc import GuiThreadGC
from merch_app.ui.job_executor import JobContext, JobHandle, Executor, Job

log = logging.getLogger(__name__)

_SEQ = itertools.count(1)
_GC = GuiThreadGC()  # shared by all runners
_RUNNERS: "weakref.WeakSet[JobRunner]" = weakref.WeakSet()
_GC.idle = lambda: not any(r._jobs for r in list(_RUNNERS))


@dataclass
class _Callbacks:
    on_result: Optional[Callable[[Any], None]] = None
    on_progress: Optional[Callable[[Progress], None]] = None
    on_error: Optional[Callable[[BaseException, str], None]] = None
    on_cancelled: Optional[Callable[[], None]] = None
    on_finished: Optional[Callable[[str], None]] = None
    keep_stale: bool = False


class JobRunner(QObject):
    """One worker thread and the jobs of one panel.

    Signals
    -------
    job_started(JobHandle)
        A job began running in the worker thread.
    job_progress(JobHandle, Progress)
        Progress of the current job.
    job_finished(JobHandle)
        The job ended; ``handle.state`` says how (ok | error | cancelled | dropped).
    job_failed(JobHandle, str)
        An unexpected error (message) that no ``on_error`` callback handled.
    """

    job_started = Signal(object)
    job_progress = Signal(object, object)
    job_finished = Signal(object)
    job_failed = Signal(object, str)
    _submit = Signal(int)
    _release = Signal()

    def __init__(self, name: str, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.name = name
        self._thread = QThread()
        self._thread.setObjectName(f"merch-{name}")
        self._executor = Executor()
        self._executor.moveToThread(self._thread)
        self._submit.connect(self._executor.execute)
        self._release.connect(self._executor.release)
        self._executor.began.connect(self._on_began)
        self._executor.progressed.connect(self._on_progress)
        self._executor.succeeded.connect(self._on_succeeded)
        self._executor.failed.connect(self._on_failed)
        self._executor.cancelled.connect(self._on_cancelled)
        self._jobs: dict[int, tuple[JobHandle, _Callbacks]] = {}
        _RUNNERS.add(self)
        _GC.acquire()
        self._thread.start()
        self._closed = False

    # ------------------------------------------------------------------ API
    def start(
        self,
        fn: Callable[[JobContext], Any],
        *,
        label: str = "",
        on_result: Optional[Callable[[Any], None]] = None,
        on_progress: Optional[Callable[[Progress], None]] = None,
        on_error: Optional[Callable[[BaseException, str], None]] = None,
        on_cancelled: Optional[Callable[[], None]] = None,
        on_finished: Optional[Callable[[str], None]] = None,
        cancel_previous: bool = True,
        keep_stale: bool = False,
        channel: str = "",
    ) -> JobHandle:
        """Queue ``fn(ctx)`` in the worker thread; returns its handle.

        Parameters
        ----------
        fn
            Runs in the worker thread with a :class:`JobContext`; its return
            value goes to ``on_result`` in the GUI thread.
        label
            Short text for the status bar ("Importing items.csv").
        on_result, on_progress, on_error, on_cancelled, on_finished
            GUI-thread callbacks. ``on_error(exc, traceback_text)``;
            ``on_finished(state)`` always runs last.
        cancel_previous
            Cancel the jobs in flight of this channel (default) and drop their
            results; the new job runs once they have stopped.  False queues
            the job behind them and every result is delivered.
        keep_stale
            Deliver the result even if a newer job superseded this one.
        channel
            Jobs only supersede (cancel, make stale) jobs of the same channel,
            e.g. "query" and "explain" jobs sharing one worker thread.
        """
        if self._closed:  # e.g. a debounce timer firing while the window closes
            log.debug("job %r not started: runner %s is shut down", label, self.name)
            return JobHandle(next(_SEQ), label, channel, state="dropped")
        if cancel_previous:
            for old, _ in self._jobs.values():
                if old.channel == channel:
                    old.superseded = True
                    old.cancel()
        handle = JobHandle(next(_SEQ), label, channel)
        cbs = _Callbacks(on_result, on_progress, on_error, on_cancelled, on_finished, keep_stale)
        self._jobs[handle.seq] = (handle, cbs)
        with self._executor.lock:
            self._executor.jobs[handle.seq] = Job(handle, fn)
        self._submit.emit(handle.seq)
        return handle

    def cancel(self, channel: Optional[str] = None) -> None:
        """Ask every queued or running job (of ``channel``, or all) to stop."""
        for handle, _ in self._jobs.values():
            if channel is None or handle.channel == channel:
                handle.cancel()

    def is_busy(self, channel: Optional[str] = None) -> bool:
        return any(channel is None or h.channel == channel for h, _ in self._jobs.values())

    @property
    def current(self) -> Optional[JobHandle]:
        """The running (or a queued) job, None when idle."""
        running = [h for h, _ in self._jobs.values() if h.state == "running"]
        if running:
            return running[-1]
        queued = [h for h, _ in self._jobs.values()]
        return queued[-1] if queued else None

    def wait(self, timeout_s: float = 30.0) -> bool:
        """Process events until all jobs ended (GUI thread; tests and quit)."""
        deadline = time.perf_counter() + timeout_s
        while self._jobs and time.perf_counter() < deadline:
            QCoreApplication.processEvents()
            QThread.msleep(5)
        QCoreApplication.processEvents()
        return not self._jobs

    def shutdown(self, timeout_s: float = 60.0) -> bool:
        """Cancel everything, wait for the thread to finish and release resources."""
        if self._closed:
            return True
        self.cancel()
        self._closed = True
        self._release.emit()
        self._thread.quit()
        ok = self._thread.wait(int(timeout_s * 1000))
        QCoreApplication.processEvents()
        if not ok:
            log.warning("worker %s did not stop within %.0fs", self.name, timeout_s)
        else:
            _GC.release()
        return ok

    # -------------------------------------------------------- GUI-thread slots
    def _entry(self, seq: int):
        return self._jobs.get(seq)

    def _pop(self, seq: int):
        """Forget job ``seq`` (in the GUI thread, so its closure is freed here)."""
        with self._executor.lock:
            self._executor.jobs.pop(seq, None)
        return self._jobs.pop(seq, None)

    def _is_stale(self, handle: JobHandle, cbs: _Callbacks) -> bool:
        return handle.superseded and not cbs.keep_stale

    @Slot(int)
    def _on_began(self, seq: int) -> None:
        entry = self._entry(seq)
        if entry:
            entry[0].state = "running"
            entry[0].started = time.perf_counter()
            self.job_started.emit(entry[0])

    @Slot(int, object)
    def _on_progress(self, seq: int, p: Progress) -> None:
        entry = self._entry(seq)
        if not entry or self._is_stale(*entry):
            return
        handle, cbs = entry
        handle.last_progress = p
        if cbs.on_progress:
            self._guard(cbs.on_progress, p)
        self.job_progress.emit(handle, p)

    @Slot(int, object)
    def _on_succeeded(self, seq: int, result: Any) -> None:
        entry = self._pop(seq)
        if not entry:
            return
        handle, cbs = entry
        if self._is_stale(handle, cbs):
            self._end(handle, cbs, "dropped")
            return
        if cbs.on_result:
            self._guard(cbs.on_result, result)
        self._end(handle, cbs, "ok")

    @Slot(int, object, str)
    def _on_failed(self, seq: int, exc: BaseException, tb: str) -> None:
        entry = self._pop(seq)
        if not entry:
            return
        handle, cbs = entry
        # A user error (MerchAppError) is expected; anything else is a bug: its traceback goes to the log.
        level = logging.WARNING if isinstance(exc, MerchAppError) else logging.ERROR
        log.log(level, "job %s failed:\n%s", handle.label, tb)
        if self._is_stale(handle, cbs):
            self._end(handle, cbs, "dropped")
            return
        if cbs.on_error:
            self._guard(cbs.on_error, exc, tb)
        else:
            self.job_failed.emit(handle, error_text(exc, handle.label))
        self._end(handle, cbs, "error")

    @Slot(int)
    def _on_cancelled(self, seq: int) -> None:
        entry = self._pop(seq)
        if not entry:
            return
        handle, cbs = entry
        if cbs.on_cancelled and not self._is_stale(handle, cbs):
            self._guard(cbs.on_cancelled)
        self._end(handle, cbs, "cancelled")

    def _end(self, handle: JobHandle, cbs: _Callbacks, state: str) -> None:
        handle.state = state
        if cbs.on_finished:
            self._guard(cbs.on_finished, state)
        self.job_finished.emit(handle)

    def _guard(self, fn: Callable, *args: Any) -> None:
        """Run a GUI callback; an exception there becomes a message, not a crash."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001
            log.exception("callback %r failed", fn)
            self.job_failed.emit(None, error_text(exc, "the results display"))


def error_text(exc: BaseException, where: str = "") -> str:
    """The one-line message the GUI shows for an exception of a job or a callback.

    Parameters
    ----------
    exc
        The exception.
    where
        What was running (a job label such as "Importing items.csv"); named in
        the message of an unexpected error.

    Returns
    -------
    str
        ``str(exc)`` as it is for a :class:`~merch_app.errors.MerchAppError`;
        "Cancelled." for :class:`~merch_app.jobs.Cancelled`; a sentence from
        :func:`~merch_app.data.workspace.storage_problem` for a full disk, a
        read-only, damaged or locked workspace; "No such file or directory
        (PATH)" and the like for an OS error about a file; otherwise
        "Unexpected error in WHERE: MESSAGE (see the log)" — a bug, whose
        traceback the caller logs.  Never starts with an exception class name.
    """
    text = str(exc)
    if isinstance(exc, MerchAppError) and text.strip():
        return text
    if isinstance(exc, Cancelled):
        return "Cancelled."
    if isinstance(exc, (sqlite3.Error, OSError)):
        problem = storage_problem(exc)
        if problem:
            return problem[:1].upper() + problem[1:] + "."
        if isinstance(exc, OSError) and exc.strerror and exc.filename:
            return f"{exc.strerror} ({exc.filename})"
    where_text = f" in {where}" if where else ""
    detail = f": {text.strip()}" if text.strip() else ""
    return f"Unexpected error{where_text}{detail} (see the log)"

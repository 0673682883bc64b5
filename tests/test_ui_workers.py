"""JobRunner: results in the GUI thread, stale results dropped, errors wrapped, channels, shutdown."""
from __future__ import annotations

import sys
import threading
import time

import pytest

pytest.importorskip("pytestqt")

from merch_app.errors import MerchAppError  # noqa: E402
from merch_app.jobs import Cancelled, Progress  # noqa: E402
from merch_app.ui.workers import JobRunner, error_text  # noqa: E402


@pytest.fixture
def runner(qtbot):
    r = JobRunner("test")
    yield r
    r.shutdown()


def counting_job(n, delay=0.005):
    def job(ctx):
        for i in range(n):
            ctx.cancel.check()
            time.sleep(delay)
            ctx.progress(Progress(i + 1, n, f"step {i + 1}"))
        return (n, threading.current_thread().name)
    return job


def test_result_and_progress_arrive_in_gui_thread(qtbot, runner):
    got, progress = [], []
    gui = threading.current_thread()
    runner.start(counting_job(5, 0.04), on_result=lambda r: got.append((r, threading.current_thread())),
                 on_progress=progress.append)
    assert runner.wait(10)
    (result, thread), = got
    assert result[0] == 5 and thread is gui and result[1] != gui.name  # ran elsewhere, delivered here
    assert progress and progress[-1].done == 5


def test_new_job_cancels_previous_and_stale_results_are_dropped(qtbot, runner):
    got, states = [], []
    for n in (200, 150, 3):
        runner.start(counting_job(n), on_result=got.append, on_finished=states.append)
    assert runner.wait(10)
    assert [r[0] for r in got] == [3]
    assert states == ["cancelled", "cancelled", "ok"]


def test_finished_but_superseded_result_is_dropped(qtbot, runner):
    got, states = [], []
    release = threading.Event()

    def ignores_cancel(ctx):
        release.wait(5)
        return "old"

    runner.start(ignores_cancel, on_result=got.append, on_finished=states.append)
    qtbot.waitUntil(lambda: runner.current is not None and runner.current.state == "running", timeout=5000)
    runner.start(lambda ctx: "new", on_result=got.append, on_finished=states.append)
    release.set()
    assert runner.wait(10)
    assert got == ["new"] and states == ["dropped", "ok"]


def test_errors_are_wrapped_not_raised(qtbot, runner):
    errors, failed = [], []
    runner.start(lambda ctx: 1 / 0, on_error=lambda exc, tb: errors.append((exc, tb)))
    runner.job_failed.connect(lambda h, text: failed.append(text))
    runner.start(lambda ctx: {}["missing"], cancel_previous=False)  # no on_error: the runner's signal carries it
    assert runner.wait(10)
    assert isinstance(errors[0][0], ZeroDivisionError) and "Traceback" in errors[0][1]
    assert failed == ["Unexpected error: 'missing' (see the log)"]  # a bug: no class name, the log has the trace
    assert error_text(MerchAppError("bad value")) == "bad value"


def test_channels_do_not_cancel_each_other(qtbot, runner):
    got = []
    runner.start(counting_job(20), on_result=lambda r: got.append(("query", r[0])), channel="query")
    runner.start(counting_job(2), on_result=lambda r: got.append(("explain", r[0])), channel="explain")
    assert runner.wait(10)
    assert sorted(got) == [("explain", 2), ("query", 20)]


def test_worker_state_and_connection_stay_in_one_thread(qtbot, runner, ws_path):
    seen = []

    def job(ctx):
        db = ctx.db(ws_path)
        seen.append((id(db), threading.get_ident()))
        return db.execute("SELECT count(*) FROM items").fetchone()[0]

    got = []
    for _ in range(3):
        runner.start(job, on_result=got.append, cancel_previous=False)
    assert runner.wait(10)
    assert got == [0, 0, 0] and len(set(seen)) == 1


def test_shutdown_cancels_and_waits(qtbot):
    r = JobRunner("shutdown")
    n, steps, ended = 10_000, [], []

    def job(ctx):  # ~20 s if nobody cancels it: longer than shutdown's 10 s wait
        try:
            for i in range(n):
                ctx.cancel.check()
                steps.append(i)
                time.sleep(0.002)
        except Cancelled:
            ended.append(("cancelled", len(steps)))
            raise
        ended.append(("ran to the end", len(steps)))

    r.start(job)
    qtbot.waitUntil(lambda: r.current is not None and r.current.state == "running", timeout=5000)
    assert r.shutdown(10)
    assert not r._thread.isRunning()  # shutdown returned after the thread ended, not before
    assert ended == [("cancelled", len(steps))] and len(steps) < n  # stopped by the cancel, mid-way
    late = r.start(lambda ctx: None)  # e.g. a timer firing during close: ignored, not an error
    assert late.state == "dropped" and not r.is_busy()


def test_gui_gc_keeps_collections_short_and_full_ones_for_idle_time(qtbot, monkeypatch):
    import gc

    from merch_app.ui import gui_gc

    calls = []
    monkeypatch.setattr(gui_gc.gc, "collect", lambda gen=2: calls.append(("collect", gen)))
    monkeypatch.setattr(gui_gc.gc, "freeze", lambda: calls.append(("freeze",)))
    g = gui_gc.GuiThreadGC()
    g._last_full = 0.0
    busy = [True]
    g.idle = lambda: not busy[0]
    counts = [(10, 0, 0)]
    monkeypatch.setattr(gui_gc.gc, "get_count", lambda: counts[0])
    monkeypatch.setattr(gui_gc.gc, "get_threshold", lambda: (700, 10, 10))
    g.collect()
    assert calls == []  # nothing to do
    counts[0] = (800, 0, 0)
    g.collect()
    assert calls[-1] == ("freeze",)  # a job runs: young objects are frozen, not scanned
    busy[0] = False
    g.collect()
    assert calls[-1] == ("collect", 0)
    busy[0] = True
    counts[0] = (800, 11, 0)
    busy[0] = False
    g._last_full = time.monotonic()
    g.collect()
    assert calls[-1] == ("collect", 1)
    busy[0] = True
    g._last_full = 0.0
    counts[0] = (800, 11, 11)
    g.collect()
    assert calls[-1] == ("freeze",)  # a job runs: no full collection (and no middle one)
    busy[0] = False
    g.collect()
    assert calls[-2:] == [("collect", 2), ("freeze",)]
    g.collect()
    assert calls[-1] == ("collect", 1)  # the next full one waits FULL_EVERY_S
    counts[0] = (gui_gc.FREEZE_ABOVE + 1, 0, 0)
    g.collect()
    assert calls[-1] == ("freeze",)  # a burst of new objects is frozen, not scanned
    counts[0] = (800, 11, 0)
    busy[0] = True
    g.collect()
    assert calls[-1] == ("freeze",)  # while a job runs, the survivors are frozen, not scanned
    busy[0] = False
    g.collect()
    assert calls[-1] == ("collect", 1)
    assert gc.isenabled()


def test_gui_process_switches_threads_every_millisecond(qtbot):
    """A busy worker hands the GIL back to the GUI thread after 1 ms, not Python's 5 ms."""
    import sys

    from merch_app.ui.app import GUI_SWITCH_INTERVAL_S, create_app

    create_app()
    assert sys.getswitchinterval() == pytest.approx(GUI_SWITCH_INTERVAL_S) == pytest.approx(0.001)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux-only")
def test_worker_threads_run_below_the_gui_threads_priority(qtbot, runner):
    """Jobs (and the compute threads they start) yield the cores to the GUI thread."""
    import os

    from merch_app.ui.job_executor import WORKER_NICE

    gui_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    got = []

    def job(ctx):
        seen = []
        child = threading.Thread(target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS,
                                                                           threading.get_native_id())))
        child.start()
        child.join()
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), seen[0]

    runner.start(job, on_result=got.append)
    assert runner.wait(10)
    assert got == [(max(WORKER_NICE, gui_nice), max(WORKER_NICE, gui_nice))] and WORKER_NICE >= 5
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == gui_nice  # the GUI thread is untouched


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux-only")
def test_torch_compute_pool_started_by_the_gui_thread_is_lowered_too():
    """Intel OpenMP's one pool serves every thread: started from the GUI thread it ran jobs' compute at nice 0."""
    import os

    import torch

    from merch_app.ui.job_executor import _QT_THREADS, lower_compute_pools

    torch.set_num_threads(2)
    float(torch.ones(4_000_000).exp().sum())  # parallel code in this (GUI) thread starts the pool

    def pool() -> dict[int, int]:
        main, python = threading.main_thread().native_id, {t.native_id for t in threading.enumerate()}
        out = {}
        for t in os.listdir("/proc/self/task"):
            tid = int(t)
            if tid != main and tid not in python:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    if not f.read().strip().startswith(_QT_THREADS):
                        out[tid] = os.getpriority(os.PRIO_PROCESS, tid)
        return out

    before = pool()
    assert before, "no native compute threads found"
    gui_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    level = min(19, max(before.values()) + 1)
    assert lower_compute_pools(level) >= 1
    assert all(nice >= level for nice in pool().values())
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == gui_nice  # the GUI thread is untouched

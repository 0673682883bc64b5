"""The jobs list: every running job with its progress and a Cancel button, not only the last one."""
from __future__ import annotations

import threading

import pytest

pytest.importorskip("pytestqt")

from merch_app.jobs import Progress  # noqa: E402
from ui_support import make_window, wait_idle  # noqa: E402


def _job(step: int, release: threading.Event):
    """A job reporting ``step``/10 until ``release`` is set or it is cancelled."""
    def job(ctx):
        ctx.progress(Progress(step, 10, f"step {step} of 10"))
        while not release.wait(0.005):
            ctx.cancel.check()
        return step
    return job


def test_two_jobs_both_listed_cancel_one_other_keeps_running(qtbot, ws_path):
    window = make_window(qtbot, ws_path)
    wait_idle(qtbot, window)
    status = window.job_status
    train_runner, query_runner = window.create_runner("test-train"), window.create_runner("test-query")
    release_train, release_query = threading.Event(), threading.Event()
    states = {}
    train = train_runner.start(_job(3, release_train), label="Training model",
                               on_finished=lambda s: states.__setitem__("train", s))
    qtbot.waitUntil(lambda: status.jobs() == [train] and train.last_progress is not None, timeout=10_000)
    query = query_runner.start(_job(7, release_query), label="Loading model for querying",
                               on_finished=lambda s: states.__setitem__("query", s))
    qtbot.waitUntil(lambda: len(status.jobs()) == 2 and query.last_progress is not None, timeout=10_000)

    # the strip keeps the oldest job (training), and says one more runs
    assert status.isVisible() and status.handle is train
    assert status.label.text() == "Training model: step 3 of 10"
    assert status.more_button.isVisible() and status.more_button.text() == "+1 more ▴"
    # the list shows both with their own progress
    status.more_button.click()
    panel = status.panel
    assert panel.isVisible() and window.stack.geometry().contains(panel.geometry())
    rows = list(panel.rows.values())
    assert [r.handle for r in rows] == [train, query]
    assert all(r.isVisible() for r in rows)
    assert [r.label.text() for r in rows] == ["Training model: step 3 of 10", "Loading model for querying: step 7 of 10"]
    assert [r.bar.value() for r in rows] == [300, 700]

    # a banner message stays above the list instead of covering it
    window.show_message("Something happened", "info")
    assert window.banner.geometry().bottom() < panel.geometry().top()

    # cancel the second one from the list: the training keeps running
    rows[1].cancel_button.click()
    qtbot.waitUntil(lambda: states.get("query") == "cancelled", timeout=10_000)
    assert status.jobs() == [train] and list(panel.rows) == [train.seq]
    assert train.state == "running" and not train.token.cancelled
    assert status.label.text() == "Training model: step 3 of 10" and not status.more_button.isVisible()
    assert not panel.isVisible()  # one job left: the strip shows it, the list closes

    release_train.set()
    qtbot.waitUntil(lambda: states.get("train") == "ok", timeout=10_000)
    assert status.jobs() == [] and not panel.rows
    assert not status.isVisible() and not panel.isVisible()
    release_query.set()


def test_the_strip_cancels_its_job_and_shows_the_next(qtbot, ws_path):
    window = make_window(qtbot, ws_path)
    wait_idle(qtbot, window)
    status = window.job_status
    a_runner, b_runner = window.create_runner("test-a"), window.create_runner("test-b")
    release = threading.Event()
    a = a_runner.start(_job(1, release), label="Importing a.csv")
    qtbot.waitUntil(lambda: status.jobs() == [a], timeout=10_000)
    b = b_runner.start(_job(5, release), label="Importing b.csv")
    qtbot.waitUntil(lambda: len(status.jobs()) == 2 and b.last_progress is not None, timeout=10_000)
    status.cancel_button.click()  # the strip's Cancel stops the job it shows
    assert a.token.cancelled and not b.token.cancelled
    qtbot.waitUntil(lambda: status.jobs() == [b], timeout=10_000)
    assert status.label.text() == "Importing b.csv: step 5 of 10" and status.bar.value() == 500
    release.set()
    qtbot.waitUntil(lambda: not status.jobs(), timeout=10_000)
    assert not status.isVisible()

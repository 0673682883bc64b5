"""Progress reporting and cooperative cancellation shared by every long job.

Core jobs (import, encode, train, evaluate) are plain functions that accept
``progress`` (a callable taking a :class:`Progress`) and ``cancel`` (a
:class:`CancelToken`).  They know nothing about threads or widgets: the UI runs
them in a worker thread and the CLI runs them in the foreground.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional


class Cancelled(Exception):
    """Raised inside a job when its cancel token was set."""


@dataclass
class Progress:
    """One progress report from a running job.

    Parameters
    ----------
    done, total
        Work done so far and the total (same unit, e.g. rows or bytes);
        ``total`` is None when unknown.
    message
        Short human-readable status line.
    eta_seconds
        Estimated seconds left, or None.
    data
        Job-specific payload (e.g. ``{"epoch": 3, "loss": 0.41}``) that the UI
        may chart.  ``data["milestone"]`` marks a report that says a step of
        the job happened (a phase starts, training stops early): sinks that
        rate-limit reports let it through.
    """

    done: float = 0.0
    total: Optional[float] = None
    message: str = ""
    eta_seconds: Optional[float] = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> Optional[float]:
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))

    @property
    def overall(self) -> Optional[float]:
        """The whole job's fraction done: ``data["overall"]`` of a job with phases
        (:class:`merch_app.job_phases.PhasePlan`), else :attr:`fraction`."""
        value = self.data.get("overall")
        return float(value) if isinstance(value, (int, float)) else self.fraction

    @property
    def overall_eta(self) -> Optional[float]:
        """Seconds left for the whole job: ``data["overall_eta"]`` of a job with phases, else :attr:`eta_seconds`."""
        return self.data.get("overall_eta") if "overall" in self.data else self.eta_seconds


ProgressCallback = Callable[[Progress], None]


class CancelToken:
    """A thread-safe flag a job polls between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._event.is_set():
            raise Cancelled("cancelled by user")


def no_progress(_: Progress) -> None:
    """Progress sink that ignores reports."""


class EtaClock:
    """Estimate the time left from the rate observed so far."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def eta(self, done: float, total: Optional[float]) -> Optional[float]:
        if not total or done <= 0:
            return None
        rate = done / max(self.elapsed(), 1e-9)
        return max(0.0, (total - done) / rate)


class Throttle:
    """Let through at most one report per ``interval`` seconds (plus the last)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._last = 0.0

    def ready(self) -> bool:
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False


PAUSE_ENV = "MERCH_APP_TEST_PAUSE_AT"


def pause_point(name: str) -> None:
    """Test hook for kill tests: stop here when ``$MERCH_APP_TEST_PAUSE_AT`` names this point.

    The process writes ``paused at NAME`` to stderr and sleeps, so a test can
    send SIGKILL exactly at this point of a job (e.g. ``forget.scrub``, while a
    ``.scrub-*`` folder exists).  Without the variable it does nothing.
    """
    if os.environ.get(PAUSE_ENV) == name:
        sys.stderr.write(f"paused at {name}\n")
        sys.stderr.flush()
        time.sleep(600)

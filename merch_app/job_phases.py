"""One progress fraction and one ETA for a job that runs several phases one after another.

A training encodes items, builds user vectors, trains, evaluates and saves;
each step reports its own ``done``/``total``.  :class:`PhasePlan` forwards
those reports unchanged and adds where the whole job stands to
``Progress.data``:

``overall``
    0..1 for the whole job; it never goes back and reaches 1.0 only at
    :meth:`PhasePlan.finish`.
``overall_eta``
    Seconds left for the whole job, smoothed; None during the first seconds.
``phase_index``, ``phases``
    The running phase's index in ``phases`` (the names, in order).
``milestone``
    True on the first report of each phase (rate-limited sinks keep it).

Each phase's share of the whole comes from an estimate of its duration made
before the run (from what is known then: texts to encode, events × epochs,
evaluation users).  A finished phase counts with the time it really took,
the running phase's estimate moves toward what its own rate predicts, and
the phases still to come are scaled by how far the finished ones were off.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Optional, Sequence

from merch_app.jobs import Progress, ProgressCallback

ETA_AFTER_SECONDS = 3.0  # no overall ETA before the job has run this long (the first rates are noise)
ETA_SMOOTHING_SECONDS = 3.0  # time constant of the ETA's exponential smoothing
ETA_JUMP_FACTOR = 2.0  # a new estimate this many times longer or shorter replaces the smoothed one at once
LAST_BEFORE_FINISH = 0.995  # the overall fraction stays below this until finish()
CALIBRATION_RANGE = (0.2, 5.0)  # how far the finished phases may rescale the estimates of the ones to come


class PhasePlan:
    """The phases of one job with their estimated durations; turns phase reports into overall progress.

    Parameters
    ----------
    estimates
        ``(name, seconds)`` per phase, in the order they run; the seconds are
        a rough estimate from what is known before the run (only their ratios
        and the later correction matter).  A phase that does not run (e.g. no
        hard negatives) may have 0.
    progress
        Where the reports go (None: nowhere; :meth:`phase` then returns None).
    clock
        Seconds as a float (default :func:`time.perf_counter`; tests pass a fake).

    Raises
    ------
    ValueError
        No phase, or a name used twice.
    """

    def __init__(self, estimates: Sequence[tuple[str, float]], progress: Optional[ProgressCallback] = None, *,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        names = [str(n) for n, _ in estimates]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a phase plan needs distinct phase names, got {names}")
        self.names = names
        self.progress = progress
        self.clock = clock
        self._prior = [max(0.0, float(s)) for _, s in estimates]
        self._actual: list[Optional[float]] = [None] * len(names)
        self._skipped: set[int] = set()
        self._current = -1
        self._phase_start = self._start = clock()
        self._in_phase = 0.0  # fraction of the running phase done
        self._anchor: Optional[tuple[float, float]] = None  # (time, fraction) of the running phase's first report
        self._raw = 0.0  # overall fraction from the estimates (may go back when they grow)
        self._shown = 0.0  # what is reported: monotonic
        self._eta: Optional[float] = None
        self._eta_at = 0.0
        self._finished = False

    # ------------------------------------------------------------ reporting
    def phase(self, name: str) -> Optional[ProgressCallback]:
        """A progress callback for the step that runs phase ``name`` (None when the plan reports nowhere).

        Parameters
        ----------
        name
            One of the plan's phase names; its first report starts the phase
            (and ends the ones before it).

        Returns
        -------
        callable or None
            Forwards each report with ``data["phase"] = name`` and the overall fields.
        """
        self._index(name)  # a misspelt name fails at once, not at the first report
        if self.progress is None:
            return None
        return lambda p: self.report(name, p)

    def start(self, name: str, message: str = "") -> None:
        """Start phase ``name`` and report it at 0 % (``done`` 0 of ``total`` 1).

        For a step without reports of its own, or one that prepares a while
        before its first report (that time then counts to this phase, but
        not to its measured rate).

        Parameters
        ----------
        name
            The phase; the phases before it count as finished.
        message
            Status line of the report.
        """
        index = self._index(name)
        if index > self._current:
            self._enter(index)
        self._update()
        if self.progress is not None:
            self.progress(Progress(0.0, 1.0, message, None, {**self.fields(name), "milestone": True}))

    def report(self, name: str, p: Progress) -> None:
        """Record a report of phase ``name`` and forward it with the overall fields.

        Parameters
        ----------
        name
            The phase the report belongs to.  A report of a phase before the
            running one does not move the overall position.
        p
            The step's own report; ``done``/``total``, ``message`` and
            ``eta_seconds`` are forwarded as they are.
        """
        index = self._index(name)
        entered = index > self._current
        if entered:
            self._enter(index)
        if index == self._current and p.fraction is not None:
            if self._anchor is None:
                self._anchor = (self.clock(), p.fraction)
            self._in_phase = p.fraction
        self._update()
        if self.progress is not None:
            data = {**p.data, **self.fields(name)}
            if entered:
                data["milestone"] = True
            self.progress(Progress(p.done, p.total, p.message, p.eta_seconds, data))

    def revise(self, name: str, seconds: float) -> None:
        """A better estimate of a phase that has not started yet (e.g. once the training events are counted).

        Parameters
        ----------
        name
            The phase; a running or finished one keeps what was measured.
        seconds
            Its new estimated duration.
        """
        index = self._index(name)
        if index > self._current:
            self._prior[index] = max(0.0, float(seconds))

    def finish(self, message: str = "done") -> None:
        """End the last phase: the overall fraction becomes 1.0 and the ETA 0 (reported once).

        Parameters
        ----------
        message
            Status line of the final report.
        """
        now = self.clock()
        if 0 <= self._current and self._actual[self._current] is None:
            self._actual[self._current] = now - self._phase_start
        self._current = len(self.names) - 1
        self._finished = True
        self._raw = self._shown = 1.0
        self._eta, self._eta_at = 0.0, now
        if self.progress is not None:
            last = self.names[-1]
            self.progress(Progress(1.0, 1.0, message, 0.0, {"phase": last, **self.fields(last)}))

    def fields(self, name: Optional[str] = None) -> dict:
        """The overall fields of the latest report: ``overall``, ``overall_eta``, ``phase_index``, ``phases``.

        Parameters
        ----------
        name
            Reported as ``data["phase"]`` (default: the running phase).

        Returns
        -------
        dict
            The fields added to each forwarded report's ``data``.
        """
        index = max(self._current, 0)
        return {"phase": name or self.names[index], "overall": self._shown, "overall_eta": self._eta,
                "phase_index": index, "phases": list(self.names)}

    # ------------------------------------------------------------ inspection
    @property
    def overall(self) -> float:
        """The overall fraction last reported (0..1, monotonic)."""
        return self._shown

    @property
    def eta(self) -> Optional[float]:
        """The smoothed overall ETA last reported (None before :data:`ETA_AFTER_SECONDS`)."""
        return self._eta

    def shares(self) -> list[float]:
        """Each phase's share of the whole job as the plan now sees it (sums to 1)."""
        seconds = self._seconds()
        total = sum(seconds)
        if total <= 0:
            return [1.0 / len(seconds)] * len(seconds)
        return [s / total for s in seconds]

    # ------------------------------------------------------------ internals
    def _index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"phase {name!r} is not in the plan {self.names}") from None

    def _enter(self, index: int) -> None:
        now = self.clock()
        if self._current >= 0:
            self._actual[self._current] = now - self._phase_start
        for skipped in range(self._current + 1, index):  # phases that did not run took no time
            self._actual[skipped] = 0.0
            self._skipped.add(skipped)
        self._current, self._phase_start, self._in_phase, self._anchor = index, now, 0.0, None

    def _calibration(self, running: Optional[tuple[float, float]] = None) -> float:
        """How much longer (> 1) or shorter the finished phases took than estimated, damped (square root).

        ``running``: (seconds, prior) of the running phase's done part, counted
        too, so the correction grows during a phase instead of jumping at its end.
        """
        done = [(a, p) for i, (a, p) in enumerate(zip(self._actual, self._prior))
                if a is not None and i not in self._skipped]  # a skipped phase says nothing about the pace
        if running is not None:
            done.append(running)
        actual, prior = sum(a for a, _ in done), sum(p for _, p in done)
        if prior <= 0 or actual <= 0:
            return 1.0
        lo, hi = CALIBRATION_RANGE
        return min(hi, max(lo, math.sqrt(actual / prior)))

    def _seconds(self) -> list[float]:
        """Duration of every phase: measured (finished), estimated from its rate (running), scaled prior (later)."""
        out = [a if a is not None else p for a, p in zip(self._actual, self._prior)]
        running = None
        if 0 <= self._current and self._actual[self._current] is None:
            prior = self._prior[self._current]
            out[self._current] = self._running_seconds(prior * self._calibration())
            running = (self._in_phase * out[self._current], self._in_phase * prior)
        k = self._calibration(running)
        for i in range(max(self._current + 1, 0), len(out)):
            out[i] = self._prior[i] * k
        return out

    def _running_seconds(self, prior: float) -> float:
        """The running phase's duration: the time it has taken plus what is left of it.

        What is left comes from the prior and from the rate measured since
        the phase's first report (not since its start: a set-up before the
        first step is no rate), the measured one weighing more as more of the
        phase is seen (square root of the fraction seen).
        """
        now = self.clock()
        f = self._in_phase
        left = (1.0 - f) * prior
        if self._anchor is not None:
            t1, f1 = self._anchor
            if f > f1 and now > t1:
                weight = math.sqrt(f - f1)
                left = (1.0 - weight) * left + weight * (1.0 - f) * (now - t1) / (f - f1)
        return (now - self._phase_start) + left

    def _update(self) -> None:
        if self._finished:
            return
        seconds = self._seconds()
        total = sum(seconds)
        before = sum(seconds[:self._current]) if self._current > 0 else 0.0
        running = seconds[self._current] * self._in_phase if self._current >= 0 else 0.0
        raw = (before + running) / total if total > 0 else 0.0
        # monotonic: when the estimates grow, the shown fraction keeps its place and covers what is left
        # at the pace of the new estimate, so it still reaches the end together with the job
        shown = self._shown
        if raw >= shown:
            shown = raw
        elif raw > self._raw and self._raw < 1.0:
            shown += (1.0 - shown) * (raw - self._raw) / (1.0 - self._raw)
        self._raw = raw
        self._shown = min(max(shown, self._shown), LAST_BEFORE_FINISH)
        self._update_eta()

    def _update_eta(self) -> None:
        now = self.clock()
        elapsed = now - self._start
        frac = max(self._raw, 1e-9)
        if elapsed < ETA_AFTER_SECONDS or self._raw <= 0:
            return
        raw_eta = elapsed * (1.0 - min(frac, 1.0)) / frac
        carried = None if self._eta is None else max(0.0, self._eta - (now - self._eta_at))  # counted down since
        if carried is None or not carried / ETA_JUMP_FACTOR <= raw_eta <= carried * ETA_JUMP_FACTOR:
            self._eta = raw_eta  # the first estimate, or one the job's own course has overturned
        else:
            weight = 1.0 - math.exp(-(now - self._eta_at) / ETA_SMOOTHING_SECONDS)
            self._eta = carried + weight * (raw_eta - carried)
        self._eta_at = now

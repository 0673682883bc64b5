"""A job's overall progress on a screen: one bar, a "phase 2 of 4: train · epoch 3/20 · ETA 1m10s" label,
and a log line when each phase starts.

The job reports through :class:`~merch_app.job_phases.PhasePlan`
(``data["overall"]``, ``overall_eta``, ``phase_index``, ``phases``); the view
only draws what the reports carry.
"""
from __future__ import annotations

from typing import Callable, Optional

from PySide6.QtWidgets import QLabel, QProgressBar

from merch_app.jobs import Progress
from merch_app.ui.status_widgets import format_eta
from merch_app.ui.widgets import set_elided


def phase_text(p: Progress, detail: str = "", names: Optional[dict[str, str]] = None) -> str:
    """``phase 2 of 4: train · epoch 3/20 · ETA 1m10s`` of a report (the message alone without a plan).

    Parameters
    ----------
    p
        The job's report.
    detail
        What the running phase is at (e.g. ``epoch 3/20``); empty: left out.
    names
        Display names of the phases (default: the job's own names).

    Returns
    -------
    str
        The status line.
    """
    d = p.data or {}
    phases, index = d.get("phases"), d.get("phase_index")
    if not phases or not isinstance(index, int):
        return p.message or ""
    name = (names or {}).get(phases[index], phases[index])
    eta = p.overall_eta
    parts = [f"phase {index + 1} of {len(phases)}: {name}", detail, f"ETA {format_eta(eta)}" if eta is not None else ""]
    return " · ".join(x for x in parts if x)


class PhaseProgress:
    """Shows a phased job's overall progress on ``bar`` and ``label`` and logs each phase's start.

    Parameters
    ----------
    bar
        A 0-1000 progress bar (:func:`merch_app.ui.screens.common.progress_row`).
    label
        The status label beside it.
    log_line
        Writes one line to the screen's log.
    names
        Display names of the phases (default: the job's own names).
    """

    def __init__(self, bar: QProgressBar, label: QLabel, log_line: Callable[[str], None],
                 names: Optional[dict[str, str]] = None) -> None:
        self.bar, self.label, self.log_line, self.names = bar, label, log_line, names or {}
        self.phase_index: Optional[int] = None

    def reset(self) -> None:
        """A new run: the bar at 0, no phase yet."""
        self.bar.setValue(0)
        self.phase_index = None

    def update(self, p: Progress, detail: str = "") -> None:
        """Draw report ``p``: bar = the whole job's fraction, label = phase, ``detail`` and overall ETA.

        Parameters
        ----------
        p
            The job's report.
        detail
            What the running phase is at (e.g. ``epoch 3/20``).
        """
        fraction = p.overall
        if fraction is not None:
            self.bar.setValue(int(fraction * 1000))
        d = p.data or {}
        index = d.get("phase_index")
        if isinstance(index, int) and index != self.phase_index:
            self.phase_index = index
            self.log_line(phase_text(Progress(data={"phases": d.get("phases"), "phase_index": index}),
                                     names=self.names) + (f" — {p.message}" if p.message else ""))
        set_elided(self.label, phase_text(p, detail, self.names)[:200], max(self.label.width(), 40))

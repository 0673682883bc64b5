"""What the GUI thread (and the others) did during a stall: ``bench_responsiveness --stall-dump FILE``.

:class:`GilProbe` is a Python thread waking every 2 ms.  At each wake-up it
notes the GUI thread's innermost frames (cheap: code names and line numbers
only) in a ring buffer with the time; a wake-up more than ``LATE_MS`` late
means some thread held the GIL (or every core was busy), and then every
thread's frames are recorded.  :meth:`GilProbe.mark` keeps, for each slow
heartbeat, the GUI frames seen while it waited (:meth:`GilProbe.flush` writes them): Python code of the GUI thread
shows up by name; a stall spent in Qt's C++ (layout, paint) shows the Python
frame that entered the event loop.  (faulthandler's watchdog dumped frames of
running threads and crashed the interpreter now and then; this probe only
reads frames while holding the GIL.)
"""
from __future__ import annotations

import collections
import sys
import threading
import time
import traceback
from pathlib import Path

LATE_MS = 40.0  # wake-ups later than this record every thread's frames
KEEP_S = 2.0  # GUI samples kept (seconds): a slow beat copies its window at once


def _where(frame, depth: int = 6) -> str:
    parts = []
    while frame is not None and len(parts) < depth:
        parts.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name}")
        frame = frame.f_back
    return " <- ".join(parts)


class GilProbe:
    """Samples the GUI thread every 2 ms and records every thread when the GIL was held > ``LATE_MS``."""

    def __init__(self, out) -> None:
        self.out = out
        self.t0 = time.perf_counter()
        self.name = ""
        self.events: list[str] = []
        self.beats: list[str] = []
        self.gui = threading.get_ident()  # created in the GUI thread
        self.samples: collections.deque = collections.deque(maxlen=int(KEEP_S / 0.002))
        threading.Thread(target=self._run, daemon=True, name="gil-probe").start()

    def _run(self) -> None:
        names = {}
        last = time.perf_counter()
        while True:
            time.sleep(0.002)
            now = time.perf_counter()
            late = (now - last - 0.002) * 1000.0
            last = now
            frames = sys._current_frames()
            self.samples.append((now - self.t0, late, _where(frames.get(self.gui))))
            if late < LATE_MS:
                continue
            names.update({t.ident: t.name for t in threading.enumerate()})
            lines = [f"late {late:.0f} ms at {now - self.t0:.2f} s"]
            for ident, frame in frames.items():
                if names.get(ident) == "gil-probe":
                    continue
                top = traceback.extract_stack(frame, limit=4)[::-1]
                where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in top)
                lines.append(f"    {names.get(ident, ident)}: {where}")
            self.events.append("\n".join(lines))

    def mark(self, gap: float, at: float) -> None:
        """Note what the GUI thread ran during a slow beat (``gap`` s long, ending ``at`` s into the phase)."""
        samples = [x for x in list(self.samples) if at - gap - 0.002 <= x[0] <= at + 0.002]
        seen = collections.Counter(w for t, _late, w in samples)
        late = max((lt for _t, lt, _w in samples), default=0.0)
        lines = [f"  beat at {at:.2f} s ({gap * 1000:.0f} ms; probe late at most {late:.0f} ms), GUI thread frames seen:"]
        lines += [f"    {n:3d} x {where}" for where, n in seen.most_common(6)]
        self.beats.append("\n".join(lines))

    def flush(self) -> None:
        """Write the slow beats of the phase ``self.name`` and what ran then."""
        self.out.write(f"--- {self.name}: {len(self.beats)} slow beats\n" + "\n".join(self.beats + self.events) + "\n")
        self.out.flush()
        self.events, self.beats = [], []
        self.samples.clear()


_REFERENCE_LOOP = """
import sys, time
last = time.perf_counter()
while True:
    time.sleep(0.010)
    now = time.perf_counter()
    late = (now - last - 0.010) * 1000.0
    last = now
    if late > 5.0:
        print(f"{now:.4f} {late:.1f}", flush=True)
"""


class ReferenceHeartbeat:
    """The same 10 ms heartbeat in a separate, idle Python process: how late the machine itself was.

    A beat of the GUI that is late while this process is late too was a pause
    of the whole machine (another process, the VM), not of the app.  Both use
    ``time.perf_counter`` (CLOCK_MONOTONIC on Linux), so the times compare.
    """

    def __init__(self) -> None:
        import subprocess

        self.late: list[tuple[float, float]] = []  # (perf_counter s, ms late), beats > 5 ms late
        self.proc = subprocess.Popen([sys.executable, "-c", _REFERENCE_LOOP], stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True, name="reference-heartbeat").start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            t, ms = line.split()
            self.late.append((float(t), float(ms)))

    def max_between(self, t0: float, t1: float) -> float:
        """Longest lateness (ms) of a reference beat that ended within [t0, t1] (perf_counter seconds)."""
        return max((ms for t, ms in list(self.late) if t0 <= t <= t1), default=0.0)

    def stop(self) -> None:
        self.proc.kill()

"""What the GUI thread (and the others) did during a stall: ``bench_responsiveness --stall-dump FILE``.

:class:`GilProbe` is a Python thread waking every 2 ms.  At each wake-up it
notes the GUI thread's innermost frames (cheap: code names and line numbers
only) in a ring buffer with the time; a wake-up more than ``LATE_MS`` late
means some thread held the GIL (or every core was busy), and then every
thread's frames are recorded.  :meth:`GilProbe.flush` writes, for each slow
heartbeat, the GUI frames seen while it waited: Python code of the GUI thread
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
KEEP_S = 30.0  # GUI samples kept (seconds)


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

    def flush(self, stalls) -> None:
        """Write the slow beats ``stalls`` = [(gap s, at s)] of the phase ``self.name`` and what ran then."""
        self.out.write(f"--- {self.name}: slow beats at " + ", ".join(f"{t:.2f} s ({g * 1000:.0f} ms)"
                                                                   for g, t in stalls) + "\n")
        samples = list(self.samples)
        for gap, at in stalls:
            seen = collections.Counter(w for t, _late, w in samples if at - gap - 0.002 <= t <= at + 0.002)
            late = max((lt for t, lt, _w in samples if at - gap <= t <= at + 0.004), default=0.0)
            self.out.write(f"  beat at {at:.2f} s ({gap * 1000:.0f} ms; probe late at most {late:.0f} ms), "
                           "GUI thread frames seen:\n")
            for where, n in seen.most_common(6):
                self.out.write(f"    {n:3d} x {where}\n")
        self.out.write("\n".join(self.events) + "\n")
        self.out.flush()
        self.events = []
        self.samples.clear()

"""Long jobs running on a workspace, seen from every process: a second training knows of the first.

A training, fine-tuning or import writes a row into ``job_marks`` (kind, label, process id, host,
start time) while it runs and removes it when it ends, however it ends.  A process killed
mid-job leaves its row behind; :func:`running_jobs` leaves out rows whose process no longer runs
on this machine, so a stale row never blocks or alarms anyone.  Rows of another machine (a
workspace on a shared folder) count for a day.

The rows warn; they do not lock: SQLite's write lock already keeps two writers from corrupting
the registry.  What they prevent is the surprise of two trainings saving two versions at once.
"""
from __future__ import annotations

import os
import socket
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator, Optional

FOREIGN_HOST_HOURS = 24  # a row of another machine is believed this long: its process cannot be checked
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

KIND_NAMES = {"train": "training", "finetune": "encoder fine-tuning", "import": "import"}


@dataclass(frozen=True)
class JobMark:
    """One running job: what, whose process, since when."""

    mark_id: int
    kind: str
    label: str
    pid: int
    host: str
    started: str

    def describe(self) -> str:
        """``"a training (“nightly”) in process 4242 since 05:40 UTC"``."""
        where = f"process {self.pid}" + ("" if self.host == socket.gethostname() else f" on {self.host}")
        label = f" (“{self.label}”)" if self.label else ""
        return f"a {KIND_NAMES.get(self.kind, self.kind)}{label} in {where} since {self.started[11:16]} UTC"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    except OSError:
        return False
    return True


def _believed(row: JobMark, now: datetime) -> bool:
    if row.host == socket.gethostname():
        return _alive(row.pid)
    try:
        started = datetime.strptime(row.started, TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return False
    return now - started < timedelta(hours=FOREIGN_HOST_HOURS)


def running_jobs(db, kind: Optional[str] = None, *, other_processes: bool = True) -> list[JobMark]:
    """The jobs running on the workspace now, oldest first.

    Parameters
    ----------
    kind
        Only jobs of this kind (``train``, ``finetune``, ``import``).
    other_processes
        Leave out this process's own jobs (its screens show those already).
    """
    sql = "SELECT mark_id, kind, label, pid, host, started FROM job_marks"
    args: list = []
    if kind is not None:
        sql += " WHERE kind = ?"
        args.append(kind)
    try:
        rows = [JobMark(*r) for r in db.execute(sql + " ORDER BY mark_id", args).fetchall()]
    except sqlite3.OperationalError:  # a workspace opened read-only before this table existed
        return []
    now = datetime.now(timezone.utc)
    me, host = os.getpid(), socket.gethostname()
    return [r for r in rows if _believed(r, now) and not (other_processes and r.pid == me and r.host == host)]


@contextmanager
def job_mark(db, kind: str, label: str = "") -> Iterator[Optional[int]]:
    """Mark a job as running on the workspace while the ``with`` block runs; yields the row id.

    A read-only workspace gets no mark (nothing else can write there either).  Rows of jobs
    whose process is gone are removed on the way.
    """
    if db.readonly:
        yield None
        return
    started = datetime.now(timezone.utc).strftime(TIME_FORMAT)
    live = {r.mark_id for r in running_jobs(db, other_processes=False)}
    with db.conn:
        stale = [r[0] for r in db.execute("SELECT mark_id FROM job_marks").fetchall() if r[0] not in live]
        db.conn.executemany("DELETE FROM job_marks WHERE mark_id = ?", [(m,) for m in stale])
        cur = db.execute("INSERT INTO job_marks(kind, label, pid, host, started) VALUES (?, ?, ?, ?, ?)",
                         [kind, label, os.getpid(), socket.gethostname(), started])
    mark_id = int(cur.lastrowid)
    try:
        yield mark_id
    finally:
        try:
            with db.conn:
                db.execute("DELETE FROM job_marks WHERE mark_id = ?", [mark_id])
        except sqlite3.Error:  # a full disk or a lost file: the row is stale now and ignored (pid gone)
            pass


def others_warning(db, kind: str) -> Optional[str]:
    """A sentence when another process runs a job of ``kind`` on this workspace, else None."""
    others = running_jobs(db, kind)
    if not others:
        return None
    what = "; ".join(o.describe() for o in others)
    return (f"another {KIND_NAMES.get(kind, kind)} is running on this workspace: {what}. "
            "Both will finish and save their own version")

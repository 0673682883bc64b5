"""Speed of the operations whose tests used to carry a stopwatch.

The tests prove these behaviours with bounded-work assertions (blocks read,
files opened, cancel seen before the job's end, reads done while the writer
held its transaction); how long they take on this machine is measured here,
next to the limit the test used to assert:

=====================  =========================================================  ==========================
name                   what is timed                                              former test limit
=====================  =========================================================  ==========================
``user_vectors``       ``user_text_vectors``: 4,000 users x 400,000 events, 384-d  < 15 s (test_vectors_users)
``huge_field``         ``import_file`` of a 3-row catalogue with a 10 MB field     < 20 s (test_bad_inputs)
``import_cancel``      cancel at 30 % of a 250k-event import -> ``Cancelled``      < 15 s (test_ui_data close)
``runner_shutdown``    ``JobRunner.shutdown`` while a job runs                    < 5 s (test_ui_workers)
``wal_reads``          counts + FTS search on a second connection while an        < 5 s (test_kill9)
                       import holds its open write transaction
=====================  =========================================================  ==========================

Usage::

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_limits.py [--quick] [--repeat 3] [--no-write]

``--quick``: 100,000 events for ``user_vectors`` and one repeat (~5 s; full run ~30 s).  The
result replaces the ``<!-- bench:limits -->`` section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchlib import OUT, load_average, machine_info, machine_line, write_section  # noqa: E402
from synth_data import random_events  # noqa: E402

LIMITS = {"user_vectors": 15.0, "huge_field": 20.0, "import_cancel": 15.0, "runner_shutdown": 5.0,
          "wal_reads": 5.0}


def _events_workspace(folder: Path, n_users: int, n_items: int, n_events: int, dim: int):
    """A workspace of random events (as the former scale test) and random unit item vectors."""
    from merch_app.data.workspace import open_workspace

    db = open_workspace(folder / "events.merch.sqlite")
    ev = random_events(db, n_users, n_items, n_events, dim)
    return db, ev.item_ids, ev.item_vecs


def bench_user_vectors(folder: Path, n_events: int, repeat: int) -> dict:
    from merch_app.model.hashing_encoder import HashingEncoder
    from merch_app.model.user_vectors import user_text_vectors

    dim = 384
    db, item_ids, item_vecs = _events_workspace(folder, 4000, 4000, n_events, dim)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        users, vecs = user_text_vectors(db, item_ids, item_vecs, HashingEncoder(dim))
        times.append(time.perf_counter() - t0)
    db.close()
    return {"times": times, "what": f"{len(users):,} users x {n_events:,} events, {dim}-d"}


def bench_huge_field(folder: Path, repeat: int) -> dict:
    from merch_app.data.importer import import_file
    from merch_app.data.workspace import open_workspace

    f = folder / "huge_field.csv"
    with open(f, "w", encoding="utf-8") as out:
        out.write("sku,title,description\nA1,Mug,short\nA2,Plate,")
        out.write("x" * (10 * 1024 * 1024))
        out.write("\nA3,Bowl,fine\n")
    times = []
    for n in range(repeat):
        db = open_workspace(folder / f"huge{n}.merch.sqlite")
        t0 = time.perf_counter()
        r = import_file(db, f)
        times.append(time.perf_counter() - t0)
        assert r.rejected_reasons == {"field_too_long": 1}, r.rejected_reasons
        db.close()
    return {"times": times, "what": "3 rows, one 10 MiB description (rejected)"}


def _big_events(folder: Path, rows: int = 250_000) -> Path:
    path = folder / "big_events.csv"
    if not path.exists():
        types = ("view", "click", "cart", "purchase")
        with open(path, "w", encoding="utf-8") as f:
            f.write("user_id,item_id,event_type,ts\n")
            for i in range(rows):
                f.write(f"k{i % 5003},K{i % 2011},{types[i % 4]},2011-{1 + i % 12:02d}-{1 + i % 28:02d} "
                        f"{i % 24:02d}:{i % 60:02d}:00\n")
    return path


def _held_import(ws: Path, src: Path, at: float):
    """Start ``import_file`` in a thread; it pauses at fraction ``at`` until ``release`` is set.

    Returns (thread, release, cancel, outcome); the thread is paused when this returns.
    """
    from merch_app.data.importer import import_file
    from merch_app.data.workspace import open_workspace
    from merch_app.jobs import CancelToken

    reached, release, cancel, outcome = threading.Event(), threading.Event(), CancelToken(), {}

    def progress(p):
        if p.fraction and p.fraction > at and not reached.is_set():
            reached.set()
            release.wait(120)

    def run():
        db = open_workspace(ws)
        try:
            outcome["result"] = import_file(db, src, progress=progress, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            outcome["error"] = exc
        finally:
            db.close()

    thread = threading.Thread(target=run)
    thread.start()
    if not reached.wait(300):
        raise RuntimeError("the import did not reach its pause point")
    return thread, release, cancel, outcome


def bench_import_cancel(folder: Path, repeat: int) -> dict:
    from merch_app.jobs import Cancelled

    src = _big_events(folder)
    times = []
    for n in range(repeat):
        thread, release, cancel, outcome = _held_import(folder / f"cancel{n}.merch.sqlite", src, 0.3)
        t0 = time.perf_counter()
        cancel.cancel()
        release.set()
        thread.join(300)
        times.append(time.perf_counter() - t0)
        assert isinstance(outcome.get("error"), Cancelled), outcome
    return {"times": times, "what": "250,000-event import cancelled at 30 %, until rolled back"}


def bench_wal_reads(folder: Path, repeat: int) -> dict:
    from merch_app.data.workspace import open_workspace

    src = _big_events(folder)
    times = []
    for n in range(repeat):
        ws = folder / f"wal{n}.merch.sqlite"
        thread, release, cancel, _ = _held_import(ws, src, 0.3)
        try:
            t0 = time.perf_counter()
            reader = open_workspace(ws)
            reader.execute("SELECT count(*) FROM events").fetchone()
            reader.execute("SELECT count(DISTINCT user_id) FROM events").fetchone()
            reader.execute("SELECT item_id FROM items_fts WHERE items_fts MATCH 'K1*'").fetchall()
            reader.close()
            times.append(time.perf_counter() - t0)
        finally:
            cancel.cancel()
            release.set()
            thread.join(300)
    return {"times": times, "what": "second connection: 2 counts + 1 FTS query during an open import"}


def bench_runner_shutdown(repeat: int) -> dict:
    from PySide6.QtWidgets import QApplication

    from merch_app.ui.workers import JobRunner

    app = QApplication.instance() or QApplication([])
    times = []
    for n in range(repeat):
        r = JobRunner(f"bench-{n}")
        running = threading.Event()

        def job(ctx):
            running.set()
            for _ in range(100_000):
                ctx.cancel.check()
                time.sleep(0.002)

        r.start(job)
        deadline = time.perf_counter() + 30
        while not running.is_set() and time.perf_counter() < deadline:
            app.processEvents()
            time.sleep(0.005)
        t0 = time.perf_counter()
        ok = r.shutdown(30)
        times.append(time.perf_counter() - t0)
        assert ok, "the runner did not stop"
    return {"times": times, "what": "job checking its cancel token every 2 ms"}


def render(results: dict, machine: dict, args) -> str:
    L = ["<!-- bench:limits -->", "## Former stopwatch tests (`benchmarks/bench_limits.py`)", "",
         "The tests prove these behaviours with bounded-work assertions; the times are measured here. "
         f"{machine_line(machine)}; load average {results['load']:.1f}; {args.repeat} repeat(s).", "",
         "Reproduce: `.venv/bin/python benchmarks/bench_limits.py` (`--quick` for a short run).", "",
         "| operation | what | best s | median s | former test limit | |", "|---|---|---:|---:|---:|---|"]
    for name, r in results["rows"].items():
        best, med = min(r["times"]), statistics.median(r["times"])
        ok = "✔" if med < LIMITS[name] else "✘"
        L.append(f"| `{name}` | {r['what']} | {best:.3f} | {med:.3f} | < {LIMITS[name]:g} s | {ok} |")
    L.append("<!-- /bench:limits -->")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k events for user_vectors, one repeat")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated names (e.g. huge_field,runner_shutdown)")
    ap.add_argument("--no-write", action="store_true", help="leave docs/benchmarks.md unchanged")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat = 1
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = only - set(LIMITS)
    if unknown:
        ap.error(f"unknown name(s) {', '.join(sorted(unknown))}; have {', '.join(LIMITS)}")
    machine = machine_info()
    os.environ.setdefault("MERCH_APP_HOME", tempfile.mkdtemp(prefix="bench-limits-home-"))
    rows: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-limits-") as tmp:
        folder = Path(tmp)
        jobs = {
            "user_vectors": lambda: bench_user_vectors(folder, 100_000 if args.quick else 400_000, args.repeat),
            "huge_field": lambda: bench_huge_field(folder, args.repeat),
            "import_cancel": lambda: bench_import_cancel(folder, args.repeat),
            "runner_shutdown": lambda: bench_runner_shutdown(args.repeat),
            "wal_reads": lambda: bench_wal_reads(folder, args.repeat),
        }
        for name, job in jobs.items():
            if only and name not in only:
                continue
            rows[name] = job()
            print(f"{name}: {', '.join(f'{t:.3f}' for t in rows[name]['times'])} s", flush=True)
    results = {"rows": rows, "load": load_average()}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "limits_results.json").write_text(json.dumps({**results, "machine": machine}, default=float))
    text = render(results, machine, args)
    print(text)
    if not args.no_write:
        write_section("limits", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

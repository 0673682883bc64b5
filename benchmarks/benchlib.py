"""Helpers shared by the scale, index and responsiveness benchmarks.

* :func:`machine_info` / :func:`machine_line`: CPU model, cores, RAM, library
  versions and the load average, printed next to every table;
* :func:`run_child`: run one job in a fresh child process and read its wall
  time, CPU time and peak RSS from ``os.wait4`` (the kernel's ``ru_maxrss``
  of that child alone, no psutil);
* :func:`write_section`: replace the ``<!-- bench:NAME -->`` section of
  docs/benchmarks.md, keeping every other section;
* :func:`percentiles`: p50/p99/max of a list of seconds, in ms.
"""
from __future__ import annotations

import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import merch_app  # noqa: E402,F401  (sets the app's OpenMP wait policy before torch/faiss load)

BENCH_DOC = ROOT / "docs" / "benchmarks.md"
OUT = ROOT / "benchmarks" / "out"
VENV_BIN = Path(sys.executable).parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_gib() -> float:
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        return kb / 1024 / 1024
    except (OSError, ValueError, IndexError):
        return float("nan")


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except ImportError:
        return "-"
    return str(getattr(mod, "__version__", "?"))


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def machine_info() -> dict[str, Any]:
    """The machine and the library versions (imports torch and faiss)."""
    return {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "mem_gib": _mem_gib(),
        "python": platform.python_version(), "numpy": np.__version__, "torch": _version("torch"),
        "faiss": _version("faiss"), "sqlite": sqlite3.sqlite_version, "load": load_average(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def machine_line(m: dict[str, Any]) -> str:
    """One sentence naming the machine (for the paragraph above a table)."""
    return (f"{m['cpu']}, {m['cores']} cores, {m['mem_gib']:.0f} GiB RAM, Python {m['python']}, "
            f"numpy {m['numpy']}, torch {m['torch']}, faiss {m['faiss']}, SQLite {m['sqlite']}; "
            f"{m['date']}")


def run_child(cmd: list[str], cwd: Path = ROOT, env: Optional[dict] = None,
              timeout_s: Optional[float] = None) -> dict[str, Any]:
    """Run ``cmd`` in a child process and measure it.

    Returns
    -------
    dict
        ``wall`` seconds, ``cpu`` (user + system seconds), ``rss_mib`` (the
        child's peak resident set, ``ru_maxrss`` from ``os.wait4``),
        ``stdout`` text and ``result``: the JSON object on the last stdout line
        starting with ``{`` (None if there is none).

    Raises
    ------
    RuntimeError
        The child failed or ran longer than ``timeout_s`` (it is killed).
    """
    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out_f, stderr=err_f, env=full_env)
        deadline = None if timeout_s is None else t0 + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise RuntimeError(f"{' '.join(cmd[:4])} ran longer than {timeout_s:.0f} s and was stopped")
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        out_f.seek(0)
        err_f.seek(0)
        out = out_f.read().decode(errors="replace")
        err = err_f.read().decode(errors="replace")
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed (exit {code}):\n{err[-3000:]}")
    result = None
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            break
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024.0,
            "stdout": out, "stderr": err, "result": result}


def peak_rss_mib() -> float:
    """This process's own peak RSS so far (VmHWM), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50, p90, p99 and max of ``seconds``, in milliseconds."""
    if not seconds:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
    a = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max()), "n": int(len(a))}


def write_section(name: str, text: str, path: Path = BENCH_DOC) -> None:
    """Replace (or append) the ``<!-- bench:name -->`` section of ``path``.

    ``text`` must start with ``<!-- bench:name -->`` and end with the closing marker.
    """
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    assert text.startswith(start) and text.rstrip().endswith(end), name
    doc = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    doc = pattern.sub(lambda _: text.rstrip(), doc) if pattern.search(doc) else \
        doc.rstrip("\n") + "\n\n" + text.rstrip() + "\n"
    tmp = path.with_name(f"{path.name}.{name}.tmp")
    tmp.write_text(doc, encoding="utf-8")
    os.replace(tmp, path)


def fmt_mib(mib: float) -> str:
    return f"{mib / 1024:.2f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def emit(result: dict[str, Any]) -> None:
    """Print the child's result as the last stdout line (read by :func:`run_child`)."""
    result = {**result, "peak_rss_mib_self": peak_rss_mib()}
    print(json.dumps(result, default=float), flush=True)


def paired_per_user(a, b) -> dict[str, Any]:
    """Paired test of ``b`` against ``a`` (one value per user): Δ, CI, randomisation and normal-approximation p.

    Returns
    -------
    dict
        ``delta``, ``ci``, ``p_rand`` (10,000 sign flips, seed 0), ``p_t`` and wins / losses / ties.
    """
    import math

    from merch_app.evaluation.compare import paired_test, wins_losses_ties

    a, b = np.asarray(a, float), np.asarray(b, float)
    t = paired_test(a, b, n_resamples=10000, seed=0)
    d = b - a
    sd = float(d.std(ddof=1))
    z = float(d.mean() / (sd / math.sqrt(len(d)))) if sd > 0 else 0.0
    return {"delta": t.mean_delta, "ci": t.ci_delta, "p_rand": t.p_value,
            "p_t": math.erfc(abs(z) / math.sqrt(2.0)) if sd > 0 else 1.0, **wins_losses_ties(a, b)}


def p_text(p: float) -> str:
    """A p-value for a table: four decimals, or ``< 0.0001``."""
    return f"{p:.4f}" if p >= 1e-4 else "< 0.0001"

"""Run every ``benchmarks/bench_*.py`` one after the other and summarise the goals.

``make bench`` calls this.  Each benchmark runs in its own process (never
two at once: they would measure each other), rewrites its own section of
docs/benchmarks.md (or docs/quality.md / docs/scaling.md) and can also be run
alone.  At the end the ``<!-- bench:summary -->`` section at the top of
docs/benchmarks.md is rewritten: the machine, the command, how long each
benchmark took, and every goal of the earlier issues with its measured value.

Usage::

    .venv/bin/python benchmarks/run_all.py [--quick] [--only scale,index] [--skip ray] [--no-write]

``--quick`` runs the small sizes (a few minutes); the full run takes 30-40
minutes on two cores, most of it the 1M-item / 10M-event scale benchmark.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchlib import BENCH_DOC, OUT, load_average, machine_info, machine_line, write_section  # noqa: E402

# name -> (full-run arguments, quick-run arguments, flag that keeps the docs unchanged)
KNOWN: dict[str, tuple[list[str], list[str], str]] = {
    "import": ([], ["--repeat", "1"], "--no-write"),
    "encode": ([], ["--limit", "1000", "--repeat", "1"], "--no-write"),
    "query": ([], ["--sizes", "10000,100000", "--queries", "100"], "--no-write"),
    "index": ([], ["--quick"], "--no-write"),
    "int8": ([], [], "--no-write"),
    "scale": ([], ["--quick"], "--no-write"),
    "responsiveness": ([], ["--quick"], "--no-write"),
    "map": ([], ["--frames", "20"], "--no-write"),
    "quality": ([], [], "--no-doc"),
    "ray": ([], ["--skip-train"], "--no-write"),
    "limits": ([], ["--quick"], "--no-write"),
}
NEEDS = {"ray": "ray"}  # optional extras: skipped (with a note) when not installed


def discover() -> list[str]:
    """Every bench_*.py, known ones in the order above (cheap and isolated first), then the rest."""
    found = sorted(p.stem[len("bench_"):] for p in (ROOT / "benchmarks").glob("bench_*.py"))
    return [n for n in KNOWN if n in found] + [n for n in found if n not in KNOWN]


def run_one(name: str, quick: bool, write: bool) -> dict:
    full, small, no_write = KNOWN.get(name, ([], [], "--no-write"))
    need = NEEDS.get(name)
    if need and importlib.util.find_spec(need) is None:
        print(f"== {name}: skipped ({need} is not installed; pip install 'merch_app[{need}]')", flush=True)
        return {"name": name, "status": f"skipped: {need} not installed", "seconds": 0.0}
    cmd = [sys.executable, str(ROOT / "benchmarks" / f"bench_{name}.py"), *(small if quick else full)]
    if not write:
        cmd.append(no_write)
    print(f"== {name}: {' '.join(cmd[1:])} (load {load_average():.1f})", flush=True)
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    seconds = time.perf_counter() - t0
    status = "ok" if rc == 0 else f"failed (exit {rc})"
    print(f"== {name}: {status} in {seconds:.0f} s", flush=True)
    return {"name": name, "status": status, "seconds": seconds, "load": load_average()}


def _doc() -> str:
    return BENCH_DOC.read_text(encoding="utf-8") if BENCH_DOC.exists() else ""


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


RSS_GOAL = "peak RSS < 3 GB (3 × 10⁹ bytes = 2,861 MiB) per job at 1M items / 10M events"


def goals() -> list[tuple[str, str, str]]:
    """(goal, measured, verdict) for every goal of the earlier issues, from this run's results."""
    out: list[tuple[str, str, str]] = []
    doc = _doc()
    m = re.search(r"\| merch_app `import_file` \(empty workspace\) \|[^|]*\|[^|]*\| ([0-9.]+)x", doc)
    out.append(("import ≥ 1.5× typed `sqlite-utils insert` (Online Retail)",
                f"{m.group(1)}×" if m else "not measured", "" if not m else ("✔" if float(m.group(1)) >= 1.5 else "✘")))
    for items, goal in (("100,000", 30), ("1,000,000", 60)):
        m = re.search(rf"\| {items} \| [a-z0-9]+ \| [^|]+ \| [^|]+ \| ([0-9.]+) \|", doc)
        out.append((f"query p99 ≤ {goal} ms at {items} items (`bench_query`, distinct queries)",
                    f"{m.group(1)} ms" if m else "not measured",
                    "" if not m else ("✔" if float(m.group(1)) <= goal else "✘")))
    scale = {r["name"]: r for r in _json(OUT / "scale" / "results.json").get("results", [])}
    for name, goal in (("100k", 30), ("1m", 60)):
        r = scale.get(name)
        if r:
            p99 = r["query"]["keystrokes"]["p99"]
            out.append((f"query p99 ≤ {goal} ms at {name} items (`bench_scale`, as you type, whole app path)",
                        f"{p99:.1f} ms", "✔" if p99 <= goal else "✘"))
    r = scale.get("1m")
    if r:
        worst = max((r[j]["rss_mib"], j) for j in ("import", "encode", "train", "query"))
        out.append((RSS_GOAL, f"max {worst[0]:,.0f} MiB = {worst[0] * 2**20 / 1e9:.2f} GB ({worst[1]})",
                    "✔" if worst[0] * 2**20 < 3e9 else "✘"))
    else:
        out.append((RSS_GOAL, "not measured (run without --quick)", ""))
    resp = _json(OUT / "responsiveness" / "results.json").get("phases", {})
    if resp:
        worst = max((p.get("app_max", p["max"]), n) for n, p in resp.items())
        raw = max((p["max"], n) for n, p in resp.items())
        extra = f"; with whole-machine pauses {raw[0]:.0f} ms ({raw[1]})" if raw[0] > worst[0] else ""
        out.append(("GUI event-loop stall ≤ 50 ms (import, encode, train, typing)",
                    f"max {worst[0]:.0f} ms ({worst[1]}){extra}", "✔" if worst[0] <= 50 else "✘"))
    return out


def render(runs: list[dict], machine: dict, quick: bool, total_s: float, only: str = "") -> str:
    if only or not runs:
        what = (f"`python benchmarks/run_all.py --only {only}`" if runs else "`python benchmarks/run_all.py --summary-only`")
        head = (f"Last summary written by {what} on {machine_line(machine)}; the other sections come from their "
                "own last runs (each gives its date and load). Reproduce everything with `make bench`.")
    else:
        cmd = "make bench" + (" (quick: `python benchmarks/run_all.py --quick`)" if quick else "")
        head = (f"Last full report run: `{cmd}` on {machine_line(machine)}; load average {machine['load']:.1f} at "
                f"the start (other jobs shared the machine: every table gives its own load). Total {total_s / 60:.0f} min.")
    L = ["<!-- bench:summary -->", "## Summary", "", head,
         "Every section below is rewritten by its own script, which also runs alone "
         "(`.venv/bin/python benchmarks/bench_NAME.py --help`).", "",
         "| goal | measured | |", "|---|---|---|"]
    L += [f"| {g} | {v} | {ok} |" for g, v, ok in goals()]
    if runs:
        L += ["", "| benchmark | status | minutes |", "|---|---|---:|"]
        L += [f"| `bench_{r['name']}.py` | {r['status']} | {r['seconds'] / 60:.1f} |" for r in runs]
    L.append("<!-- /bench:summary -->")
    return "\n".join(L)


def write_summary(text: str) -> None:
    doc = _doc() or "# Benchmarks\n"
    if "<!-- bench:summary -->" not in doc:  # goes first, right under the title
        head, _, rest = doc.partition("\n")
        BENCH_DOC.write_text(f"{head}\n\n{text}\n{rest}", encoding="utf-8")
    else:
        write_section("summary", text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    ap.add_argument("--only", default="", help="comma-separated benchmark names (e.g. scale,index)")
    ap.add_argument("--skip", default="", help="comma-separated benchmark names to leave out")
    ap.add_argument("--no-write", action="store_true", help="leave the docs unchanged")
    ap.add_argument("--summary-only", action="store_true", help="run nothing; rewrite the goals summary")
    args = ap.parse_args(argv)
    names = discover()
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    skip = {n.strip() for n in args.skip.split(",") if n.strip()}
    unknown = (only | skip) - set(names)
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; have {', '.join(names)}")
    names = [n for n in names if (not only or n in only) and n not in skip]
    machine = machine_info()
    t0 = time.perf_counter()
    runs = [] if args.summary_only else [run_one(n, args.quick, not args.no_write) for n in names]
    total = time.perf_counter() - t0
    text = render(runs, machine, args.quick, total, args.only)
    print(text)
    if not args.no_write:
        write_summary(text)
    return 0 if all(r["status"] == "ok" or r["status"].startswith("skipped") for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())

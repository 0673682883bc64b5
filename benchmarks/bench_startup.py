"""Cold start: wall time of one ``merch-app`` command in a fresh process, next to ``import torch``.

Every sample is a new Python process (``python -m merch_app ...``, the code
the ``merch-app`` script runs), timed from spawn to exit with ``os.wait4``;
the table gives the median of ``--repeat`` rounds.  Each round runs every row
once, in order, so a change in the machine's load hits all rows alike; the
reference ``python -c "import torch"`` is measured in the same rounds.

Rows: ``merch-app --help``; ``merch-app query`` on the demo workspace with a
trained model and without one (text-only ranking; the item vectors are
cached beforehand by ``merch-app encode``, as after any first query), each
*cached* (the same query text every time: its vector is in the workspace)
and *uncached* (a query text never seen before: the encoder loads);
``query --json``; ``merch-app explain`` (encodes the query with each word left
out, so it always loads the encoder).

``--before SRC`` measures a second source tree in the same rounds, e.g. the
last commit::

    mkdir -p /tmp/head && git archive HEAD | tar -x -C /tmp/head
    .venv/bin/python benchmarks/bench_startup.py --before /tmp/head

Each tree gets its own demo workspaces (built with its own code; setup time is
not measured).  The result replaces the ``<!-- bench:startup -->`` section of
docs/benchmarks.md.

Usage::

    .venv/bin/python benchmarks/bench_startup.py [--repeat 7] [--before SRC] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import OUT, ROOT, load_average, machine_info, machine_line, run_child, write_section  # noqa: E402

PY = sys.executable
QUERY = "red heart candle"
EXPLAIN_ITEM = "85123A"
# row key -> (label, goal in seconds or None)
ROWS: dict[str, tuple[str, Optional[float]]] = {
    "python": ('`python -c "pass"` (interpreter alone)', None),
    "torch": ('`python -c "import torch"` (reference)', None),
    "help": ("`merch-app --help`", 0.5),
    "query_cached": ("`merch-app query` cached, trained model", 2.0),
    "query_uncached": ("`merch-app query` uncached, trained model", 4.0),
    "query_json": ("`merch-app query --json` cached, trained model", 2.0),
    "text_cached": ("`merch-app query` cached, no model (text only)", 2.0),
    "text_uncached": ("`merch-app query` uncached, no model (text only)", 4.0),
    "explain": ("`merch-app explain` (always loads the encoder)", None),
}


class Tree:
    """One source tree under test and its demo workspaces."""

    def __init__(self, name: str, src: Path, work: Path) -> None:
        self.name, self.src, self.work = name, src, work
        self.env = {"PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "TOKENIZERS_PARALLELISM": "false"}
        self.trained = work / "trained.sqlite"
        self.text_only = work / "text_only.sqlite"
        self.seq = 0
        self.label = f"`{src}`"

    def app(self, *args: str, timeout_s: float = 900) -> dict:
        return run_child([PY, "-m", "merch_app", *args], cwd=self.work, env=self.env, timeout_s=timeout_s)

    def setup(self) -> None:
        """Demo import into both workspaces, a short training run in one, item vectors cached in the other."""
        t0 = time.perf_counter()
        for ws in (self.trained, self.text_only):
            self.app("demo", "-w", str(ws))
        self.app("train", "-w", str(self.trained), "--epochs", "3", timeout_s=3600)
        self.app("encode", "-w", str(self.text_only))
        for ws in (self.trained, self.text_only):  # the cached rows ask for a vector that is stored
            self.app("query", QUERY, "-w", str(ws), "--k", "10")
        print(f"[{self.name}] setup {time.perf_counter() - t0:.0f} s", flush=True)

    def new_query(self) -> str:
        self.seq += 1
        return f"{QUERY} {os.getpid()}x{self.seq}x{time.time_ns() % 10**9}"  # never seen before

    def command(self, key: str) -> list[str]:
        tr, to = str(self.trained), str(self.text_only)
        return {
            "help": ["--help"],
            "query_cached": ["query", QUERY, "-w", tr, "--k", "10"],
            "query_uncached": ["query", self.new_query(), "-w", tr, "--k", "10"],
            "query_json": ["query", QUERY, "-w", tr, "--k", "10", "--json"],
            "text_cached": ["query", QUERY, "-w", to, "--k", "10"],
            "text_uncached": ["query", self.new_query(), "-w", to, "--k", "10"],
            "explain": ["explain", QUERY, "--item", EXPLAIN_ITEM, "-w", tr],
        }[key]


def measure(trees: list[Tree], repeat: int) -> dict[str, dict[str, list[float]]]:
    """Wall seconds per tree and row: ``{tree: {row: [seconds, ...]}}``."""
    times: dict[str, dict[str, list[float]]] = {t.name: {k: [] for k in ROWS} for t in trees}
    for r in range(repeat):
        for key in ROWS:
            if key in ("python", "torch"):  # same interpreter for every tree: measured once per round
                code = "pass" if key == "python" else "import torch"
                wall = run_child([PY, "-c", code])["wall"]
                for t in trees:
                    times[t.name][key].append(wall)
                continue
            for t in trees:
                times[t.name][key].append(t.app(*t.command(key))["wall"])
        print(f"round {r + 1}/{repeat}: " + ", ".join(
            f"{k} {times[trees[0].name][k][-1]:.2f}" for k in ROWS), flush=True)
    return times


def render(times: dict[str, dict[str, list[float]]], trees: list[Tree], repeat: int, machine: dict,
           load_start: float, load_end: float) -> str:
    now = trees[0].name
    med = {t.name: {k: statistics.median(v) for k, v in times[t.name].items()} for t in trees}
    torch_s = med[now]["torch"]
    before = trees[1] if len(trees) > 1 else None
    head = "| command | median s | min–max s | × import torch | goal |"
    rule = "|---|---:|---:|---:|---|"
    if before is not None:
        head = "| command | median s | min–max s | × import torch | before: median s | goal |"
        rule = "|---|---:|---:|---:|---:|---|"
    lines = [
        "<!-- bench:startup -->",
        "## Cold start per command (`benchmarks/bench_startup.py`)",
        "",
        f"One fresh process per sample (`python -m merch_app ...`, what the `merch-app` script runs), spawn to "
        f"exit; median of {repeat} rounds, every row once per round so the reference `import torch` shares the "
        f"load of the commands.  Demo workspace (Online Retail subset, 2,910 items); the trained model is a "
        f"3-epoch `merch-app train`; the text-only workspace has its item vectors cached (`merch-app encode`).  "
        f"Cached = the same query text again (its vector is read from the workspace, the encoder never loads); "
        f"uncached = a text never seen before.  {machine_line(machine)}; load average {load_start:.1f} at the "
        f"start, {load_end:.1f} at the end (the goals are for an idle 2-core machine).",
        "",
        head,
        rule,
    ]
    for key, (label, goal) in ROWS.items():
        v = times[now][key]
        ratio = f"{med[now][key] / torch_s:.2f}" if key != "torch" else "1.00"
        mark = "" if goal is None else f"≤ {goal:g} s {'✔' if med[now][key] <= goal else '✘'}"
        cells = [label, f"{med[now][key]:.2f}", f"{min(v):.2f}–{max(v):.2f}", ratio]
        if before is not None:
            cells.append(f"{med[before.name][key]:.2f}")
        cells.append(mark)
        lines.append("| " + " | ".join(cells) + " |")
    if before is not None:
        lines += ["", f"Before = {before.label}, measured in the same rounds (its own demo workspaces)."]
    lines += ["", NOTES, "<!-- /bench:startup -->"]
    return "\n".join(lines)


NOTES = """What was profiled (`python -X importtime`, cProfile) and changed: (1) the command group imported
every command module at start-up, and with them torch (privacy and model commands), sqlite-utils and
pandas: `merch_app/cli/main.py` is a lazy group over a static table (name, module, short help), so
`--help` imports no command module and a command imports only its own. (2) The BERT encoder loaded at
construction through transformers' Auto classes; `import transformers` plus its BERT modeling module cost
about twice `import torch` (sympy, jinja2 and the hub client come with its model-loading code).  The
encoder now reads its id and size from `config.json` and the safetensors header without torch, loads its
weights on the first `encode`, and runs BERT folders on a plain-torch stack with the `tokenizers`
tokenizer (`merch_app/model/bert_torch.py`; hidden states equal to `transformers.BertModel`, fp32 and
int8, in tests); other model types still go through the Auto classes. (3) Query vectors persist in the
workspace's `embeddings` table (`merch_app/model/query_vectors.py`), so a repeated query never loads the
encoder. (4) sqlite-utils imported pandas (0.27 s) whenever it was installed; the workspace no longer uses
sqlite-utils. (5) Ranking imported torch (1.4 s of a 2.3 s cached query, `-X importtime`) through
`model.hybrid`, whose module held the training code: the fitting moved to `merch_app/model/hybrid_fit.py`
(`HybridTrainer`, imported only to train), so a cached query loads neither torch nor the encoder; an
uncached one pays `import torch` plus the encoder's weights once.  `explain` encodes the query with each
word left out and always loads the encoder."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Cold-start time per merch-app command")
    ap.add_argument("--repeat", type=int, default=7, help="Rounds (fresh processes per row and round).")
    ap.add_argument("--before", type=Path, default=None, help="A second source tree to measure alongside.")
    ap.add_argument("--before-name", default=None, help="How the table names it (default: its path).")
    ap.add_argument("--no-write", action="store_true", help="Print the section, leave docs/benchmarks.md alone.")
    args = ap.parse_args(argv)
    machine = machine_info()
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp:
        trees = [Tree("now", ROOT, Path(tmp) / "now")]
        if args.before is not None:
            trees.append(Tree("before", args.before.resolve(), Path(tmp) / "before"))
            trees[1].label = args.before_name or f"`{trees[1].src}`"
        for t in trees:
            t.work.mkdir(parents=True)
            t.setup()
        times = measure(trees, args.repeat)
    text = render(times, trees, args.repeat, machine, load_start, load_average())
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "startup_results.json").write_text(json.dumps({"times": times, "machine": machine}, default=float))
    if not args.no_write:
        write_section("startup", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

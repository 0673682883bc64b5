"""Fine-tuning time and memory at 20k and 200k pairs: the app's loop next to a plain transformers loop.

Protocol (seeded, every timed step in its own child process, peak RSS = the child's
``ru_maxrss`` from ``os.wait4`` via :func:`benchlib.run_child`):

1. Workspace (untimed setup): the full Online Retail file plus a synthetic search log of
   ``--sessions`` sessions (:mod:`synth_search_log`, log seed ``--log-seed``), built by
   :func:`bench_finetune.build` (the same workspace ``bench_finetune.py --full --sessions N`` uses);
   the frozen MiniLM item vectors are put in the workspace's embedding cache once.
2. Pairs, per size: what the fine-tuning job does before training —
   :func:`merch_app.model.finetune_pairs.training_pairs` (events before the default 80 % time split,
   ``max_pairs`` = the size, seed 42), the item text vectors from the cache, and
   :func:`merch_app.model.finetune_pairs.mine_hard_negatives` (1 per pair, query anchors encoded with
   the frozen encoder).  All pairs are trained on (no validation split: neither loop validates here).
   The pairs go to a pickle of plain tuples that both training children load, whole, into memory.
3. Training, per size, two children with the same pairs, batches (one seeded permutation), settings
   (:class:`merch_app.model.finetune.FinetuneConfig` defaults: batch 32, max length 32, lr 5e-5 with
   10 % linear warm-up then linear decay, AdamW weight decay 0.01, grad-norm clip 1.0, scale 20,
   embeddings + 3 lower layers frozen, 1 hard negative, seed 42) and torch threads:

   * ``app``: :func:`merch_app.model.finetune.fine_tune` (plain torch over
     :mod:`merch_app.model.bert_torch`), no validation;
   * ``plain``: ``transformers.AutoModel`` / ``AutoTokenizer`` of the same packaged folder
     (:func:`merch_app.model.bert_encoder.default_model_dir`, ``HF_HUB_OFFLINE=1``), ``model.train()``,
     mean pooling, and sentence-transformers' MultipleNegativesRankingLoss written out (anchors,
     positives and hard negatives each encoded in their own forward pass, cross-entropy over
     ``scale * cos`` against every positive and negative of the batch), ``get_linear_schedule_with_warmup``.

   Sizes up to ``--epoch-max`` pairs run one full epoch; bigger ones run ``--steps`` batches (the
   schedule still spans the whole epoch) and the epoch time is extrapolated from their rate.
4. Quiet machine: before every timed child the 1-minute load average must fall below ``--max-load``
   (polled every ``--poll`` s, at most ``--max-wait`` s, then the run goes ahead and the load is
   recorded); the load before, its mean and max during the run (5-s samples) and the child's CPU/wall
   ratio are in every record, and a child run while other jobs took about a core (mean load >=
   threads + ``--busy-load``) is run again (``--retries``; every attempt is in the JSON lines).
5. A change of the app's loop is measured in the same run with ``--loops app,app@REF,plain``:
   ``app@REF`` runs ``merch_app/model/finetune.py`` as committed at git ``REF`` (``git show``, read only).
6. ``--loops app,ray2``: ``ray2`` is the ray engine's data-parallel loop,
   :func:`merch_app.engines.ray_finetune.fine_tune_on_ray` with 2 Ray Train workers x 1 torch thread
   (a local Ray runtime of 2 CPUs started in the child).  With ``--steps`` it trains, as one epoch, the
   pairs of the app's first ``steps`` batches (the same seeded permutation), so both loops train the same
   pairs in as many steps.  Its loop time is rank 0's; its setup time is the rest of the child's call
   (Ray start, Ray Train's worker group, the workers loading the encoder); its peak RSS is the peak of the
   summed RSS of the child and every process under it (Ray's own processes and the workers, sampled every
   0.5 s), with the workers' share next to it, and its CPU/wall is the workers' CPU over rank 0's wall time.

Usage::

    python benchmarks/bench_finetune_scale.py            # 20k + 200k pairs, writes docs/benchmarks.md
    python benchmarks/bench_finetune_scale.py --quick    # demo workspace, tiny sizes, a few steps (smoke)
    python benchmarks/bench_finetune_scale.py --sizes 20000 --epoch-max 0 --steps 300 --threads 2 \
        --loops app,ray2 --pairs-from benchmarks/out/finetune_scale --out benchmarks/out/finetune_ray --no-write
    python benchmarks/bench_finetune_scale.py --tables   # the markdown of the last results file
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from benchlib import fmt_mib, machine_info, machine_line, run_child, write_section  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "finetune_scale"
SEED = 42


# ---------------------------------------------------------------------------------------------- children


def _rss_now_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def child_setup(spec: dict) -> dict:
    """Build (or open) the workspace and put the frozen item vectors in its embedding cache."""
    import bench_finetune
    from merch_app.model.encoder import workspace_encoder
    from merch_app.model.item_vectors import item_text_vectors

    db, _sessions = bench_finetune.build(spec["full"], spec["sessions"], spec["log_seed"])
    t = time.perf_counter()
    item_text_vectors(db, workspace_encoder(db, None, int8=False))
    return {"workspace": str(bench_finetune.workspace_path(spec["full"], spec["sessions"], spec["log_seed"])),
            "events": db.execute("SELECT count(*) FROM events").fetchone()[0],
            "searches": db.execute("SELECT count(*) FROM events WHERE event_type = 'search'").fetchone()[0],
            "items": db.execute("SELECT count(*) FROM items").fetchone()[0], "warm_s": time.perf_counter() - t}


def child_pairs(spec: dict) -> dict:
    """The job's pair phases for ``spec['size']`` pairs; writes them to ``spec['out']``."""
    from merch_app.data.workspace import open_workspace
    from merch_app.evaluation.split import time_split
    from merch_app.model.encoder import workspace_encoder
    from merch_app.model.finetune import FinetuneConfig
    from merch_app.model.finetune_pairs import mine_hard_negatives, training_pairs
    from merch_app.model.item_vectors import item_text_vectors

    cfg = FinetuneConfig(max_pairs=int(spec["size"]), seed=SEED)
    db = open_workspace(spec["workspace"])
    t0 = time.perf_counter()
    split = time_split(db, cfg.split_date)
    train_set = training_pairs(db, until_ts=split.split_ts, max_pairs=cfg.max_pairs, kinds=cfg.kinds, seed=cfg.seed)
    t1 = time.perf_counter()
    base = workspace_encoder(db, None, int8=False)
    item_ids, base_vectors = item_text_vectors(db, base)
    item_ids = [str(i) for i in item_ids]
    t2 = time.perf_counter()
    pairs = mine_hard_negatives(train_set.pairs, item_ids, base_vectors, base.encode, item_text=train_set.item_text,
                                per_pair=cfg.hard_negatives, seed=cfg.seed)
    t3 = time.perf_counter()
    rows = [(p.kind, p.anchor, p.item_id, p.weight, p.ts, p.anchor_items, p.negatives) for p in pairs]
    with open(spec["out"], "wb") as fh:
        pickle.dump({"pairs": rows, "item_text": train_set.item_text}, fh, protocol=pickle.HIGHEST_PROTOCOL)
    n_query_anchors = len({p.anchor for p in pairs if p.kind == "query"})
    return {"n_pairs": len(pairs), "counts": train_set.counts, "available": train_set.snapshot.get("available"),
            "events_read": train_set.snapshot.get("events"), "split_ts": split.split_ts,
            "n_query_anchors": n_query_anchors, "pairs_s": t1 - t0, "item_vectors_s": t2 - t1,
            "negatives_s": t3 - t2, "build_s": t3 - t0, "with_negatives": sum(1 for p in pairs if p.negatives)}


def _load_pairs(path: str) -> tuple[list[tuple], dict[str, str], float, float]:
    rss0 = _rss_now_mib()
    t = time.perf_counter()
    with open(path, "rb") as fh:
        data = pickle.load(fh)
    return data["pairs"], data["item_text"], time.perf_counter() - t, rss0


class _StepLimit:
    """A cancel token for :func:`fine_tune` that stops it after ``steps`` batches and times the loop.

    ``fine_tune`` checks the token once before its loop and once before every batch."""

    def __init__(self, steps) -> None:
        self.steps, self.checks, self.t_start, self.t_stop = steps, 0, None, None

    def check(self) -> None:
        from merch_app.jobs import Cancelled

        self.checks += 1
        if self.checks == 1:
            self.t_start = time.perf_counter()
        elif self.steps is not None and self.checks == self.steps + 1:
            self.t_stop = time.perf_counter()
            raise Cancelled("step limit")


def _finetune_module(ref):
    """:mod:`merch_app.model.finetune` of the work tree, or as committed at git ``ref`` (read with
    ``git show``, loaded under another name: the loop before a change, measured in the same run)."""
    if not ref:
        from merch_app.model import finetune

        return finetune
    import importlib.util
    import subprocess
    import tempfile

    source = subprocess.run(["git", "show", f"{ref}:merch_app/model/finetune.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "finetune_at_ref.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("finetune_at_ref", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def child_app(spec: dict) -> dict:
    """The app's loop: :func:`merch_app.model.finetune.fine_tune` on the pickled pairs."""
    import torch

    from merch_app.jobs import Cancelled
    from merch_app.model.finetune_pairs import Pair

    module = _finetune_module(spec.get("ref"))
    FinetuneConfig, fine_tune = module.FinetuneConfig, module.fine_tune

    torch.set_num_threads(int(spec["threads"]))
    rows, item_text, load_s, rss0 = _load_pairs(spec["pairs"])
    pairs = [Pair(*r) for r in rows]
    del rows
    rss_pairs = _rss_now_mib()
    cfg = FinetuneConfig.from_dict({**spec["config"], "max_pairs": len(pairs)})
    token = _StepLimit(spec["steps"])
    t0 = time.perf_counter()
    losses: list[float] = []
    try:
        run = fine_tune(Path(spec["base_dir"]), pairs, item_text, cfg, cancel=token)
        t_end = time.perf_counter()
        steps = run.steps
        losses = [h["loss"] for h in run.history if "loss" in h]
    except Cancelled:
        t_end = token.t_stop
        steps = int(spec["steps"])
    n_trained = min(len(pairs), steps * int(cfg.batch_size))
    loop_s = t_end - token.t_start
    return {"loop": "app", "ref": spec.get("ref"), "n_pairs_held": len(pairs), "steps": steps, "pairs_trained": n_trained,
            "setup_s": token.t_start - t0, "loop_s": loop_s, "pairs_load_s": load_s,
            "rss_before_pairs_mib": rss0, "rss_with_pairs_mib": rss_pairs, "threads": torch.get_num_threads(),
            "final_loss": (sum(losses[-20:]) / len(losses[-20:])) if losses else None}


def _mean_pool(hidden, mask):
    import torch.nn.functional as F

    m = mask.unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9), p=2, dim=1)


def child_plain(spec: dict) -> dict:
    """A plain Hugging Face transformers loop (no merch_app code) on the pickled pairs."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

    cfg = spec["config"]
    torch.set_num_threads(int(spec["threads"]))
    rows, item_text, load_s, rss0 = _load_pairs(spec["pairs"])
    rss_pairs = _rss_now_mib()
    t0 = time.perf_counter()
    torch.manual_seed(int(cfg["seed"]))
    rng = np.random.default_rng(int(cfg["seed"]))
    tok = AutoTokenizer.from_pretrained(spec["base_dir"], local_files_only=True)
    model = AutoModel.from_pretrained(spec["base_dir"], local_files_only=True)
    if cfg["freeze_embeddings"]:
        model.embeddings.requires_grad_(False)
    layers = model.encoder.layer
    for layer in layers[: max(0, min(int(cfg["freeze_layers"]), len(layers) - 1))]:
        layer.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    batch_size, n = int(cfg["batch_size"]), len(rows)
    total = math.ceil(n / batch_size) * int(cfg["epochs"])
    scheduler = get_linear_schedule_with_warmup(optimizer, max(1, int(round(float(cfg["warmup"]) * total))), total)
    max_length, scale, n_neg = int(cfg["max_length"]), float(cfg["scale"]), int(cfg["hard_negatives"])

    def embed(texts):
        batch = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return _mean_pool(model(**batch).last_hidden_state, batch["attention_mask"])

    model.train()
    limit = spec["steps"]
    step, losses = 0, []
    t_start = time.perf_counter()
    for _epoch in range(int(cfg["epochs"])):
        order = rng.permutation(n)  # the app's batches: same seed, same pairs, same order
        for start in range(0, n, batch_size):
            if limit is not None and step >= limit:
                break
            batch = [rows[i] for i in order[start:start + batch_size]]
            if len(batch) < 2:
                continue
            anchors = embed([r[1] for r in batch])
            cands = [embed([item_text[r[2]] for r in batch])]
            negs = [x for r in batch for x in r[6][:n_neg] if x in item_text]
            if negs:
                cands.append(embed([item_text[x] for x in negs]))
            scores = scale * anchors @ torch.cat(cands).T
            loss = F.cross_entropy(scores, torch.arange(len(batch)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(float(loss.detach()))
    t_end = time.perf_counter()
    return {"loop": "plain", "n_pairs_held": n, "steps": step, "pairs_trained": min(n, step * batch_size),
            "setup_s": t_start - t0, "loop_s": t_end - t_start, "pairs_load_s": load_s,
            "rss_before_pairs_mib": rss0, "rss_with_pairs_mib": rss_pairs, "threads": torch.get_num_threads(),
            "final_loss": (sum(losses[-20:]) / len(losses[-20:])) if losses else None,
            "transformers": transformers.__version__, "attn": model.config._attn_implementation}


class _TreeRss:
    """Samples the summed RSS of this process and all its descendants (Ray's processes too) every 0.5 s."""

    def __init__(self) -> None:
        self.peak = self.workers_peak = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _sample(root: int) -> tuple[float, float]:
        children: dict[int, list[int]] = {}
        rss: dict[int, float] = {}
        workers: set[int] = set()
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                kb = next((int(x.split()[1]) for x in (d / "status").read_text().splitlines()
                           if x.startswith("VmRSS:")), 0)
                if (d / "cmdline").read_bytes().startswith(b"ray::RayTrainWorker"):
                    workers.add(int(d.name))
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
            rss[int(d.name)] = kb / 1024.0
        tree, todo = set(), [root]
        while todo:
            pid = todo.pop()
            tree.add(pid)
            todo.extend(children.get(pid, []))
        return sum(rss.get(p, 0.0) for p in tree), sum(rss.get(p, 0.0) for p in tree & workers)

    def _loop(self) -> None:
        while True:
            total, workers = self._sample(os.getpid())
            self.peak, self.workers_peak = max(self.peak, total), max(self.workers_peak, workers)
            if self._done.wait(0.5):
                return

    def __enter__(self) -> "_TreeRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def child_ray(spec: dict) -> dict:
    """The ray engine's loop: :func:`merch_app.engines.ray_finetune.fine_tune_on_ray`, 2 workers x 1 thread."""
    import numpy as np

    from merch_app.engines.ray_finetune import fine_tune_on_ray
    from merch_app.model.finetune import FinetuneConfig, usable_pairs
    from merch_app.model.finetune_pairs import Pair

    workers = int(spec.get("workers", 2))
    with _TreeRss() as rss:
        rows, item_text, load_s, rss0 = _load_pairs(spec["pairs"])
        pairs = usable_pairs([Pair(*r) for r in rows], item_text)  # what fine_tune permutes
        del rows
        rss_pairs = _rss_now_mib()
        n_held = len(pairs)
        cfg = FinetuneConfig.from_dict({**spec["config"], "max_pairs": n_held})
        if spec["steps"] is not None:  # the pairs of the app's first ``steps`` batches, as one epoch
            order = np.random.default_rng(int(cfg.seed)).permutation(n_held)
            pairs = [pairs[i] for i in order[: int(spec["steps"]) * int(cfg.batch_size)]]
        stats: dict = {}
        t0 = time.perf_counter()
        run = fine_tune_on_ray(Path(spec["base_dir"]), pairs, item_text, cfg, workers=workers, num_cpus=workers,
                               stats=stats)
        call_s = time.perf_counter() - t0
    losses = [h["loss"] for h in run.history if "loss" in h]
    return {"loop": "ray", "workers": stats["workers"], "n_pairs_held": n_held, "steps": run.steps,
            "pairs_trained": stats["pairs_trained"], "setup_s": call_s - stats["loop_seconds"],
            "loop_s": stats["loop_seconds"], "pairs_load_s": load_s, "rss_before_pairs_mib": rss0,
            "rss_with_pairs_mib": rss_pairs, "threads": stats["threads"],
            "final_loss": (sum(losses[-20:]) / len(losses[-20:])) if losses else None,
            "tree_peak_rss_mib": rss.peak, "workers_peak_rss_mib": rss.workers_peak,
            "cpu_ratio": stats["cpu_seconds"] / stats["fit_seconds"] if stats["fit_seconds"] > 0 else None}


CHILDREN = {"setup": child_setup, "pairs": child_pairs, "app": child_app, "plain": child_plain, "ray2": child_ray}


# ---------------------------------------------------------------------------------------------- parent


def wait_quiet(max_load: float, poll: float, max_wait: float) -> dict:
    """Wait until the 1-minute load average is below ``max_load`` (at most ``max_wait`` s)."""
    t0 = time.monotonic()
    load = os.getloadavg()[0]
    while load >= max_load and time.monotonic() - t0 < max_wait:
        print(f"  load {load:.2f} >= {max_load}: waiting ({time.monotonic() - t0:.0f} s so far)",
              file=sys.stderr, flush=True)
        time.sleep(poll)
        load = os.getloadavg()[0]
    return {"load_before": load, "waited_s": time.monotonic() - t0, "quiet": load < max_load}


def _measure(cmd: list[str]) -> tuple[dict, list[float]]:
    """:func:`run_child` while a thread samples the 1-minute load average every 5 s."""
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(5.0):
            samples.append(os.getloadavg()[0])

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        return run_child(cmd), samples
    finally:
        done.set()
        thread.join()


def timed(args, kind: str, spec: dict, results: Path, label: dict) -> dict:
    """Run one child after waiting for a quiet machine; append its record to ``results``.

    A run during which the load stayed high (mean sampled load >= torch threads + ``--busy-load``:
    other jobs took about a core) is run again, at most ``--retries`` times; every attempt is recorded.
    """
    for attempt in range(1, int(args.retries) + 2):
        quiet = wait_quiet(args.max_load, args.poll, args.max_wait)
        child, _, ref = kind.partition("@")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", child, "--spec",
               json.dumps({**spec, "ref": ref or None})]
        m, samples = _measure(cmd)
        load_mean = sum(samples) / len(samples) if samples else os.getloadavg()[0]
        busy = load_mean >= args.threads + args.busy_load
        rec = {"kind": kind, **label, **quiet, "load_after": os.getloadavg()[0], "load_mean": load_mean,
               "load_max": max(samples, default=load_mean), "busy": busy, "attempt": attempt,
               "wall_s": m["wall"], "cpu_s": m["cpu"], "peak_rss_mib": m["rss_mib"], **(m["result"] or {}),
               "date": time.strftime("%Y-%m-%d %H:%M")}
        with open(results, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, default=float) + "\n")
        print(json.dumps({k: rec[k] for k in rec if k not in ("available", "counts")}, default=float), flush=True)
        if not busy:
            break
        print(f"  {kind} {label}: mean load {load_mean:.2f} during the run: again", file=sys.stderr, flush=True)
    return rec


def run(args) -> list[dict]:
    from merch_app.model.bert_encoder import default_model_dir
    from merch_app.model.finetune import FinetuneConfig

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    results.unlink(missing_ok=True)
    machine = machine_info()
    header = {"kind": "run", "machine": machine_line(machine), "machine_info": machine, "argv": sys.argv[1:],
              "sizes": args.sizes, "loops": args.loops, "steps": args.steps, "epoch_max": args.epoch_max, "threads": args.threads,
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "full": not args.quick,
              "sessions": args.sessions, "log_seed": args.log_seed, "max_load": args.max_load}
    setup = run_child([sys.executable, str(Path(__file__).resolve()), "--child", "setup", "--spec",
                       json.dumps({"full": not args.quick, "sessions": args.sessions, "log_seed": args.log_seed})])
    header["workspace"] = setup["result"]
    with open(results, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(header, default=float) + "\n")
    print(json.dumps(header["workspace"]), flush=True)
    config = {**FinetuneConfig().to_dict(), "seed": SEED}
    base_dir = str(default_model_dir())
    records = [header]
    for size in args.sizes:
        pairs_file = (args.pairs_from or out) / f"pairs_{size}.pkl"
        if args.pairs_from is None:
            records.append(timed(args, "pairs", {"workspace": setup["result"]["workspace"], "size": size,
                                                 "out": str(pairs_file)}, results, {"size": size}))
        steps = None if size <= args.epoch_max else args.steps
        for loop in args.loops:
            records.append(timed(args, loop, {"pairs": str(pairs_file), "config": config, "base_dir": base_dir,
                                              "steps": steps, "threads": args.threads},
                                 results, {"size": size, "mode": "epoch" if steps is None else f"{steps} steps"}))
    return records


def _epoch_s(r: dict, batch: int) -> float:
    """Seconds of one epoch: measured, or extrapolated from the steps run (setup + rate x all steps)."""
    if r["mode"] == "epoch":
        return r["setup_s"] + r["loop_s"]
    return r["setup_s"] + r["loop_s"] / r["steps"] * math.ceil(r["n_pairs_held"] / batch)


def _load(r: dict) -> str:
    text = f"{r['load_before']:.2f} / {r.get('load_mean', float('nan')):.2f} / {r.get('load_max', float('nan')):.2f}"
    if not r.get("quiet", True):
        text += " (never quiet)"
    if r.get("busy"):
        text += " (busy)"
    return text


def _final(records: list[dict], kinds: tuple[str, ...]) -> list[dict]:
    """The last attempt of every (kind, size), in run order."""
    last: dict[tuple, dict] = {}
    for r in records:
        if r["kind"] in kinds:
            last[(r["kind"], r["size"])] = r
    return list(last.values())


def _discarded(records: list[dict]) -> list[str]:
    """The busy attempts that a later attempt replaced."""
    final = {(r["kind"], r["size"]): r for r in records if r["kind"] != "run"}
    out = []
    for r in records:
        if r["kind"] != "run" and final[(r["kind"], r["size"])] is not r:
            rate = (f"{r['pairs_trained'] / r['loop_s']:.1f} pairs/s" if "loop_s" in r
                    else f"{r.get('build_s', float('nan')):.1f} s")
            out.append(f"{r['kind']} {r['size']:,} attempt {r['attempt']} (mean load {r['load_mean']:.2f}, {rate})")
    return out


def _train_row(r: dict, name: str, batch: int) -> str:
    epoch = _epoch_s(r, batch)
    epoch_txt = f"{epoch:.0f}" if r["mode"] == "epoch" else f"{epoch:.0f} (extrapolated)"
    peak = f"**{fmt_mib(r['peak_rss_mib'])}**"
    if "tree_peak_rss_mib" in r:  # Ray: every process of the run, the workers' share in brackets
        peak = f"**{fmt_mib(r['tree_peak_rss_mib'])}** ({fmt_mib(r['workers_peak_rss_mib'])} workers)"
    cpu = r["cpu_ratio"] if r.get("cpu_ratio") is not None else r["cpu_s"] / r["wall_s"]
    return (f"| {r['n_pairs_held']:,} | {r['mode']} | {name} | {r['steps']} | {r['loop_s']:.1f} | "
            f"**{r['pairs_trained'] / r['loop_s']:.1f}** | {r['setup_s']:.1f} | {epoch_txt} | {r['wall_s']:.1f} | "
            f"{peak} | {fmt_mib(r['rss_with_pairs_mib'])} | {cpu:.2f} | {_load(r)} |")


def _loop_name(kind: str) -> str:
    if kind == "plain":
        return "plain transformers"
    if kind == "ray2":
        return "ray engine, 2 workers × 1 thread (`fine_tune_on_ray`)"
    if kind.startswith("app@"):
        return f"app as of `{kind[4:]}` (before the change)"
    return "app (`finetune.fine_tune`)"


def tables(records: list[dict]) -> str:
    """Markdown: pair building per size, then training per size (app, app at a git ref, plain)."""
    header = next(r for r in records if r["kind"] == "run")
    batch = 32
    lines = ["| pairs | query / item / history | distinct queries encoded | pair building s (pairs + item vectors + hard negatives) "
             "| peak RSS | CPU/wall | load before / mean / max |", "|---:|---|---:|---|---:|---:|---|"]
    for r in _final(records, ("pairs",)):
        c = r["counts"]
        lines.append(f"| {r['n_pairs']:,} | {c['query']:,} / {c['item']:,} / {c['history']:,} | {r['n_query_anchors']:,} | "
                     f"**{r['build_s']:.1f}** ({r['pairs_s']:.1f} + {r['item_vectors_s']:.1f} + {r['negatives_s']:.1f}) | "
                     f"{fmt_mib(r['peak_rss_mib'])} | {r['cpu_s'] / r['wall_s']:.2f} | {_load(r)} |")
    lines += ["", "| pairs | run | loop | steps | loop s | pairs/s | setup s | epoch s | child wall s | peak RSS "
              "| RSS with pairs loaded | CPU/wall | load before / mean / max |",
              "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    kinds = tuple(dict.fromkeys(r["kind"] for r in records if r["kind"] not in ("run", "pairs")))
    train = _final(records, kinds)
    for size in sorted({r["size"] for r in train}):
        for r in (x for x in train if x["size"] == size):
            lines.append(_train_row(r, _loop_name(r["kind"]), batch))
    ratios = []
    for size in sorted({r["size"] for r in train}):
        a = next((r for r in train if r["size"] == size and r["kind"] == "app"), None)
        p = next((r for r in train if r["size"] == size and r["kind"] == "plain"), None)
        if a and p:
            ra, rp = a["pairs_trained"] / a["loop_s"], p["pairs_trained"] / p["loop_s"]
            text = (f"{size:,} pairs: app {ra / rp:.2f}× the plain loop's pairs/s, peak RSS "
                    f"{fmt_mib(a['peak_rss_mib'])} vs {fmt_mib(p['peak_rss_mib'])}")
            o = next((r for r in train if r["size"] == size and r["kind"].startswith("app@")), None)
            if o:
                ro = o["pairs_trained"] / o["loop_s"]
                text += (f"; the change: app {ra / ro:.2f}× its pairs/s as of `{o['kind'][4:]}` "
                         f"({ro:.1f} → {ra:.1f}), peak RSS {fmt_mib(o['peak_rss_mib'])} → {fmt_mib(a['peak_rss_mib'])}")
            ratios.append(text)
        g = next((r for r in train if r["size"] == size and r["kind"] == "ray2"), None)
        if a and g:
            ra, rg = a["pairs_trained"] / a["loop_s"], g["pairs_trained"] / g["loop_s"]
            ratios.append(f"{size:,} pairs: ray engine (2 workers × 1 thread) {rg / ra:.2f}× the app's pairs/s "
                          f"({a['threads']} threads; {ra:.1f} → {rg:.1f}), peak RSS {fmt_mib(a['peak_rss_mib'])} → "
                          f"{fmt_mib(g['tree_peak_rss_mib'])} (all Ray processes), setup {a['setup_s']:.0f} s → "
                          f"{g['setup_s']:.0f} s")
    if ratios:
        lines += ["", "Ratios: " + "; ".join(ratios) + "."]
    gone = _discarded(records)
    if gone:
        lines += ["", "Repeated because the machine was busy during the run (not in the tables): " + "; ".join(gone) + "."]
    ray_note = " (the ray engine's workers: 1 each)" if "ray2" in kinds else ""
    lines += ["", f"Machine: {header['machine']}; torch threads {header['threads']}{ray_note}, "
              f"OMP_WAIT_POLICY={header['omp_wait_policy']} in every child."]
    return "\n".join(lines)


def doc_section(records: list[dict], argv: str, note: str = "") -> str:
    header = next(r for r in records if r["kind"] == "run")
    ws = header["workspace"]
    first = next((r for r in records if r["kind"] == "pairs"), {})
    plain = next((r for r in records if r["kind"] == "plain"), {})
    return "\n".join([
        "<!-- bench:finetune_scale -->",
        "## Fine-tuning at 20k and 200k pairs: the app's loop vs a plain transformers loop (`benchmarks/bench_finetune_scale.py`)",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_finetune_scale.py{(' ' + argv) if argv else ''}`. "
        f"Workspace: the full Online Retail file plus {header['sessions']:,} synthetic search sessions "
        f"(`synth_search_log`, log seed {header['log_seed']}; {ws['items']:,} items, {ws['events']:,} events, "
        f"{ws['searches']:,} searches; the same build as `bench_finetune.py --full --sessions {header['sessions']}`); "
        f"pairs from the events before the default 80 % split ({first.get('split_ts', '?')[:10]}), built the job's way "
        "(`training_pairs` with `max_pairs` = the size, seed 42, search pairs first; frozen item vectors from the "
        "embedding cache; `mine_hard_negatives`, 1 per pair) and all of them trained on (no validation: neither loop "
        "validates here). Training: the job's defaults (`FinetuneConfig`: batch 32, max length 32, lr 5e-5 with 10 % "
        "warm-up then linear decay, AdamW decay 0.01, clip 1.0, scale 20, embeddings + 3 lower layers frozen, "
        "1 hard negative, seed 42), the same pairs in the same seeded batch order for both loops; *app* = "
        "`merch_app.model.finetune.fine_tune` (plain torch over `bert_torch`), *plain* = `transformers.AutoModel` of "
        f"the packaged all-MiniLM-L6-v2 folder (transformers {plain.get('transformers', '?')}, attention "
        f"`{plain.get('attn', '?')}`, `model.train()`), mean pooling and sentence-transformers' "
        "MultipleNegativesRankingLoss written out (anchors, positives, negatives in three forward passes; no "
        "weights, no masking). Each step in its own child process, both training loops in the same run; peak RSS "
        "is the child's `ru_maxrss`; every child holds all its pairs in memory (pickled plain tuples; the app "
        "child turns them into `Pair` objects as the job holds them). Up to "
        f"{header['epoch_max']:,} pairs one full epoch; above, {header['steps']} batches and the epoch time "
        "*extrapolated* (setup + mean step time × steps per epoch). Before every timed child the 1-minute load "
        f"average had to drop below {header['max_load']} (polled every 30 s, 40 min at most); the load is given "
        "before each child and as the mean / max of 5-s samples during it (these include the child's own two "
        "threads); a child whose mean load reached threads + 1 (another job took about a core) was run again, "
        "at most twice. CPU/wall near 2 means the child kept both cores busy.",
        "",
        f"Machine: {header['machine']}.",
        "",
        tables(records),
        *([""] + [note] if note else []),
        "<!-- /bench:finetune_scale -->",
    ])


def _command(argv: list[str]) -> str:
    """The run's arguments without ``--note`` (prose, not part of the command)."""
    shown, skip = [], False
    for a in argv:
        if skip or a == "--note" or a.startswith("--note="):
            skip = a == "--note"
            continue
        shown.append(a)
    return " ".join(shown)


def _read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sizes", default="20000,200000", help="pair counts, comma separated")
    ap.add_argument("--steps", type=int, default=300, help="batches run at sizes above --epoch-max")
    ap.add_argument("--epoch-max", type=int, default=20000, help="sizes up to this run one full epoch")
    ap.add_argument("--sessions", type=int, default=250000, help="synthetic search sessions in the workspace")
    ap.add_argument("--log-seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads in both loops")
    ap.add_argument("--loops", default="app,plain",
                    help="training loops: app, plain, app@REF (the app's finetune.py as of git REF, read with git show), "
                         "ray2 (the ray engine, 2 workers x 1 thread)")
    ap.add_argument("--max-load", type=float, default=0.7)
    ap.add_argument("--poll", type=float, default=30.0)
    ap.add_argument("--max-wait", type=float, default=2400.0)
    ap.add_argument("--busy-load", type=float, default=1.0,
                    help="a run is repeated when its mean load was at least torch threads + this")
    ap.add_argument("--retries", type=int, default=2, help="repeats of a run made on a busy machine")
    ap.add_argument("--note", default="", help="a sentence for the docs section (why the loops differ)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: demo workspace, 3,000 sessions, 300 and 1,200 pairs, 5 steps, no load wait, no docs")
    ap.add_argument("--no-write", action="store_true", help="do not rewrite the docs/benchmarks.md section")
    ap.add_argument("--tables", action="store_true", help="print the markdown of the last results file")
    ap.add_argument("--write-doc", action="store_true",
                    help="with --tables: rewrite the docs/benchmarks.md section from that file (and --note)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--pairs-from", type=Path, help="reuse the pairs_SIZE.pkl of an earlier run's --out (no pair step)")
    ap.add_argument("--child", choices=sorted(CHILDREN))
    ap.add_argument("--spec", help="child settings (JSON)")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](json.loads(args.spec)), default=float), flush=True)
        return
    if args.quick:
        args.sizes, args.steps, args.epoch_max, args.sessions = "300,1200", 5, 300, 3000
        args.max_wait, args.no_write, args.retries = 0.0, True, 0
        args.out = args.out / "quick"
    args.sizes = [int(x) for x in str(args.sizes).split(",") if x.strip()]
    args.loops = [x.strip() for x in args.loops.split(",") if x.strip()]
    if args.tables:
        records = _read(args.out / "results.jsonl")
        print(tables(records))
        if args.write_doc:
            header = next(r for r in records if r["kind"] == "run")
            write_section("finetune_scale", doc_section(records, _command(header["argv"]), args.note))
        return
    records = run(args)
    text = tables(records)
    (args.out / "table.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    if not args.no_write:
        write_section("finetune_scale", doc_section(records, _command(sys.argv[1:]), args.note))


if __name__ == "__main__":
    main()

"""Fine-tuning the BERT text encoder on Ray Train: data-parallel on CPU (gloo), N workers, one loss.

Every worker runs :class:`merch_app.model.finetune.FinetuneLoop`, the loop of local
fine-tuning (same pairs, same seeded batch order, schedule, clipping, validation and
choice of the best weights); only the encoding of a step is split (:class:`ShardedFinetuneLoop`):

* worker r encodes the anchors, positives and hard negatives of its slice of the step's
  pairs (pairs ``r * b // N`` to ``(r + 1) * b // N`` of the step's ``b``);
* the vectors are gathered *with their gradients*
  (``torch.distributed.nn.functional.all_gather``), so every worker scores each anchor
  against all of the batch's positives and hard negatives: the loss is the loss of the
  whole batch, the same number local fine-tuning computes, not a mean of per-shard losses;
* the gather's backward sums the gradient of every worker's (identical) loss, so a worker
  holds N times its slice's share of the batch gradient; the gradients are summed over
  the workers and divided by N, giving every worker the gradient of the whole batch, and
  the parameters stay identical (checked at the end).

Rank 0 runs the validation, reports progress through a
:class:`~merch_app.engines.ray_jobs.ProgressChannel` and writes the weights (safetensors)
and the run's history as the Ray Train checkpoint; the driver builds the
:class:`~merch_app.model.finetune.FinetuneRun` from it, which the fine-tuning use case
saves like a local run.  The base folder must exist on every node (as for encoding on Ray).
"""
from __future__ import annotations

import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch.distributed.nn.functional import all_gather

from merch_app.engines.ray_jobs import agreed_cancel, check_in_sync, rank0_reporting, run_torch_job, sum_over_workers
from merch_app.engines.ray_runtime import cluster_cpus, ray_errors, ray_session
from merch_app.jobs import CancelToken, ProgressCallback
from merch_app.model.finetune import (
    FinetuneConfig, FinetuneLoop, FinetuneRun, Validator, base_config, usable_pairs,
)
from merch_app.model.finetune_pairs import Pair

WEIGHTS_FILE = "model.safetensors"
RUN_FILE = "run.json"
CPUS_PER_WORKER = 1  # one torch thread per worker: N workers use N cores


class ShardedFinetuneLoop(FinetuneLoop):
    """:class:`FinetuneLoop` whose steps are encoded data-parallel over a torch process group.

    Parameters
    ----------
    base_dir, pairs, item_text, cfg
        As for :func:`merch_app.model.finetune.fine_tune` (the same on every worker).
    rank, world
        This worker and the number of workers.
    cancel_requested
        Rank 0: callable telling whether the driver asked to cancel.
    """

    def __init__(self, base_dir: Path, pairs: Sequence[Pair], item_text: dict[str, str], cfg: FinetuneConfig, *,
                 rank: int, world: int, cancel_requested=None) -> None:
        super().__init__(base_dir, pairs, item_text, cfg)
        self.rank, self.world = int(rank), int(world)
        self._cancel_requested = cancel_requested
        self.dim = int(self.stack.embeddings.word_embeddings.embedding_dim)

    def _bounds(self, b: int) -> list[int]:
        return [r * b // self.world for r in range(self.world + 1)]

    def encode_step(self, batch: Sequence[Pair], negs: Sequence[str]) -> torch.Tensor:
        """This worker's slice encoded, every worker's slice gathered (with gradients), in local row order."""
        bounds = self._bounds(len(batch))
        shares = [batch[bounds[r]:bounds[r + 1]] for r in range(self.world)]
        share_negs = [self.step_negatives(s) for s in shares]
        rows = [2 * len(s) + len(n) for s, n in zip(shares, share_negs)]
        mine = shares[self.rank]
        if rows[self.rank]:
            local = self.encode_texts(self.step_texts(mine, share_negs[self.rank]))
        else:  # more workers than pairs: still part of the gather (and of its backward)
            local = torch.zeros((0, self.dim), requires_grad=True)
        pad = max(rows) - rows[self.rank]
        if pad:
            local = torch.cat([local, local.new_zeros((pad, self.dim))])
        gathered = all_gather(local)
        anchors, positives, negatives = [], [], []
        for g, s, n in zip(gathered, shares, share_negs):
            anchors.append(g[:len(s)])
            positives.append(g[len(s):2 * len(s)])
            negatives.append(g[2 * len(s):2 * len(s) + len(n)])
        return torch.cat(anchors + positives + negatives)

    def sync_gradients(self) -> None:
        """Sum the gradients over the workers and divide by N (see the module docstring)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p in self.params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p)
            offset += n

    def check_cancel(self, cancel: Optional[CancelToken]) -> None:
        """Every worker stops at the same step when rank 0 saw the driver's cancel."""
        agreed_cancel(self._cancel_requested)

    def check_in_sync(self) -> None:
        """Fail loudly if the workers' parameters differ."""
        check_in_sync(self.params, "fine-tuning")


def _finetune_worker(config: dict) -> None:
    """Ray Train loop of one worker: the shared loop on its slices; rank 0 reports the weights as checkpoint."""
    import ray  # Ray is an optional extra (this runs in a Ray Train worker)
    import ray.train

    # torch 2.13 calls all_gather deprecated (for the private _functional_collectives); it works on gloo
    warnings.filterwarnings("ignore", message=r".*all_gather is deprecated", category=FutureWarning)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(int(config["threads"]))
    pairs, item_text = ray.get(config["pairs"]), ray.get(config["item_text"])
    progress = cancel_requested = validate = None
    validation: Sequence[Pair] = ()
    if rank == 0:
        validation, validate = ray.get(config["validation"]), ray.get(config["validate"])
        # the loop reports at most every 0.1 s, validations always: every report is pushed
        progress, cancel_requested = rank0_reporting(ray, config["channel"], world)

    t0, c0 = time.perf_counter(), time.process_time()
    loop = ShardedFinetuneLoop(Path(config["base_dir"]), pairs, item_text, FinetuneConfig.from_dict(config["cfg"]),
                               rank=rank, world=world, cancel_requested=cancel_requested)
    t1 = time.perf_counter()
    run = loop.run(validation=validation, validate=validate, progress=progress)
    loop_seconds = time.perf_counter() - t1
    loop.check_in_sync()
    cpu = sum_over_workers(time.process_time() - c0)  # CPU cost, unlike wall time, ignores other load
    n, bs = len(loop.train), loop.batch_size
    pairs_trained = (n - (1 if n % bs == 1 else 0)) * max(1, int(loop.cfg.epochs))  # a last batch of 1 is skipped
    stats = {"fit_seconds": time.perf_counter() - t0, "setup_seconds": t1 - t0, "loop_seconds": loop_seconds,
             "cpu_seconds": cpu, "steps": run.steps, "pairs_trained": pairs_trained,
             "threads": torch.get_num_threads(),
             "pairs_per_s": pairs_trained / loop_seconds if loop_seconds > 0 else 0.0}
    with tempfile.TemporaryDirectory(prefix="merch-ckpt-") as folder:
        checkpoint = None
        if rank == 0:
            run.write_weights(Path(folder) / WEIGHTS_FILE, {"format": "pt"})
            (Path(folder) / RUN_FILE).write_text(json.dumps(
                {"history": run.history, "best": run.best, "steps": run.steps, "n_train": run.n_train,
                 "n_val": run.n_val}), encoding="utf-8")
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(stats, checkpoint=checkpoint)


def fine_tune_on_ray(base_dir: Path, pairs: Sequence[Pair], item_text: dict[str, str], cfg: FinetuneConfig, *,
                     validation: Sequence[Pair] = (), validate: Optional[Validator] = None,
                     progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
                     workers: int = 2, address: Optional[str] = None, num_cpus: Optional[int] = None,
                     stats: Optional[dict] = None) -> FinetuneRun:
    """Fine-tune the BERT folder ``base_dir`` on Ray Train (TorchTrainer, gloo on CPU, ``workers`` workers).

    Same arguments and result as :func:`merch_app.model.finetune.fine_tune` (the same
    loss and, up to float rounding, the same weights); ``stats`` (if given) receives
    the run's throughput (``pairs_per_s`` and ``loop_seconds``: rank 0's loop, validations included;
    ``setup_seconds``, ``cpu_seconds`` of all workers, ``steps``, ``pairs_trained``, ``workers``).
    ``validate`` runs on rank 0, so it must pickle (a closure of module functions does).
    The checkpoint goes under ``$MERCH_APP_RAY_STORAGE`` (a temp folder by default)
    and is removed once read.

    Raises
    ------
    FinetuneError
        No usable pairs, or a folder that cannot be fine-tuned (checked before Ray starts).
    Cancelled
        ``cancel`` was set (the workers stop at their next step).
    RayJobFailed
        A worker failed (the first cause is in the message).
    """
    t0 = time.perf_counter()
    base_dir = Path(base_dir)
    bert_config = base_config(base_dir)
    n_train = len(usable_pairs(pairs, item_text))
    with ray_session(address, num_cpus) as ray, ray_errors("fine-tuning"):
        workers = max(1, min(int(workers), cluster_cpus(ray), n_train))
        loop_config = {"cfg": cfg.to_dict(), "base_dir": str(base_dir), "threads": CPUS_PER_WORKER,
                       "pairs": ray.put(list(pairs)), "item_text": ray.put(item_text),
                       "validation": ray.put(list(validation)), "validate": ray.put(validate)}

        def read(folder: Path) -> tuple[dict, dict]:
            return (load_file(str(folder / WEIGHTS_FILE)),
                    json.loads((folder / RUN_FILE).read_text(encoding="utf-8")))

        (state, meta), metrics = run_torch_job(ray, _finetune_worker, loop_config, workers=workers,
                                               name="merch_app-finetune", read=read, progress=progress,
                                               cancel=cancel, cpus_per_worker=CPUS_PER_WORKER)
        if stats is not None:
            stats.update(metrics)
            stats["workers"] = workers
        return FinetuneRun(state=state, bert_config=bert_config, history=meta["history"],
                           seconds=time.perf_counter() - t0, steps=int(meta["steps"]),
                           n_train=int(meta["n_train"]), n_val=int(meta["n_val"]), best=meta["best"])

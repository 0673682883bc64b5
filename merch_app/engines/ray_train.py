"""Training the hybrid model on Ray Train: DDP on CPU (gloo), N workers, data sharded by user.

Every worker runs the same :meth:`HybridModel.fit` as local training (same
model code, same loss :func:`~merch_app.model.cf_module.implicit_batch_loss`,
same combiner, validation and early stopping); only the CF epochs differ
(:class:`ShardedTrainer`):

* each worker takes the positive pairs of its users (``user index % N``);
* an epoch has as many steps as a local epoch, every worker taking its share
  of each step's batch, and each local loss is scaled by its share, so the
  averaged DDP gradient equals the gradient of the whole batch;
* gradients are all-reduced by ``DistributedDataParallel`` (gloo), so the
  parameters stay identical on every worker, and the combiner fit and the
  early-stopping decisions (plain numpy on those parameters) agree.

Rank 0 writes the result as a Ray Train checkpoint in the model folder format
(:meth:`HybridModel.save`); the driver loads it and registers it like any
other version (``engine = "ray"``, workers in the data snapshot).  Progress
and cancel travel through a small :class:`~merch_app.engines.ray_jobs.ProgressChannel` actor.
"""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from merch_app.engines.ray_jobs import (
    POLL_SECONDS, agreed_cancel, check_in_sync, rank0_reporting, run_torch_job, sum_over_workers,
)
from merch_app.engines.ray_runtime import cluster_cpus, ray_errors, ray_session
from merch_app.jobs import CancelToken, Throttle
from merch_app.model import cf_module as cf
from merch_app.model import text_matrix
from merch_app.model.hybrid import HybridConfig, HybridModel
from merch_app.model.hybrid_fit import HybridTrainer
from merch_app.model.interactions import Interactions

class _BatchLoss(nn.Module):
    """The network plus the loss of one batch, so DDP sees the whole step in ``forward``."""

    def __init__(self, net: cf.HybridNet, cfg: HybridConfig) -> None:
        super().__init__()
        self.net, self.cfg = net, cfg

    def forward(self, kind: str, *batch):
        if kind == "implicit":
            return cf.implicit_batch_loss(self.net, self.cfg, *batch)
        return cf.explicit_batch_loss(self.net, self.cfg, *batch)


class ShardedTrainer(HybridTrainer):
    """:class:`HybridTrainer` whose CF epochs run data-parallel over a torch process group.

    Parameters
    ----------
    model
        The model to fit (its config: the hyper-parameters, as for local training).
    rank, world
        This worker and the number of workers.
    cancel_requested
        Rank 0: callable telling whether the driver asked to cancel.
    """

    sparse_id_grads = False  # DistributedDataParallel all-reduces dense gradients

    def __init__(self, model: HybridModel, rank: int, world: int, cancel_requested=None) -> None:
        super().__init__(model)
        config = model.config
        self.rank, self.world = int(rank), int(world)
        self._cancel_requested = cancel_requested
        self._rng = np.random.default_rng([config.seed, 7919, self.rank])
        self._gen = torch.Generator().manual_seed(config.seed * 1000 + 17 + self.rank)
        self._ddp, self._ddp_net = None, None
        self.pairs_trained = 0  # positive pairs (or ratings) of all workers, summed over the epochs
        self.epoch_seconds = 0.0  # wall time inside the data-parallel CF epochs (the rest is per-epoch upkeep)

    def _wrapped(self, net: cf.HybridNet):
        if self._ddp_net is not net:
            # T_u/T_i buffers are identical everywhere (built from the same data) and T_u is
            # replaced before the refit; b_user is unused by the implicit loss.
            self._ddp = DistributedDataParallel(_BatchLoss(net, self.config), broadcast_buffers=False,
                                                find_unused_parameters=True)
            self._ddp_net = net
        return self._ddp


    def _sharded_epoch(self, net, opt, users: np.ndarray, batch_of, rep, message: str, epoch: int) -> float:
        """Run one epoch over rows whose owner is ``users % world``; ``batch_of(rows)`` builds a batch."""
        n_rows = len(users)
        if n_rows == 0:
            return 0.0
        owner = users % self.world
        sizes = np.bincount(owner, minlength=self.world)
        mine = np.flatnonzero(owner == self.rank)
        n_batches = max(1, math.ceil(n_rows / self.config.batch_size))
        # worker r takes rows edges[r, b]:edges[r, b+1] of its shard at step b
        edges = (np.outer(sizes, np.arange(n_batches + 1)) // n_batches).astype(np.int64)
        step_rows = np.diff(edges, axis=1).sum(axis=0)
        ddp = self._wrapped(net)
        net.train()
        running, seen, t0 = 0.0, 0, time.perf_counter()
        for b in range(n_batches):
            agreed_cancel(self._cancel_requested)
            rows = mine[edges[self.rank, b]:edges[self.rank, b + 1]]
            share = len(rows) * self.world / max(int(step_rows[b]), 1)
            if len(rows) == 0:  # every worker must join every step: a weightless stand-in row
                rows, share = np.arange(1) if len(mine) == 0 else mine[:1], 0.0
            loss = ddp(*batch_of(rows))
            opt.zero_grad(set_to_none=True)
            (loss * share).backward()
            opt.step()
            if share > 0:
                running += loss.item() * len(rows)
                seen += len(rows)
            rep.tick(message, {"phase": "train", "epoch": epoch, "batch": b + 1, "loss": running / max(seen, 1),
                               "epoch_end": False, "workers": self.world})
        totals = torch.tensor([running, float(seen)], dtype=torch.float64)
        dist.all_reduce(totals)
        self.pairs_trained += int(totals[1].item())
        check_in_sync(net.parameters(), "training")  # else their early-stopping decisions differ
        self.epoch_seconds += time.perf_counter() - t0
        return float(totals[0].item() / max(totals[1].item(), 1.0))

    def _implicit_epoch(self, net, opt, pos, neg_cdf, rng, gen, rep, cancel, message: str, epoch: int) -> float:
        u, i, w = pos
        w = np.minimum(w, 1.0).astype(np.float32)
        order = self._rng.permutation(len(u))  # own order: ``rng`` stays identical on all workers
        u, i, w = u[order], i[order], w[order]
        cfg = self.config

        def batch_of(rows):
            neg = cf.sample(neg_cdf, cfg.shared_negatives, self._rng)
            return "implicit", u[rows], i[rows], w[rows], neg, self._gen

        return self._sharded_epoch(net, opt, u, batch_of, rep, message, epoch)

    def _explicit_epoch(self, net, opt, data, gen, rep, cancel, message: str, epoch: int) -> float:
        u, i, r = data[:3]  # already in the epoch's (shared) random order
        o = data[3] if len(data) > 3 else None  # the ratings' fixed baseline (residual training)

        def batch_of(rows):
            return ("explicit", u[rows], i[rows], r[rows]) + (() if o is None else (o[rows],))

        return self._sharded_epoch(net, opt, u, batch_of, rep, message, epoch)


def _interactions_arrays(inter: Interactions) -> dict[str, np.ndarray]:
    return {"user_ids": np.asarray(inter.user_ids, dtype=str), "item_ids": np.asarray(inter.item_ids, dtype=str),
            "user_idx": inter.user_idx, "item_idx": inter.item_idx, "weight": inter.weight, "ts": inter.ts,
            "event_type": np.asarray(inter.event_type, dtype=str), "value": inter.value}


def _train_worker(config: dict) -> None:
    """Ray Train loop of one worker: fit on its shard, rank 0 reports the model as checkpoint."""
    import ray  # Ray is an optional extra (this runs in a Ray Train worker)
    import ray.train

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    a = {k: ray.get(ref) for k, ref in config["arrays"].items()}
    inter = Interactions(a["user_ids"].astype(object), a["item_ids"].astype(object), a["user_idx"], a["item_idx"],
                         a["weight"], a["ts"], a["event_type"].astype(object), a["value"])
    user_text = ray.get(config["user_text"]) if config["user_text"] is not None else None
    item_text = ray.get(config["item_text"])
    progress = cancel_requested = None
    if rank == 0:
        throttle = Throttle(POLL_SECONDS)
        progress, cancel_requested = rank0_reporting(
            ray, config["channel"], world, lambda p: bool(p.data.get("epoch_end")) or throttle.ready())

    model = HybridModel(HybridConfig.from_dict(config["cfg"]))
    trainer = ShardedTrainer(model, rank, world, cancel_requested)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.fit(inter, item_text, user_text, progress=progress, ref_day=config["ref_day"])
    seconds = time.perf_counter() - t0
    cpu = sum_over_workers(time.process_time() - c0)  # CPU cost, unlike wall time, ignores other load
    epochs = len(model.history)
    stats = {"fit_seconds": seconds, "cpu_seconds": cpu, "epochs_run": epochs, "train_events": len(inter),
             "pairs_trained": trainer.pairs_trained, "cf_epoch_seconds": trainer.epoch_seconds,
             "events_per_s": len(inter) * epochs / seconds if seconds > 0 else 0.0,
             "pairs_per_s": trainer.pairs_trained / seconds if seconds > 0 else 0.0}
    with tempfile.TemporaryDirectory(prefix="merch-ckpt-") as folder:
        checkpoint = None
        if rank == 0:
            model.save(Path(folder))
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(stats, checkpoint=checkpoint)


def fit_on_ray(cfg: HybridConfig, inter: Interactions, item_text: np.ndarray, user_text=None,
               progress=None, cancel: Optional[CancelToken] = None, ref_day: Optional[float] = None, *,
               workers: int = 2, address: Optional[str] = None, num_cpus: Optional[int] = None,
               stats: Optional[dict] = None) -> HybridModel:
    """Fit :class:`HybridModel` on Ray Train (TorchTrainer, gloo DDP on CPU, ``workers`` workers).

    Same arguments and result as ``HybridModel(cfg).fit(...)``; ``stats`` (if
    given) receives the run's throughput (``events_per_s``, ``fit_seconds``...).
    A Ray Train checkpoint in the model folder format is written under
    ``$MERCH_APP_RAY_STORAGE`` (shared storage for multi-node clusters; a temp
    folder by default) and removed once loaded.

    Raises
    ------
    Cancelled
        ``cancel`` was set (the workers stop at their next batch).
    RayJobFailed
        A worker failed (the first cause is in the message).
    """
    if callable(user_text):  # the workers get arrays: the lazy user vectors are made here
        user_text = user_text()
    with ray_session(address, num_cpus) as ray, ray_errors("training"):
        workers = max(1, min(int(workers), cluster_cpus(ray)))
        refs = {k: ray.put(v) for k, v in _interactions_arrays(inter).items()}
        loop_config = {"cfg": cfg.to_dict(), "arrays": refs, "ref_day": ref_day,
                       "item_text": ray.put(text_matrix.compact(item_text)),
                       "user_text": None if user_text is None else ray.put(np.ascontiguousarray(user_text, np.float32))}
        model, metrics = run_torch_job(ray, _train_worker, loop_config, workers=workers, name="merch_app-train",
                                       read=HybridModel.load, progress=progress, cancel=cancel)
        if stats is not None:
            stats.update(metrics)
            stats["workers"] = workers
        return model

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
and cancel travel through a small :class:`ProgressChannel` actor.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from merch_app.engines.ray_runtime import cluster_cpus, ray_errors, ray_session
from merch_app.jobs import CancelToken, Cancelled, Progress, Throttle
from merch_app.model import cf_module as cf
from merch_app.model import text_matrix
from merch_app.model.hybrid import HybridConfig, HybridModel
from merch_app.model.hybrid_fit import HybridTrainer
from merch_app.model.interactions import Interactions

POLL_SECONDS = 0.2  # driver: progress / cancel polling; worker: cancel flag polling (rank 0)


class ProgressChannel:
    """Ray actor between the driver and rank 0: progress reports one way, cancel the other."""

    def __init__(self) -> None:
        self._reports: list[dict] = []
        self._cancelled = False

    def push(self, report: dict) -> None:
        self._reports.append(report)
        del self._reports[:-500]  # a driver that stopped polling must not grow this forever

    def drain(self) -> list[dict]:
        out, self._reports = self._reports, []
        return out

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled


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

    def _check_cancel(self) -> None:
        flag = torch.tensor([1.0 if self._cancel_requested is not None and self._cancel_requested() else 0.0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            raise Cancelled("cancelled by user")

    def _check_in_sync(self, net: cf.HybridNet) -> None:
        """Fail loudly if the workers' parameters differ (their early-stopping decisions would too)."""
        with torch.no_grad():
            s = float(sum(p.double().sum() for p in net.parameters()))
        both = torch.tensor([s, -s], dtype=torch.float64)
        dist.all_reduce(both, op=dist.ReduceOp.MAX)
        if both[0].item() + both[1].item() > 1e-9 * max(1.0, abs(s)):
            raise RuntimeError("training workers diverged (parameters differ after an epoch)")

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
            self._check_cancel()
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
        self._check_in_sync(net)
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


def _sum_over_workers(value: float) -> float:
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


def _train_worker(config: dict) -> None:
    """Ray Train loop of one worker: fit on its shard, rank 0 reports the model as checkpoint."""
    import ray  # Ray is an optional extra (this runs in a Ray Train worker)
    import ray.train

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    channel = config["channel"]
    a = {k: ray.get(ref) for k, ref in config["arrays"].items()}
    inter = Interactions(a["user_ids"].astype(object), a["item_ids"].astype(object), a["user_idx"], a["item_idx"],
                         a["weight"], a["ts"], a["event_type"].astype(object), a["value"])
    user_text = ray.get(config["user_text"]) if config["user_text"] is not None else None
    item_text = ray.get(config["item_text"])
    progress = cancel_requested = None
    if rank == 0:
        throttle, poll, state = Throttle(POLL_SECONDS), Throttle(POLL_SECONDS), {"cancelled": False}

        def progress(p: Progress) -> None:
            if p.data.get("epoch_end") or throttle.ready():
                channel.push.remote({"done": p.done, "total": p.total, "message": p.message,
                                     "eta_seconds": p.eta_seconds, "data": {**p.data, "workers": world}})

        def cancel_requested() -> bool:
            if not state["cancelled"] and poll.ready():
                state["cancelled"] = bool(ray.get(channel.cancelled.remote()))
            return state["cancelled"]

    model = HybridModel(HybridConfig.from_dict(config["cfg"]))
    trainer = ShardedTrainer(model, rank, world, cancel_requested)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.fit(inter, item_text, user_text, progress=progress, ref_day=config["ref_day"])
    seconds = time.perf_counter() - t0
    cpu = _sum_over_workers(time.process_time() - c0)  # CPU cost, unlike wall time, ignores other load
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
        from ray.train import FailureConfig, RunConfig, ScalingConfig  # Ray is an optional extra
        from ray.train.torch import TorchConfig, TorchTrainer

        workers = max(1, min(int(workers), cluster_cpus(ray)))
        channel = ray.remote(num_cpus=0)(ProgressChannel).remote()
        refs = {k: ray.put(v) for k, v in _interactions_arrays(inter).items()}
        loop_config = {"cfg": cfg.to_dict(), "arrays": refs, "ref_day": ref_day, "channel": channel,
                       "item_text": ray.put(text_matrix.compact(item_text)),
                       "user_text": None if user_text is None else ray.put(np.ascontiguousarray(user_text, np.float32))}
        root = os.environ.get("MERCH_APP_RAY_STORAGE")
        storage = Path(tempfile.mkdtemp(prefix="merch-ray-train-", dir=root))
        trainer = TorchTrainer(
            _train_worker, train_loop_config=loop_config, torch_config=TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(storage_path=str(storage), name="merch_app-train",
                                 failure_config=FailureConfig(max_failures=0)))
        try:
            result = _fit_while_polling(ray, trainer, channel, progress, cancel)
            if result.checkpoint is None:
                raise RuntimeError("Ray Train finished without a model checkpoint")
            with result.checkpoint.as_directory() as folder:
                model = HybridModel.load(Path(folder))
            if stats is not None:
                stats.update({k: v for k, v in (result.metrics or {}).items() if not k.startswith("_")})
                stats["workers"] = workers
            return model
        finally:
            shutil.rmtree(storage, ignore_errors=True)


def _fit_while_polling(ray, trainer, channel, progress, cancel):
    """Run ``trainer.fit()`` in a thread; meanwhile forward progress and a cancel request."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # re-raised in the calling thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="ray-train-fit", daemon=True)
    thread.start()
    cancel_sent = False

    def forward() -> None:
        for r in ray.get(channel.drain.remote()):
            if progress is not None:
                progress(Progress(r["done"], r["total"], r["message"], r["eta_seconds"], r["data"]))

    while thread.is_alive():
        thread.join(POLL_SECONDS)
        if cancel is not None and cancel.cancelled and not cancel_sent:
            channel.cancel.remote()
            cancel_sent = True
        forward()
    forward()
    if cancel is not None and cancel.cancelled:
        raise Cancelled("cancelled by user")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


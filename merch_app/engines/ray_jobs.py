"""What every Ray Train job of the app shares: progress and cancel between driver and workers.

Training the hybrid model (:mod:`merch_app.engines.ray_train`) and fine-tuning the
encoder (:mod:`merch_app.engines.ray_finetune`) run a TorchTrainer with gloo on CPU the
same way: rank 0 pushes progress into a :class:`ProgressChannel` actor and polls it for
the driver's cancel, every worker stops at the same step (:func:`agreed_cancel`), the
parameters are checked to be identical at the end (:func:`check_in_sync`), and the
driver runs the trainer in a thread while it forwards progress (:func:`run_torch_job`).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch
import torch.distributed as dist

from merch_app.jobs import CancelToken, Cancelled, Progress, ProgressCallback, Throttle

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


def rank0_reporting(ray, channel, world: int, push_now: Optional[Callable[[Progress], bool]] = None):
    """Rank 0's ``(progress, cancel_requested)`` over ``channel``.

    ``progress`` pushes a report when ``push_now(p)`` says so (default: every report;
    the caller's loop throttles), with ``workers`` added to its data;
    ``cancel_requested`` asks the channel at most every :data:`POLL_SECONDS` and keeps a yes.
    """
    poll, state = Throttle(POLL_SECONDS), {"cancelled": False}

    def progress(p: Progress) -> None:
        if push_now is None or push_now(p):
            channel.push.remote({"done": p.done, "total": p.total, "message": p.message,
                                 "eta_seconds": p.eta_seconds, "data": {**p.data, "workers": world}})

    def cancel_requested() -> bool:
        if not state["cancelled"] and poll.ready():
            state["cancelled"] = bool(ray.get(channel.cancelled.remote()))
        return state["cancelled"]

    return progress, cancel_requested


def agreed_cancel(cancel_requested: Optional[Callable[[], bool]]) -> None:
    """Raise :class:`Cancelled` on every worker at once when rank 0 saw the driver's cancel."""
    flag = torch.tensor([1.0 if cancel_requested is not None and cancel_requested() else 0.0])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() > 0:
        raise Cancelled("cancelled by user")


def check_in_sync(params: Iterable[torch.Tensor], what: str) -> None:
    """Fail loudly if the workers' parameters differ (``what``: the job, for the message)."""
    with torch.no_grad():
        s = float(sum(p.double().sum() for p in params))
    both = torch.tensor([s, -s], dtype=torch.float64)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    if both[0].item() + both[1].item() > 1e-9 * max(1.0, abs(s)):
        raise RuntimeError(f"{what} workers diverged (parameters differ)")


def sum_over_workers(value: float) -> float:
    """``value`` summed over the process group."""
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


def run_torch_job(ray, worker: Callable[[dict], None], loop_config: dict, *, workers: int, name: str,
                  read: Callable[[Path], Any], progress: Optional[ProgressCallback] = None,
                  cancel: Optional[CancelToken] = None, cpus_per_worker: int = 1) -> tuple[Any, dict]:
    """Run ``worker`` on a gloo TorchTrainer of ``workers`` CPU workers; ``(read(checkpoint folder), metrics)``.

    ``loop_config`` gets the :class:`ProgressChannel` as ``channel``.  The checkpoint
    goes under ``$MERCH_APP_RAY_STORAGE`` (shared storage for multi-node clusters; a
    temp folder by default) and is removed once ``read`` has taken what it needs.

    Raises
    ------
    Cancelled
        ``cancel`` was set (the workers stop at their next step).
    RuntimeError
        The job finished without a checkpoint.
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig  # Ray is an optional extra
    from ray.train.torch import TorchConfig, TorchTrainer

    channel = ray.remote(num_cpus=0)(ProgressChannel).remote()
    storage = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=os.environ.get("MERCH_APP_RAY_STORAGE")))
    trainer = TorchTrainer(
        worker, train_loop_config={**loop_config, "channel": channel}, torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=False,
                                     resources_per_worker={"CPU": cpus_per_worker}),
        run_config=RunConfig(storage_path=str(storage), name=name, failure_config=FailureConfig(max_failures=0)))
    try:
        result = _fit_while_polling(ray, trainer, channel, progress, cancel)
        if result.checkpoint is None:
            raise RuntimeError(f"Ray Train job {name} finished without a checkpoint")
        with result.checkpoint.as_directory() as folder:
            out = read(Path(folder))
        return out, {k: v for k, v in (result.metrics or {}).items() if not k.startswith("_")}
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

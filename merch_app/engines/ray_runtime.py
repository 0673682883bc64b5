"""Starting and joining Ray for the ray engine (Ray itself is imported only when that engine runs).

Without an address Ray starts on this machine (``ray.init(num_cpus=...)``) and
is shut down again when the job ends; with an address (``ray://host:10001``,
``host:6379`` or ``auto``) the job joins that cluster.  A Ray runtime already
started by the caller (tests, notebooks) is reused and left running.
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import Iterator, Optional

from merch_app.engines.errors import EngineError

INSTALL_HINT = "pip install 'merch_app[ray]'"


class RayUnavailable(EngineError):
    """Ray is not installed or cannot be started (message is user-facing)."""


class RayJobFailed(EngineError):
    """A job failed on Ray (worker error, lost node); the message names the first cause."""


@contextlib.contextmanager
def ray_errors(what: str) -> Iterator[None]:
    """Turn Ray's exceptions into :class:`RayJobFailed` with a one-line cause.

    Errors of the job's own code keep their type when Ray passes it through
    (e.g. :class:`~merch_app.model.encoder_base.EncoderError` raised in an actor's
    constructor arrives as ``RayActorError``, reported here).
    """
    try:
        yield
    except Exception as exc:
        if not type(exc).__module__.startswith("ray."):  # the job's own errors pass unchanged
            raise
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        cause = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "")
        raise RayJobFailed(f"{what} on Ray failed: {cause[:300]}") from exc


def require_ray():
    """The ``ray`` module, or :class:`RayUnavailable` naming the extra to install."""
    try:
        import ray  # Ray is an optional extra: imported here, when the ray engine runs
    except ImportError as exc:
        raise RayUnavailable(f"the ray engine needs Ray, which is not installed ({INSTALL_HINT})") from exc
    return ray


def quiet_ray_data() -> None:
    """Turn off Ray Data's progress bars and per-run log banners (the job reports progress itself)."""
    import ray.data  # Ray is an optional extra

    with warnings.catch_warnings():  # the first context warns about its own deprecated fields
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ray.data.DataContext.get_current()
    for name, value in (("enable_progress_bars", False), ("enable_operator_progress_bars", False),
                        ("print_on_execution_start", False), ("enable_progress_bar_name_truncation", True)):
        if hasattr(ctx, name):
            setattr(ctx, name, value)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # it warns that the bars it was told to hide are hidden
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


@contextlib.contextmanager
def ray_session(address: Optional[str] = None, num_cpus: Optional[int] = None) -> Iterator[object]:
    """Make sure Ray runs for the duration of a job.

    Parameters
    ----------
    address
        Cluster to join; None starts a local Ray runtime.
    num_cpus
        CPUs of the local runtime (None: all of this machine); ignored with an address.

    Yields
    ------
    module
        The ``ray`` module, initialised.
    """
    ray = require_ray()
    if ray.is_initialized():
        quiet_ray_data()
        yield ray
        return
    # Workers inherit the environment: the encoder must never download weights.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # ERROR: Ray warns at every start that token authentication is on (the default, wanted)
    kwargs = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError depending on the address
        where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
        raise RayUnavailable(f"cannot start or reach {where} ({exc})") from exc
    try:
        quiet_ray_data()
        yield ray
    finally:
        ray.shutdown()


def cluster_cpus(ray) -> int:
    """CPUs Ray can schedule on (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))

"""Where the heavy jobs run: embedded in this process (``local``) or on Ray (``ray``).

Both engines run the same core code (encoder, item text cache, hybrid model
and its loss, the fine-tuning loop, registry); the ray engine only decides
where the batches go.
The laptop default is ``local`` and never imports Ray; Ray is an optional
extra (``pip install 'merch_app[ray]'``) imported only when the ray engine
actually runs a job.

>>> get_engine("local").name
'local'
"""
from __future__ import annotations

from typing import ContextManager, Optional, Protocol

# EngineError lives in its own module (merch_app.engines.errors): the engine modules raise it too.
from merch_app.engines.errors import EngineError
from merch_app.engines.ray_runtime import RayUnavailable, require_ray

ENGINES = ("local", "ray")
DEFAULT_RAY_WORKERS = 2


class Engine(Protocol):
    """Where the heavy steps of the training use case and ``merch-app encode`` run.

    :func:`merch_app.services.training.train` opens :meth:`session` around a
    whole training, calls :meth:`prepare_item_vectors` before it reads the
    item vectors through the workspace cache, :meth:`fit` for the model and
    :meth:`record` after it for what the registry row says.
    :func:`merch_app.services.finetune.finetune` opens :meth:`session` around a
    whole fine-tuning, calls :meth:`fine_tune` for the training loop and
    :meth:`record` after it for the encoder version's data snapshot.
    """

    name: str

    def describe(self) -> dict:
        """Engine name and its settings, e.g. ``{"engine": "ray", "workers": 2}``."""
        ...

    def session(self) -> ContextManager[None]:
        """Context in which this engine's jobs run (Ray: one runtime for encode and fit)."""
        ...

    def encode_items(self, db, encoder, template: Optional[str] = None, *, batch_size: int = 64,
                     progress=None, cancel=None):
        """Encode the catalogue through the workspace cache; returns ``ItemVectors``."""
        ...

    def prepare_item_vectors(self, db, encoder, progress=None, cancel=None) -> None:
        """Fill the workspace's embedding cache before a training reads it (local: nothing to do)."""
        ...

    def fit(self, cfg, inter, item_text, user_text, progress=None, cancel=None, ref_day=None):
        """The fitted :class:`merch_app.model.hybrid.HybridModel` (arguments as :meth:`HybridModel.fit`)."""
        ...

    def fine_tune(self, base_dir, pairs, item_text, cfg, *, validation=(), validate=None, progress=None,
                  cancel=None):
        """The :class:`merch_app.model.finetune.FinetuneRun` of fine-tuning ``base_dir`` (arguments as
        :func:`merch_app.model.finetune.fine_tune`)."""
        ...

    def record(self) -> dict:
        """What the registry row and data snapshot of the last fit or fine-tuning record (``{}`` for local)."""
        ...


def engine_label(version) -> str:
    """How a registry row says where it was trained: ``local`` or ``ray x2`` (workers)."""
    engine = getattr(version, "engine", None) or "local"
    workers = (getattr(version, "data_snapshot", None) or {}).get("workers")
    return f"{engine} x{workers}" if engine != "local" and workers else engine


def get_engine(name: str = "local", *, address: Optional[str] = None, workers: Optional[int] = None,
               num_cpus: Optional[int] = None) -> Engine:
    """The engine called ``name``.

    Parameters
    ----------
    name
        ``local`` (in-process, the default) or ``ray``.
    address
        Ray cluster address (``ray`` only); None starts Ray on this machine.
    workers
        Ray actors (encode) and training workers (``ray`` only; default 2).
    num_cpus
        CPUs of a Ray runtime started on this machine (default: all).

    Raises
    ------
    EngineError
        Unknown name, options given to the local engine, or Ray not installed.
    """
    key = (name or "local").strip().lower()
    if key == "local":
        if address or (workers not in (None, 1)):
            raise EngineError("--ray-address and --workers need --engine ray")
        # imported on use: the engines load torch, +1 s and +180 MB in every Ray index worker (imports this package)
        from merch_app.engines.local import LocalEngine

        return LocalEngine()
    if key == "ray":
        if workers is not None and int(workers) < 1:
            raise EngineError(f"--workers must be at least 1, got {workers}")
        try:
            require_ray()
        except RayUnavailable as exc:
            raise EngineError(str(exc)) from exc
        from merch_app.engines.ray_engine import RayEngine  # torch, as LocalEngine above

        return RayEngine(address=address, workers=int(workers or DEFAULT_RAY_WORKERS), num_cpus=num_cpus)
    raise EngineError(f"unknown engine {name!r}; use one of: {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Engine", "engine_label", "get_engine"]

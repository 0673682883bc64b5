"""The Ray engine: encoding on Ray Data, fitting and fine-tuning on Ray Train (same core code as local)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

from merch_app.engines.ray_encode import encode_items_ray
from merch_app.engines.ray_finetune import fine_tune_on_ray
from merch_app.engines.ray_runtime import cluster_cpus, ray_session
from merch_app.engines.ray_train import fit_on_ray
from merch_app.model.hybrid import HybridConfig, HybridModel
from merch_app.model.interactions import Interactions
from merch_app.model.item_vectors import DEFAULT_TEMPLATE


class RayEngine:
    """Runs encoding and fitting on Ray; Ray starts locally unless ``address`` names a cluster.

    The split, evaluation and registration of a training stay in this process
    (:func:`merch_app.services.training.train`); the version's registry row
    says ``engine = "ray"`` and its data snapshot holds ``workers``, the
    address and the training throughput.  Likewise for fine-tuning
    (:func:`merch_app.services.finetune.finetune`): only the training loop runs on Ray.

    Parameters
    ----------
    address
        Ray cluster address, or None for a Ray runtime started (and stopped) per job.
    workers
        Encoder actors and training workers.
    num_cpus
        CPUs of a locally started runtime (None: all of this machine).
    """

    name = "ray"

    def __init__(self, address: Optional[str] = None, workers: int = 2, num_cpus: Optional[int] = None) -> None:
        self.address = address or None
        self.workers = max(1, int(workers))
        self.num_cpus = num_cpus
        self._stats: dict = {}
        self._session_workers: Optional[int] = None

    def describe(self) -> dict:
        return {"engine": "ray", "workers": self.workers, "address": self.address}

    @contextmanager
    def session(self) -> Iterator[None]:
        """One Ray runtime for the encode and fit of a training (workers capped by its CPUs)."""
        with ray_session(self.address, self.num_cpus) as ray:
            self._session_workers = max(1, min(self.workers, cluster_cpus(ray)))
            self._stats = {}
            try:
                yield
            finally:
                self._session_workers = None

    @property
    def _workers(self) -> int:
        return self._session_workers or self.workers

    def encode_items(self, db, encoder, template: Optional[str] = None, *, batch_size: int = 64,
                     progress=None, cancel=None):
        """:func:`merch_app.engines.ray_encode.encode_items_ray` with this engine's settings."""
        return encode_items_ray(db, encoder or "minilm", template or DEFAULT_TEMPLATE, batch_size=batch_size,
                                workers=self._workers, address=self.address, num_cpus=self.num_cpus,
                                progress=progress, cancel=cancel)

    def prepare_item_vectors(self, db, encoder, progress=None, cancel=None) -> None:
        """Fill the workspace cache on Ray Data; the training then finds every vector there."""
        encode_items_ray(db, encoder, workers=self._workers, address=self.address, progress=progress, cancel=cancel)

    def fit(self, cfg: HybridConfig, inter: Interactions, item_text, user_text, progress=None, cancel=None,
            ref_day=None) -> HybridModel:
        """:func:`merch_app.engines.ray_train.fit_on_ray` on this engine's workers."""
        stats: dict = {}
        model = fit_on_ray(cfg, inter, item_text, user_text, progress, cancel, ref_day, workers=self._workers,
                           address=self.address, stats=stats)
        self._stats = {f"ray_{k}": v for k, v in stats.items() if k != "workers"}
        return model

    def fine_tune(self, base_dir, pairs, item_text, cfg, *, validation=(), validate=None, progress=None,
                  cancel=None):
        """:func:`merch_app.engines.ray_finetune.fine_tune_on_ray` on this engine's workers."""
        stats: dict = {}
        run = fine_tune_on_ray(base_dir, pairs, item_text, cfg, validation=validation, validate=validate,
                               progress=progress, cancel=cancel, workers=self._workers, address=self.address,
                               num_cpus=self.num_cpus, stats=stats)
        self._stats = {f"ray_{k}": v for k, v in stats.items() if k != "workers"}
        return run

    def record(self) -> dict:
        return {"engine": "ray", "workers": self._workers, "ray_address": self.address or "local", **self._stats}

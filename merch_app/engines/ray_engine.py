"""The Ray engine: encoding on Ray Data, training on Ray Train (same core code as local)."""
from __future__ import annotations

from typing import Optional


class RayEngine:
    """Runs encoding and training on Ray; Ray starts locally unless ``address`` names a cluster.

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

    def describe(self) -> dict:
        return {"engine": "ray", "workers": self.workers, "address": self.address}

    def encode_items(self, db, encoder, template: Optional[str] = None, *, batch_size: int = 64,
                     progress=None, cancel=None):
        """:func:`merch_app.engines.ray_encode.encode_items_ray` with this engine's settings."""
        from merch_app.engines.ray_encode import encode_items_ray
        from merch_app.model.item_vectors import DEFAULT_TEMPLATE

        return encode_items_ray(db, encoder or "minilm", template or DEFAULT_TEMPLATE, batch_size=batch_size,
                                workers=self.workers, address=self.address, num_cpus=self.num_cpus,
                                progress=progress, cancel=cancel)

    def train(self, db, config=None, progress=None, cancel=None, encoder=None, name: Optional[str] = None):
        """:func:`merch_app.engines.ray_train.train_on_ray` with this engine's settings."""
        from merch_app.engines.ray_train import train_on_ray

        return train_on_ray(db, config, progress=progress, cancel=cancel, encoder=encoder, name=name,
                            workers=self.workers, address=self.address, num_cpus=self.num_cpus)

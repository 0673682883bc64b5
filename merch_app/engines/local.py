"""The embedded engine: every job runs in this process (the laptop default, no Ray)."""
from __future__ import annotations

from typing import Optional


class LocalEngine:
    """Runs encoding and training in-process with the core functions as they are."""

    name = "local"

    def describe(self) -> dict:
        return {"engine": "local", "workers": 1}

    def encode_items(self, db, encoder, template: Optional[str] = None, *, batch_size: int = 64,
                     progress=None, cancel=None):
        """:func:`merch_app.model.item_vectors.encode_items` (``encoder`` may be a spec string)."""
        from merch_app.model.encoder import load_encoder
        from merch_app.model.item_vectors import DEFAULT_TEMPLATE, encode_items

        if isinstance(encoder, str) or encoder is None:
            encoder = load_encoder(encoder)
        return encode_items(db, encoder, template or DEFAULT_TEMPLATE, batch_size=batch_size,
                            progress=progress, cancel=cancel)

    def train(self, db, config=None, progress=None, cancel=None, encoder=None, name: Optional[str] = None):
        """:func:`merch_app.model.training.train`."""
        from merch_app.model.training import train

        return train(db, config, progress=progress, cancel=cancel, encoder=encoder, name=name)

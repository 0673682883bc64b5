"""The embedded engine: every job runs in this process (the laptop default, no Ray)."""
from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager, Optional

from merch_app.model.encoder import load_encoder
from merch_app.model.finetune import fine_tune
from merch_app.model.hybrid import HybridConfig, HybridModel
from merch_app.model.interactions import Interactions
from merch_app.model.item_vectors import DEFAULT_TEMPLATE, encode_items


class LocalEngine:
    """Runs encoding, fitting and fine-tuning in-process with the core functions as they are."""

    name = "local"

    def describe(self) -> dict:
        return {"engine": "local", "workers": 1}

    def session(self) -> ContextManager[None]:
        return nullcontext()

    def encode_items(self, db, encoder, template: Optional[str] = None, *, batch_size: int = 64,
                     progress=None, cancel=None):
        """:func:`merch_app.model.item_vectors.encode_items` (``encoder`` may be a spec string)."""
        if isinstance(encoder, str) or encoder is None:
            encoder = load_encoder(encoder)
        return encode_items(db, encoder, template or DEFAULT_TEMPLATE, batch_size=batch_size,
                            progress=progress, cancel=cancel)

    def prepare_item_vectors(self, db, encoder, progress=None, cancel=None) -> None:
        """Nothing: the training encodes what the cache lacks as it reads it."""

    def fit(self, cfg: HybridConfig, inter: Interactions, item_text, user_text, progress=None, cancel=None,
            ref_day=None) -> HybridModel:
        """:meth:`HybridModel.fit` in this process."""
        return HybridModel(cfg).fit(inter, item_text, user_text, progress=progress, cancel=cancel, ref_day=ref_day)

    def fine_tune(self, base_dir, pairs, item_text, cfg, *, validation=(), validate=None, progress=None,
                  cancel=None):
        """:func:`merch_app.model.finetune.fine_tune` in this process."""
        return fine_tune(base_dir, pairs, item_text, cfg, validation=validation, validate=validate,
                         progress=progress, cancel=cancel)

    def record(self) -> dict:
        return {}

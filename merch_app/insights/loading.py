"""Load the model bundle the insight views read (active model, else text-only)."""
from __future__ import annotations

from typing import Optional

from merch_app.jobs import CancelToken, ProgressCallback


class InsightError(Exception):
    """An insight view cannot be computed (message is user-facing)."""


def load_insight_bundle(db, model_id: Optional[str] = None, encoder_spec: Optional[str] = None,
                        progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None):
    """The bundle of ``model_id`` (default: the active model) or a text-only bundle.

    Without a model registry or a trained model the bundle holds the item
    text vectors only (``bundle.model`` is None), so text views (map,
    near-duplicates, related by text) still work.

    Raises
    ------
    InsightError
        No items, an unknown encoder or a model that cannot be read.
    """
    from merch_app.model.encoder import EncoderError, load_encoder

    if db.execute("SELECT count(*) FROM items").fetchone()[0] == 0:
        raise InsightError("no items in the workspace; import a catalogue first")
    try:
        encoder = load_encoder(encoder_spec) if encoder_spec else None
    except EncoderError as exc:
        raise InsightError(str(exc)) from exc
    from merch_app.model.hybrid_scoring import ModelLoadError

    try:
        from merch_app.model.registry import load_bundle
    except ImportError:  # no registry in this build: text-only
        load_bundle = None
    if load_bundle is not None:
        try:
            return load_bundle(db, model_id=model_id, encoder=encoder)
        except (LookupError, ValueError, OSError, ModelLoadError) as exc:
            which = f"model {model_id!r}" if model_id else "the active model"
            raise InsightError(f"cannot load {which}: {exc}") from exc
    from merch_app.ranking.text_bundle import text_only_bundle

    try:
        return text_only_bundle(db, encoder or load_encoder(None), progress=progress, cancel=cancel)
    except EncoderError as exc:
        raise InsightError(str(exc)) from exc

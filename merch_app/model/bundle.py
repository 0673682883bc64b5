"""The bundle that ranks in a workspace: what ranking, explanation and the UI need, in one object.

``ModelBundle`` is the contract between the model package and its consumers
(ranking, explain, evaluation, insights, services, UI, CLI).  :func:`load_bundle`
is the one way to get it: the active (or a named) model version with its own
encoder, saved vector index and the catalogue items added since training, or a
text-only bundle when no model is trained.  Every workspace setting that
changes ranking is read here (encoder int8, vector index kind, popularity);
:func:`bundle_key` names exactly those inputs so a cache knows when a bundle
is stale.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Union

import numpy as np

from merch_app.data import text_tokens
from merch_app.data.forget_list import list_revision
from merch_app.data.workspace import get_setting, workspace_path
from merch_app.model.encoder import BASE_ENCODER_SETTING, INT8_SETTING, workspace_encoder
from merch_app.model.encoder_versions import active_encoder_key, deleted_encoder_problem, is_version_id
from merch_app.model.hybrid_files import ModelLoadError
from merch_app.model.item_vectors import item_text_vectors
from merch_app.model.registry import (
    INDEX_FILE, ModelVersion, RegistryError, active_version, encoder_for_version, get_version,
    index_kind, load_model, version_folder,
)
from merch_app.model.vector_index import VectorIndex, VectorIndexError

log = logging.getLogger(__name__)


class EncoderDeletedError(ModelLoadError):
    """A model version was trained with a fine-tuned encoder version that is gone (message is user-facing)."""


class Encoder(Protocol):
    """A text encoder: texts in, L2-normalised float32 vectors out."""

    encoder_id: str  # stable id, e.g. "all-MiniLM-L6-v2@<sha of config+weights>"
    dim: int

    def encode(self, texts: list[str], batch_size: int = 64, progress=None, cancel=None) -> np.ndarray:
        """Return an array of shape (len(texts), dim), rows with unit norm."""
        ...


@dataclass
class ModelBundle:
    """Everything needed to rank and explain with one model version.

    Attributes
    ----------
    item_ids
        Catalogue item ids; row ``i`` of every per-item array refers to ``item_ids[i]``.
    item_vectors
        BERT text vectors t_i, shape (n_items, dim), unit norm (float32).
    popularity
        Popularity prior in [0, 1] per item (log-scaled event counts).
    encoder
        The encoder the vectors came from (used to encode queries).
    index
        A vector index over ``item_vectors`` with ``search(q: (m, dim), k) -> (scores, idx)``.
    model
        The trained hybrid CF model (``HybridModel``) or None for text-only ranking.
    version
        Registry row, or None for an untrained (text-only) bundle.
    warning
        Why the bundle is not what was asked for (a broken active model that
        fell back to text only), or None.
    """

    item_ids: np.ndarray
    item_vectors: np.ndarray
    popularity: np.ndarray
    encoder: Encoder
    index: Any
    model: Any = None
    version: Optional[ModelVersion] = None
    item_pos: dict[str, int] = field(default_factory=dict)
    warning: Optional[str] = None

    def __post_init__(self) -> None:
        if not self.item_pos:
            self.item_pos = {str(i): n for n, i in enumerate(self.item_ids)}


def item_popularity(db, item_ids, pos: Optional[dict[str, int]] = None,
                    until_ts: Optional[str] = None) -> np.ndarray:
    """Popularity prior in [0, 1]: log1p(behaviour events) / max, in the order of ``item_ids``.

    Every event with an item counts except ``search`` (a search names no
    product choice) and ``impression`` (shown, not chosen).  ``pos`` (id ->
    position in ``item_ids``) is reused when the caller has it (a
    million-entry dict is ~0.1 GB).  ``until_ts``: only events before it
    (an offline evaluation ranks as of its split).
    """
    pos = pos if pos is not None else {str(i): n for n, i in enumerate(item_ids)}
    counts = np.zeros(len(pos), np.float64)
    for item_id, n in db.execute(  # iterated: a million (id, count) tuples at once cost ~0.3 GB
            "SELECT item_id, count(*) FROM events WHERE item_id IS NOT NULL "
            "AND event_type NOT IN ('search', 'impression') AND (? IS NULL OR ts < ?) GROUP BY item_id",
            [until_ts, until_ts]):
        p = pos.get(str(item_id))
        if p is not None:
            counts[p] = n
    pop = np.log1p(counts)
    top = pop.max() if len(pop) else 0.0
    return (pop / top if top > 0 else pop).astype(np.float32)


def _version_of(db, model_id: Optional[str]) -> Optional[ModelVersion]:
    return get_version(db, model_id) if model_id else active_version(db)


def bundle_key(db, model_id: Optional[str] = None, encoder=None) -> tuple:
    """Everything :func:`load_bundle` reads, as a comparable value (a cache is stale when it changes).

    The workspace file, the model version (id and creation time), the encoder
    asked for, the active encoder version, the base-encoder, int8, vector-index and
    search-token settings, the state of the
    catalogue and of the events (last row ids of items, imports and events:
    items joining the model, changed titles, popularity), and the forget list
    (a forget rewrites model files in place: a cached bundle must not keep the user).  Every part is an
    indexed lookup, so the key costs the same at a million items (the Query
    screen asks for it at every keystroke).
    """
    version = _version_of(db, model_id)
    last_item, last_import, last_event = db.execute(
        "SELECT (SELECT max(rowid) FROM items), (SELECT max(id) FROM imports), (SELECT max(id) FROM events)"
    ).fetchone()
    enc = encoder if encoder is None or isinstance(encoder, str) else getattr(encoder, "encoder_id", id(encoder))
    return (str(workspace_path(db)), version.model_id if version else None, version.created if version else None,
            enc, bool(get_setting(db, INT8_SETTING, False)), index_kind(db), last_item, last_import, last_event,
            active_encoder_key(db), get_setting(db, BASE_ENCODER_SETTING),
            get_setting(db, text_tokens.SETTING, text_tokens.DEFAULT_MODE), list_revision(db))


def load_bundle(db, model_id: Optional[str] = None, encoder: Union[None, str, Encoder] = None, *,
                fallback: bool = False, text_only: bool = False, progress=None, cancel=None) -> ModelBundle:
    """The bundle that ranks in this workspace: ``model_id`` (default: the active version) or text only.

    Parameters
    ----------
    db
        The workspace connection of the calling thread.
    model_id
        A registered version; None = the active one, and text only when no
        version is active.
    encoder
        An encoder or a ``load_encoder`` spec.  With a model it must be the
        one the model was trained with (default: that one); without, it
        encodes the catalogue (default: the packaged MiniLM, int8 when the
        workspace's ``encoder_int8`` setting says so).
    fallback
        When the active model cannot be loaded, rank by text only and say why
        in ``bundle.warning`` instead of raising (the GUI keeps answering).
    text_only
        The text-only bundle of ``encoder`` even when a version is active
        (to measure an encoder by itself).
    progress, cancel
        Job protocol, for encoding catalogue items the cache lacks.

    Returns
    -------
    ModelBundle
        Item vectors, popularity (:func:`item_popularity`), encoder, vector
        index (the saved one of the version, or one of the workspace's
        ``vector_index`` kind), and the model and its registry row.

    Raises
    ------
    RegistryError
        Unknown ``model_id``.
    ModelLoadError
        Model files missing or damaged, or ``encoder`` is not the model's;
        :class:`EncoderDeletedError` when the model's fine-tuned encoder
        version was deleted.
    """
    if isinstance(encoder, str):
        encoder = workspace_encoder(db, encoder)
    version = None if text_only else _version_of(db, model_id)
    if version is None:
        return _text_bundle(db, encoder or workspace_encoder(db), progress, cancel)
    try:
        return _model_bundle(db, version, encoder, progress, cancel)
    except (ModelLoadError, RegistryError, OSError, ValueError) as exc:
        if not fallback or model_id:
            raise
        log.warning("active model %s cannot be loaded: %s", version.model_id, exc)
        bundle = _text_bundle(db, workspace_encoder(db), progress, cancel)
        bundle.warning = (f"The active model “{version.name}” cannot be loaded ({exc}); ranking by text only. "
                          "Train a new model or activate another version on the Train screen.")
        return bundle


def _text_bundle(db, encoder, progress, cancel) -> ModelBundle:
    ids, vectors = item_text_vectors(db, encoder, progress=progress, cancel=cancel)
    return ModelBundle(item_ids=ids, item_vectors=vectors, popularity=item_popularity(db, ids), encoder=encoder,
                       index=VectorIndex.from_vectors(vectors, kind=index_kind(db)))


def _encoder_note(db, version: ModelVersion) -> Optional[str]:
    """Why the model ranks with another encoder than the workspace's active one (a fine-tuned version on
    either side), or None."""
    active = active_encoder_key(db)
    model_enc = (version.encoder_id or "").partition("@")
    if active is None and not is_version_id(model_enc[0]):
        return None
    if active is not None and model_enc[0] == active[0]:
        return None
    wanted = f"the fine-tuned encoder {active[0]}" if active else "the packaged MiniLM"
    return (f"The active model “{version.name}” was trained with encoder {version.encoder_id or 'unknown'} and ranks "
            f"with it; the workspace's encoder is now {wanted}, which ranks after the next training "
            "(Train screen or merch-app train).")


def _model_bundle(db, version: ModelVersion, encoder, progress, cancel) -> ModelBundle:
    problem = deleted_encoder_problem(db, version.encoder_id)
    if problem:
        raise EncoderDeletedError(f"model {version.model_id!r} cannot rank: {problem}. Train a new model "
                                  "(merch-app train) or activate another model version (merch-app models activate)")
    model = load_model(db, version.model_id)
    encoder = encoder_for_version(version, encoder)
    if version.encoder_id and encoder.encoder_id != version.encoder_id:
        raise ModelLoadError(f"model {version.model_id!r} was trained with encoder {version.encoder_id!r}, "
                             f"not {encoder.encoder_id!r}: choose that encoder or retrain")
    known = model.item_pos
    new = [i for (i,) in db.execute("SELECT item_id FROM items") if str(i) not in known]
    index = None
    if new:  # catalogue items added after training join at once through their text vectors (cold start)
        ids, vectors = item_text_vectors(db, encoder, progress=progress, cancel=cancel)
        pos = {str(i): n for n, i in enumerate(ids)}
        rows = [pos[i] for i in new if i in pos]
        model.add_items([str(ids[r]) for r in rows], vectors[rows])
    else:
        try:
            index = VectorIndex.load(version_folder(db, version) / INDEX_FILE)
            wanted = index_kind(db)
            if index.ntotal != model.n_items or (wanted != "auto" and index.kind != wanted):
                index = None
        except VectorIndexError:
            index = None
    item_vectors = model.arrays["T_i"]
    if index is None:
        index = VectorIndex.from_vectors(item_vectors, kind=index_kind(db))
    model.for_serving()  # ranking needs U/V/UW, not the ID embeddings they were built from
    return ModelBundle(item_ids=model.item_ids, item_vectors=item_vectors,
                       popularity=item_popularity(db, model.item_ids, model.item_pos), encoder=encoder, index=index,
                       model=model, version=version, item_pos=model.item_pos, warning=_encoder_note(db, version))

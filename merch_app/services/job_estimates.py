"""The phases of the long jobs (train, update, fine-tune) and rough first estimates of their durations.

The estimates come from counts known before a phase runs (items not in the
embedding cache, events × epochs, test users, pairs × steps) times rough
seconds per unit on one core, measured on the demo shop.  They only set the
first shares of :class:`~merch_app.job_phases.PhasePlan`, which corrects
them with the time the phases really take.
"""
from __future__ import annotations

import math

from merch_app.evaluation.offline import EVAL_CELLS, MIN_EVAL_USERS
from merch_app.model.hybrid_config import HybridConfig
from merch_app.model.item_vectors import cache_size

TRAIN_PHASES = ("encode", "user vectors", "train", "evaluate", "save")
UPDATE_PHASES = ("encode", "history", "train", "save")
FINETUNE_PHASES = ("pairs", "encode", "negatives", "finetune", "evaluate")

SECONDS_PER_NEW_TEXT = {"hashing": 2e-5, "bert": 2e-3}  # a text encoded (not found in the embedding cache)
SECONDS_PER_ITEM = 2e-5  # an item's text built and its cached vector read
SECONDS_PER_EVENT_USERS = 5e-6  # an event read and added to its user's text vector
SECONDS_PER_EVENT_EPOCH = 9e-6  # one event in one epoch of the CF net, with its validation
SETUP_EPOCHS = 4  # the internal cuts and history weights before the first epoch cost about this many epochs
SECONDS_PER_EVAL_CELL = 4e-7  # one (test user, item) score, with the baselines
SECONDS_PER_EVENT_SAVE = 5e-6  # an event of the history brought up to the last event
SECONDS_PER_ITEM_SAVE = 3e-5  # an item's part of the version's files and vector index
SECONDS_PER_EVENT_PAIRS = 2e-5  # an event read while collecting fine-tuning pairs
SECONDS_PER_ANCHOR_NEGATIVES = 4e-3  # one anchor encoded and searched for hard negatives
SECONDS_PER_TRAIN_TEXT = 4e-3  # one text through BERT forward and backward in a fine-tuning step
SECONDS_PER_RELATED_ITEM = 1e-3  # one product's related list ranked and scored against what its buyers also bought
MAX_USERS_COUNTED = 50_000  # the first estimate of the evaluation counts users up to this many


def encode_seconds(db, encoder) -> float:
    """Seconds to read or encode the catalogue's text vectors with ``encoder`` (items not cached are encoded).

    Parameters
    ----------
    db
        Open workspace.
    encoder
        The text encoder (its ``encoder_id`` keys the embedding cache).

    Returns
    -------
    float
        The estimate.
    """
    n_items = db.execute("SELECT count(*) FROM items").fetchone()[0]
    new = max(0, n_items - cache_size(db, encoder.encoder_id))
    return n_items * SECONDS_PER_ITEM + new * SECONDS_PER_NEW_TEXT[_kind(encoder)]


def train_seconds(cfg: HybridConfig, n_events: int) -> float:
    """Seconds of a fit over ``n_events`` training events: the set-up, ``cfg.epochs`` and the refit.

    Parameters
    ----------
    cfg
        The training settings.
    n_events
        Training events (before the split).

    Returns
    -------
    float
        The estimate (as if every epoch ran: early stopping shortens the phase).
    """
    return n_events * (SETUP_EPOCHS + cfg.epochs + cfg.refit_epochs) * SECONDS_PER_EVENT_EPOCH


def eval_seconds(n_users: int, n_items: int) -> float:
    """Seconds of the offline evaluation of ``n_users`` test users (at most its sample) over ``n_items``.

    Parameters
    ----------
    n_users, n_items
        Users that may be test users, items in the catalogue.

    Returns
    -------
    float
        The estimate.
    """
    users = min(n_users, max(MIN_EVAL_USERS, EVAL_CELLS // max(n_items, 1)))
    return users * n_items * SECONDS_PER_EVAL_CELL


def training_estimates(db, cfg: HybridConfig, encoder, split_ts: str) -> list[tuple[str, float]]:
    """``(phase, seconds)`` of :data:`TRAIN_PHASES` for a training with the split at ``split_ts``.

    Parameters
    ----------
    db
        Open workspace.
    cfg
        The training settings.
    encoder
        The text encoder of the run.
    split_ts
        The train/test cut-off (events before it train).

    Returns
    -------
    list of (str, float)
        The plan's first estimates; the training revises ``train`` and
        ``evaluate`` once it knows its events and users.
    """
    n_items = db.execute("SELECT count(*) FROM items").fetchone()[0]
    n_events = db.execute("SELECT count(*) FROM events").fetchone()[0]
    before = db.execute("SELECT count(*) FROM events WHERE ts < ?", [split_ts]).fetchone()[0]
    seconds = {"encode": encode_seconds(db, encoder), "user vectors": before * SECONDS_PER_EVENT_USERS,
               "train": train_seconds(cfg, before), "evaluate": eval_seconds(_users(db, n_items), n_items),
               "save": n_events * SECONDS_PER_EVENT_SAVE + n_items * SECONDS_PER_ITEM_SAVE}
    return [(name, seconds[name]) for name in TRAIN_PHASES]


def update_estimates(db, encoder, epochs: int) -> list[tuple[str, float]]:
    """``(phase, seconds)`` of :data:`UPDATE_PHASES` for ``epochs`` more epochs over every event.

    Parameters
    ----------
    db
        Open workspace.
    encoder
        The version's text encoder.
    epochs
        The update's epochs.

    Returns
    -------
    list of (str, float)
        The plan's estimates.
    """
    n_items = db.execute("SELECT count(*) FROM items").fetchone()[0]
    n_events = db.execute("SELECT count(*) FROM events").fetchone()[0]
    seconds = {"encode": encode_seconds(db, encoder), "history": n_events * SECONDS_PER_EVENT_SAVE,
               "train": n_events * epochs * SECONDS_PER_EVENT_EPOCH, "save": n_items * SECONDS_PER_ITEM_SAVE}
    return [(name, seconds[name]) for name in UPDATE_PHASES]


def finetune_estimates(db, cfg, encoder, n_pairs: int, n_test_pairs: int) -> list[tuple[str, float]]:
    """``(phase, seconds)`` of :data:`FINETUNE_PHASES` for ``n_pairs`` training pairs.

    Parameters
    ----------
    db
        Open workspace.
    cfg
        :class:`~merch_app.model.finetune.FinetuneConfig` of the run.
    encoder
        The base encoder.
    n_pairs, n_test_pairs
        Training and held-out pairs (before the pairs are collected:
        ``cfg.max_pairs`` and its test cap; then the real counts).

    Returns
    -------
    list of (str, float)
        The plan's estimates.
    """
    n_events = db.execute("SELECT count(*) FROM events").fetchone()[0]
    n_items = db.execute("SELECT count(*) FROM items").fetchone()[0]
    per_text = SECONDS_PER_NEW_TEXT[_kind(encoder)]
    batch = max(2, int(cfg.batch_size))
    steps = math.ceil(n_pairs / batch) * max(1, int(cfg.epochs))  # the validation pairs are a few hundred at most
    texts_per_step = batch * (2 + max(0, int(cfg.hard_negatives)))
    validations = max(1, int(cfg.evals_per_epoch)) * max(1, int(cfg.epochs)) + 1
    val_texts = int(cfg.val_pool) + min(int(cfg.max_val_pairs), int(n_pairs * float(cfg.val_fraction)))
    seconds = {"pairs": n_events * SECONDS_PER_EVENT_PAIRS,
               "encode": encode_seconds(db, encoder),
               "negatives": n_pairs * SECONDS_PER_ANCHOR_NEGATIVES if cfg.hard_negatives > 0 else 0.0,
               "finetune": steps * texts_per_step * SECONDS_PER_TRAIN_TEXT + validations * val_texts * per_text,
               "evaluate": (2 * n_test_pairs + n_items) * per_text + 2 * n_items * SECONDS_PER_RELATED_ITEM}
    return [(name, seconds[name]) for name in FINETUNE_PHASES]


def _users(db, n_items: int) -> int:
    """Users with events, counted up to what the evaluation would sample (and at most :data:`MAX_USERS_COUNTED`).

    The distinct scan over the user index stops at the limit, so the count stays
    cheap on a large workspace; the training revises the estimate with its own
    user count before the evaluation starts.
    """
    limit = min(MAX_USERS_COUNTED, max(MIN_EVAL_USERS, EVAL_CELLS // max(n_items, 1)))
    return db.execute("SELECT count(*) FROM (SELECT DISTINCT user_id FROM events WHERE user_id IS NOT NULL "
                      "LIMIT ?)", [limit]).fetchone()[0]


def _kind(encoder) -> str:
    """``hashing`` for the hashing encoder (microseconds a text), else ``bert``."""
    return "hashing" if str(getattr(encoder, "encoder_id", "")).startswith("hashing-") else "bert"

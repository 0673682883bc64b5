"""The training use case: split, encode, fit (on an engine), evaluate, register.

:func:`train` is a plain job function (``progress``/``cancel``); the UI runs it
in a worker thread, the CLI in the foreground.  Nothing persistent changes
until the very end, so a cancel or an error leaves the registry and the
active model as they were.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from merch_app.data.job_marks import job_mark
from merch_app.data.workspace import open_workspace, require_writable, workspace_path
from merch_app.engines import Engine
from merch_app.engines.local import LocalEngine
from merch_app.errors import MerchAppError
from merch_app.evaluation.offline import evaluate_model, test_ratings_for
from merch_app.evaluation.split import relevant_items, split_method, time_split
from merch_app.job_phases import PhasePlan
from merch_app.jobs import CancelToken, Progress
from merch_app.memory import trim_heap
from merch_app.model import text_matrix
from merch_app.model.encoder import workspace_encoder
from merch_app.model.hybrid import HybridConfig, HybridModel
from merch_app.model.interactions import Interactions, load_interactions, ts_to_days
from merch_app.model.history_features import users_history_text
from merch_app.model.item_vectors import item_text_vectors
from merch_app.model.registry import (
    ModelVersion, active_version, encoder_for_version, get_version, load_model, save_version,
)
from merch_app.model.user_vectors import user_text_vectors
from merch_app.services import job_estimates


class TrainingError(MerchAppError, ValueError):
    """Training cannot start or finish (message is user-facing)."""


def _waiting(plan: PhasePlan) -> Callable[[float], None]:
    """What a save says while another program (a long import) holds the workspace's write lock."""
    def say(seconds: float) -> None:
        plan.report("save", Progress(0.0, None, f"waiting {seconds:.0f}s for another program's write to the "
                                                "workspace (an import?) to finish; the model is kept"))
    return say


def encoder_spec_of(encoder) -> Optional[str]:
    """A ``load_encoder`` spec that recreates ``encoder`` (None = the default BERT)."""
    enc_id = str(getattr(encoder, "encoder_id", ""))
    if enc_id.startswith("hashing-"):
        return f"hashing:{encoder.dim}"
    int8 = "+int8" if getattr(encoder, "quantize", None) == "int8" else ""
    folder = getattr(encoder, "model_dir", None)
    if folder is not None and not enc_id.startswith("all-MiniLM-L6-v2@"):
        return str(folder) + int8
    return "minilm+int8" if int8 else None


def _user_text(db, inter: Interactions, item_ids, item_text, encoder, until_ts, cfg) -> Optional[np.ndarray]:
    """BERT user vectors aligned with ``inter.user_ids`` (None: let the model derive them)."""
    uids, vecs = user_text_vectors(db, item_ids, item_text, encoder, until_ts=until_ts,
                                   event_weights=cfg.event_weights, half_life_days=cfg.user_text_half_life_days)
    if len(uids) == 0:
        return None
    pos = {str(u): n for n, u in enumerate(uids)}
    theirs = np.fromiter((pos.get(str(u), -1) for u in inter.user_ids), np.int64, inter.n_users)
    del pos
    # filled block by block in the storage dtype: no full float32 copy next to ``vecs`` (0.4 GB at 300k users)
    out = text_matrix.empty(inter.n_users, vecs.shape[1])
    for lo in range(0, inter.n_users, text_matrix.BLOCK_ROWS):
        out[lo:lo + text_matrix.BLOCK_ROWS] = vecs[np.maximum(theirs[lo:lo + text_matrix.BLOCK_ROWS], 0)]
    del vecs
    missing = np.flatnonzero(theirs < 0)  # users whose events the text view does not count: from their history
    if len(missing):
        now = float(inter.ts.max()) + 1e-6 if len(inter) else 0.0
        out[missing] = users_history_text(inter, missing, now, cfg.user_text_half_life_days, item_text)
    return out


def _parked(vectors: Optional[np.ndarray], db) -> Callable[[], Optional[np.ndarray]]:
    """``vectors`` moved to an unlinked temporary file beside the workspace; the function maps them back.

    The final BERT user vectors are made before the epochs (their job needs
    ~0.8 GB of scratch memory, too much next to the epoch state) but used only
    after them; parked on disk they are not resident while the epochs and the
    validation run (0.2 GB at 250k users).  The file has no name, so it goes
    when the last reference does, also after a crash.
    """
    if vectors is None:
        return lambda: None
    path = workspace_path(db)
    try:
        f = tempfile.TemporaryFile(dir=path.parent if path is not None else None)
        vectors.tofile(f)
        f.flush()
    except OSError:  # no room or no write access beside the workspace: keep them in memory
        return lambda kept=vectors: kept
    shape, dtype = vectors.shape, vectors.dtype
    del vectors
    return lambda: np.memmap(f, dtype=dtype, mode="c", shape=shape)  # private: writes never reach the file


def _split_method(db, cfg: HybridConfig) -> str:
    """The config's split method; ``auto``: the 80th percentile of event times for a model that will
    train on ratings (explicit, or auto mode with rating events), the time range otherwise."""
    if cfg.split != "auto":
        return split_method(db, cfg.split)  # validates the name
    if cfg.mode == "implicit":
        return "range"
    return "quantile" if cfg.mode == "explicit" else split_method(db, "auto")


def _snapshot(db, inter: Interactions, split, n_events: int) -> dict[str, Any]:
    first, last = split.first_ts, split.last_ts
    return {"events": n_events, "train_events": len(inter), "users": int(len(np.unique(inter.user_idx))),
            "items": inter.n_items, "first_ts": first, "last_ts": last, "split_ts": split.split_ts,
            "split_fraction": split.fraction, "split_method": split.method}


def _refresh_to_now(db, model: HybridModel, cfg) -> None:
    """Bring history/trend features (and unseen users) up to the last event, without retraining.

    Users first seen after the training cut-off join with a text vector from
    their history (no ID embedding), so they get recommendations at once.
    """
    rows = db.execute("SELECT DISTINCT user_id FROM events WHERE user_id IS NOT NULL").fetchall()
    new_users = sorted({str(r[0]) for r in rows} - set(model.user_pos))
    order = [str(u) for u in model.user_ids] + new_users
    everything = load_interactions(db, model.item_ids, event_weights=cfg.event_weights, user_ids=order)
    if not len(everything):
        return
    now = float(everything.ts.max()) + 1e-6
    model.drop_derived()  # rebuilt once at the end: not held next to the history being rebuilt
    trim_heap()  # evaluation's small objects (rankings, id sets) left freed heap behind
    if new_users:
        n_old = len(model.user_ids)  # only the new users' vectors are needed, from their events alone
        text = users_history_text(everything, np.arange(n_old, everything.n_users), now,
                                  cfg.user_text_half_life_days, model.arrays["T_i"])
        model.add_users(new_users, text, derive=False)
    model.refresh_history(everything, now)
    del everything
    trim_heap()
    model._derive()


def train(db_or_path, config: Optional[HybridConfig] = None, progress=None, cancel: Optional[CancelToken] = None,
          encoder=None, name: Optional[str] = None, *, engine: Optional[Engine] = None) -> ModelVersion:
    """Train, evaluate and register a new model version.

    Parameters
    ----------
    db_or_path
        Open workspace or its path (a path opens a connection of this thread).
    config
        Hyper-parameters; ``config.split_date`` overrides the 80 % time split,
        ``config.activate`` decides whether the new version becomes active.
    progress, cancel
        Job protocol: ``data["phase"]`` is one of
        :data:`~merch_app.services.job_estimates.TRAIN_PHASES` and
        ``done``/``total``/``eta_seconds`` are that phase's; ``data["overall"]``
        and ``data["overall_eta"]`` are the whole job's
        (:class:`~merch_app.job_phases.PhasePlan`).  Training reports every
        batch and each epoch end, and says so when early stopping ends it
        before ``config.epochs`` (``data["early_stop"]``).
    encoder
        Text encoder; default ``config.encoder`` with the workspace's int8 setting
        (``encoder.workspace_encoder``).
    engine
        Where the item vectors are encoded and the model is fitted (see
        :mod:`merch_app.engines`; default: the local engine, in this process).
        What :meth:`Engine.record` says after the fit (e.g. ``{"engine": "ray",
        "workers": 2}``) goes into the registry row and the data snapshot.

    Returns
    -------
    ModelVersion
        The registered version (metrics: model, baselines, cold start).

    Raises
    ------
    TrainingError, SplitError
        Not enough data; nothing is written.
    Cancelled
        ``cancel`` was set; nothing is written.
    """
    engine = engine or LocalEngine()
    own = isinstance(db_or_path, (str, Path))
    db = open_workspace(db_or_path) if own else db_or_path
    try:
        require_writable(db)  # before minutes of fitting whose model could not be saved
        with job_mark(db, "train", name or ""), engine.session():
            return _train(db, config, progress, cancel, encoder, name, engine)
    finally:
        if own:
            db.close()


def _train(db, config, progress, cancel, encoder, name, engine: Engine) -> ModelVersion:
    cfg = HybridConfig.from_dict((config or HybridConfig()).to_dict())
    t0 = time.perf_counter()
    encoder = encoder or workspace_encoder(db, cfg.encoder)
    if cfg.encoder is None:
        cfg.encoder = encoder_spec_of(encoder)
    split = time_split(db, cfg.split_date, method=_split_method(db, cfg))
    plan = PhasePlan(job_estimates.training_estimates(db, cfg, encoder, split.split_ts), progress)
    plan.start("encode", f"item text vectors ({encoder.encoder_id})")
    engine.prepare_item_vectors(db, encoder, progress=plan.phase("encode"), cancel=cancel)
    item_ids, item_text = item_text_vectors(db, encoder, progress=plan.phase("encode"), cancel=cancel)
    if len(item_ids) == 0:
        raise TrainingError("the workspace has no items: import a catalogue or transactions first")
    plan.start("user vectors", "reading the events before the split, user text vectors")
    inter = load_interactions(db, item_ids, until_ts=split.split_ts, event_weights=cfg.event_weights)
    if len(inter) == 0 or inter.n_users == 0:
        raise TrainingError(f"no behaviour events of known users before {split.split_ts[:10]}: nothing to learn")
    if float(inter.ts.min()) == float(inter.ts.max()):  # the model's own validation cut would leave nothing
        raise TrainingError(f"the {len(inter):,} behaviour event(s) before {split.split_ts[:10]} all happen at one "
                            "moment: too little to learn from (choose a later --split-date)")
    plan.revise("train", job_estimates.train_seconds(cfg, len(inter)))
    plan.revise("evaluate", job_estimates.eval_seconds(inter.n_users, len(item_ids)))
    user_text = _parked(_user_text(db, inter, item_ids, item_text, encoder, split.split_ts, cfg), db)
    trim_heap()  # encoding and the user vectors free ~1 GB of small blocks at 1M items / 10M events
    if cancel is not None:
        cancel.check()
    split_day = float(ts_to_days([split.split_ts])[0])
    plan.start("train", f"internal cuts and history weights of {len(inter):,} events")
    model = engine.fit(cfg, inter, item_text, user_text, progress=plan.phase("train"), cancel=cancel,
                       ref_day=split_day)
    recorded = engine.record()
    train_seconds = time.perf_counter() - t0
    plan.start("evaluate", f"test period from {split.split_ts[:10]}")
    seen = {str(model.user_ids[u]) for u in np.unique(inter.user_idx)}
    relevant = relevant_items(db, split.split_ts, seen, item_ids)
    metrics = evaluate_model(model, inter, relevant, 10, progress=plan.phase("evaluate"), cancel=cancel,
                             test_ratings=test_ratings_for(db, model, split.split_ts) if model.explicit else None)
    metrics.update({"split_date": split.split_ts, "split_method": split.method, "split": split.describe(),
                    "best_epoch": model.best_epoch, "epochs": model.history,
                    "combiner": dict(zip(("alpha", "beta", "mu"), map(float, model.combiner[:3])))})
    if model.explicit:  # the closed-form baseline parts chosen at fit (None: off)
        mc = model.config
        metrics["rating_parts"] = {"drift_shrink": mc.rating_drift_shrink if mc.rating_drift else None,
                                   "taste_shrink": mc.rating_taste_shrink if mc.rating_taste else None}
    plan.start("save", "history up to the last event, saving the version")
    n_events = db.execute("SELECT count(*) FROM events").fetchone()[0]
    snapshot = {**_snapshot(db, inter, split, n_events), **recorded}
    del inter, relevant, item_text, user_text  # the model keeps what it needs (0.3 GB at 10M events)
    _refresh_to_now(db, model, cfg)
    snapshot["history_until"] = db.execute("SELECT max(ts) FROM events").fetchone()[0]
    if cancel is not None:
        cancel.check()
    model.drop_derived()  # saving needs the arrays only; U/V/UW would sit next to the vector index
    version = save_version(db, model, name=name, metrics=metrics, data_snapshot=snapshot,
                           encoder_id=encoder.encoder_id, train_seconds=train_seconds,
                           activate_mode=cfg.activate, engine=recorded.get("engine", "local"),
                           cancel=cancel, waiting=_waiting(plan))
    plan.finish(f"saved model version {version.name}")
    return version


def update_with_new_events(db, model_id: Optional[str] = None, epochs: int = 3, progress=None,
                           cancel: Optional[CancelToken] = None, encoder=None) -> ModelVersion:
    """Continue training a version (active one if None) on everything up to now.

    New catalogue items and new users join through their text vectors, the
    CF part gets ``epochs`` more passes over all events and the history
    features move to the last event.  The result is a new version (activated
    when its parent was active); the parent stays in the registry.
    """
    own = isinstance(db, (str, Path))
    db = open_workspace(db) if own else db
    try:
        require_writable(db)
        version = get_version(db, model_id) if model_id else active_version(db)
        if version is None:
            raise TrainingError("no model to update: train one first (merch-app train)")
        t0 = time.perf_counter()
        model = load_model(db, version.model_id)
        encoder = encoder_for_version(version, encoder)
        plan = PhasePlan(job_estimates.update_estimates(db, encoder, epochs), progress)
        plan.start("encode", f"item text vectors ({encoder.encoder_id})")
        item_ids, item_text = item_text_vectors(db, encoder, progress=plan.phase("encode"), cancel=cancel)
        known = set(model.item_pos)
        new = [n for n, i in enumerate(item_ids) if str(i) not in known]
        if new:
            model.add_items([str(item_ids[n]) for n in new], item_text[new])
        since = version.data_snapshot.get("history_until") or version.data_snapshot.get("last_ts")
        cfg = model.config
        n_new = db.execute("SELECT count(*) FROM events WHERE ts > ?", [since or ""]).fetchone()[0]
        plan.start("history", "history up to the last event")
        _refresh_to_now(db, model, cfg)
        everything = load_interactions(db, model.item_ids, event_weights=cfg.event_weights, user_ids=model.user_ids)
        model.continue_training(everything, epochs=epochs, progress=plan.phase("train"), cancel=cancel)
        if cancel is not None:
            cancel.check()
        plan.start("save", "saving the version")
        snapshot = {**version.data_snapshot, "parent": version.model_id, "new_events": int(n_new),
                    "new_items": len(new), "events": db.execute("SELECT count(*) FROM events").fetchone()[0],
                    "history_until": db.execute("SELECT max(ts) FROM events").fetchone()[0]}
        metrics = {**version.metrics, "note": f"updated from {version.model_id}; metrics are the parent's"}
        updated = save_version(db, model, name=f"{version.name} + update", metrics=metrics, data_snapshot=snapshot,
                               encoder_id=encoder.encoder_id,
                               train_seconds=time.perf_counter() - t0,
                               activate_mode="always" if version.active else "never", cancel=cancel,
                               waiting=_waiting(plan))
        plan.finish(f"saved model version {updated.name}")
        return updated
    finally:
        if own:
            db.close()

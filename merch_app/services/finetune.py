"""The fine-tuning use case: pairs, hard negatives, fine-tune, evaluate before/after, register, activate.

:func:`finetune` is a plain job function (``progress``/``cancel``) shared by
the CLI (``merch-app finetune``) and the GUI.  Training pairs come from the
events before the evaluation split (:func:`merch_app.evaluation.split.time_split`),
the before/after table from the pairs after it, so the numbers are honest.
Nothing persistent changes until the new encoder is complete, evaluated and
registered: a cancel or an error leaves the encoder registry, the active
encoder and the embedding cache as they were.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from merch_app.data.job_marks import job_mark
from merch_app.data.workspace import open_workspace
from merch_app.engines import Engine
from merch_app.engines.local import LocalEngine
from merch_app.evaluation.encoder_eval import compare_encoders, retrieval_scores
from merch_app.evaluation.related_items import AlsoBought, also_bought, paired_related, related_items_view
from merch_app.evaluation.split import time_split
from merch_app.job_phases import PhasePlan
from merch_app.jobs import CancelToken, ProgressCallback
from merch_app.model.bert_encoder import BertEncoder
from merch_app.model.bundle import load_bundle
from merch_app.model.encoder import load_encoder, workspace_encoder
from merch_app.model.encoder_versions import EncoderVersion, save_encoder_version
from merch_app.model.finetune import (VALIDATION_METRIC, FinetuneConfig, FinetuneError, no_validation_note,
                                     split_validation)
from merch_app.model.finetune_pairs import Pair, mine_hard_negatives, training_pairs
from merch_app.model.item_vectors import item_text_vectors
from merch_app.services.job_estimates import finetune_estimates

MAX_TEST_PAIRS = 5000  # held-out pairs scored before/after (drawn by weight, seeded)
VALIDATION_METRICS = ("ndcg@10", "recall@10")
RELATED_METRICS = ("ndcg@10", "recall@10")


@dataclass
class FinetuneResult:
    """What :func:`finetune` did: the registered version and its before/after table.

    ``version`` is None when no training step beat the base encoder on the validation
    pairs: the weights would be an unchanged copy, so nothing is saved (``note`` says so).
    """

    version: Optional[EncoderVersion]
    activated: bool
    comparison: dict[str, Any]
    validation: dict[str, Any]
    n_pairs: int
    n_test_pairs: int
    seconds: float
    pair_counts: dict[str, int] = field(default_factory=dict)
    note: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready result (the version row without its training history)."""
        version = None
        if self.version is not None:
            version = self.version.to_dict()
            version["metrics"] = {k: v for k, v in version["metrics"].items() if k != "history"}
        return {"version": version, "activated": self.activated, "comparison": self.comparison,
                "validation": self.validation, "n_pairs": self.n_pairs, "n_test_pairs": self.n_test_pairs,
                "pair_counts": self.pair_counts, "seconds": self.seconds, "note": self.note}


def _validator(val: list[Pair], item_text: dict[str, str], item_ids: list[str], pool_size: int, seed: int):
    """``validate(encode)``: retrieval metrics of the validation pairs over a fixed item pool
    (their positives and anchor items plus a seeded sample of the catalogue)."""
    if not val:
        return None
    needed = {p.item_id for p in val} | {i for p in val for i in p.anchor_items}
    rest = [i for i in item_ids if i not in needed]
    rng = np.random.default_rng(seed)
    extra = max(0, int(pool_size) - len(needed))
    sample = [rest[j] for j in sorted(rng.choice(len(rest), min(extra, len(rest)), replace=False))] if rest else []
    pool = sorted(needed | set(sample))
    texts = [item_text[i] for i in pool]

    def validate(encode) -> dict[str, float]:
        vectors = encode(texts)
        return retrieval_scores(val, pool, vectors, encode, metrics=VALIDATION_METRICS)["mean"]

    return validate


def _related_view(db, encoder, split_ts: str, truth: AlsoBought, cancel) -> dict[str, Any]:
    """The encoder's text-only related lists against what each item's buyers also bought after the split."""
    return related_items_view(db, load_bundle(db, encoder=encoder, text_only=True), split_ts, related_by="text",
                              truth=truth, cancel=cancel)


def related_change(before: dict[str, Any], after: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Before/after rows of two :func:`related_items_view` results, shaped like :func:`compare_encoders`'.

    Returns
    -------
    dict
        ``n_items`` and per metric of ``RELATED_METRICS``: ``before``, ``after``, ``delta``,
        ``p_value`` (paired randomisation test item by item), ``ci_delta``; empty when no item
        had enough buyers after the split to be measured.
    """
    if not before["n_items"]:
        return {}
    test = paired_related(before, after, seed=seed)
    return {"n_items": test["n_items"], **{
        m: {"before": test[m]["a"], "after": test[m]["b"], "delta": test[m]["delta"],
            "p_value": test[m]["p_value"], "ci_delta": test[m]["ci_delta"]} for m in RELATED_METRICS}}


def _base_encoder(db, spec: Optional[str]) -> BertEncoder:
    encoder = workspace_encoder(db, spec, int8=False)
    if not isinstance(encoder, BertEncoder):
        raise FinetuneError(f"the encoder {getattr(encoder, 'encoder_id', spec)!r} is not a BERT model: "
                            "only BERT encoders can be fine-tuned (use --encoder DIR or the packaged MiniLM)")
    return encoder


def finetune(db_or_path, config: Optional[FinetuneConfig] = None, progress: Optional[ProgressCallback] = None,
             cancel: Optional[CancelToken] = None, *, encoder: Optional[str] = None,
             name: Optional[str] = None, engine: Optional[Engine] = None) -> FinetuneResult:
    """Fine-tune the workspace's encoder on its behaviour and register the result as an encoder version.

    Parameters
    ----------
    db_or_path
        Open workspace or its path (a path opens a connection of this thread).
    config
        Settings (:class:`~merch_app.model.finetune.FinetuneConfig`); ``activate``
        None makes the new version active when it improves the held-out NDCG@10.
    progress, cancel
        Job protocol; ``data["phase"]`` is ``pairs``, ``encode``, ``negatives``,
        ``finetune`` (with ``loss``, ``ndcg@10``, ``recall@10``) or ``evaluate``
        (:data:`~merch_app.services.job_estimates.FINETUNE_PHASES`), with that
        phase's ``done``/``total``; ``data["overall"]`` and ``data["overall_eta"]``
        are the whole job's (:class:`~merch_app.job_phases.PhasePlan`).
    encoder
        The encoder to start from (a BERT folder or ``minilm``); default: the
        workspace's active encoder (the packaged MiniLM when none is active).
    name
        Display name of the new version.
    engine
        Where the training loop runs (see :mod:`merch_app.engines`; default: the
        local engine, in this process).  The engine's name, its workers and what
        :meth:`Engine.record` says go into the version's data snapshot; the
        engine and workers also into its train config.

    Returns
    -------
    FinetuneResult
        The registered version, whether it was activated, and the before/after
        comparison on the pairs after the split (NDCG@10, recall@10, recall@50,
        paired randomisation test).

    Raises
    ------
    FinetuneError, SplitError
        Too little behaviour, or an encoder that cannot be fine-tuned; nothing is written.
    Cancelled
        ``cancel`` was set; nothing is written.
    """
    engine = engine or LocalEngine()
    own = isinstance(db_or_path, (str, Path))
    db = open_workspace(db_or_path) if own else db_or_path
    try:
        with job_mark(db, "finetune", name or ""), engine.session():
            return _finetune(db, FinetuneConfig.from_dict((config or FinetuneConfig()).to_dict()), progress,
                             cancel, encoder, name, engine)
    finally:
        if own:
            db.close()


def _finetune(db, cfg: FinetuneConfig, progress, cancel, spec: Optional[str], name: Optional[str],
              engine: Engine) -> FinetuneResult:
    t0 = time.perf_counter()
    base = _base_encoder(db, spec)
    split = time_split(db, cfg.split_date)
    plan = PhasePlan(finetune_estimates(db, cfg, base, cfg.max_pairs, MAX_TEST_PAIRS), progress)
    plan.start("pairs", f"behaviour pairs before {split.split_ts[:10]}")
    train_set = training_pairs(db, until_ts=split.split_ts, max_pairs=cfg.max_pairs, kinds=cfg.kinds, seed=cfg.seed,
                               progress=plan.phase("pairs"), cancel=cancel)
    if len(train_set.pairs) < 2:
        raise FinetuneError(f"no behaviour pairs before {split.split_ts[:10]}: fine-tuning needs searches followed "
                            "by clicks, carts or purchases, or items bought together in one basket")
    test_set = training_pairs(db, until_ts=None, since_ts=split.split_ts, max_pairs=MAX_TEST_PAIRS, kinds=cfg.kinds,
                              seed=cfg.seed + 1, cancel=cancel)
    for phase, seconds in finetune_estimates(db, cfg, base, len(train_set.pairs), len(test_set.pairs)):
        plan.revise(phase, seconds)
    item_text = train_set.item_text
    plan.start("encode", f"item text vectors ({base.encoder_id})")
    item_ids, base_vectors = item_text_vectors(db, base, progress=plan.phase("encode"), cancel=cancel)
    item_ids = [str(i) for i in item_ids]
    pairs = train_set.pairs
    if cfg.hard_negatives > 0:
        pairs = mine_hard_negatives(pairs, item_ids, base_vectors, base.encode, item_text=item_text,
                                    per_pair=cfg.hard_negatives, seed=cfg.seed, cancel=cancel,
                                    progress=plan.phase("negatives"))
    train, val = split_validation(pairs, cfg)
    validate = _validator(val, item_text, item_ids, cfg.val_pool, cfg.seed)
    plan.start("finetune", f"{len(train):,} training pairs, "
               + (f"{len(val):,} validation pairs" if val else no_validation_note(cfg)))
    run = engine.fine_tune(base.model_dir, train, item_text, cfg, validation=val, validate=validate,
                           progress=plan.phase("finetune"), cancel=cancel)
    recorded = {"engine": engine.name, "workers": engine.describe().get("workers", 1), **engine.record()}
    test_pairs = test_set.pairs
    if run.best and run.best.get("step", 0) == 0:
        start = run.best.get(VALIDATION_METRIC, 0.0)
        plan.finish("no training step beat the base encoder: nothing saved")
        return FinetuneResult(
            version=None, activated=False, comparison={}, validation=run.best, n_pairs=run.n_train,
            n_test_pairs=len(test_pairs), seconds=time.perf_counter() - t0, pair_counts=train_set.counts,
            history=run.history,
            note=(f"no training step beat the base encoder on the {run.n_val:,} validation pairs (validation "
                  f"{VALIDATION_METRIC} {start:.4f} before training): nothing was saved, the encoders are unchanged"))
    plan.start("evaluate", f"frozen encoder on {len(test_pairs):,} held-out pairs")
    evaluate = plan.phase("evaluate")
    before = retrieval_scores(test_pairs, item_ids, base_vectors, base.encode, cancel=cancel)
    truth = also_bought(db, split.split_ts, item_ids, cancel=cancel)
    related_before = _related_view(db, base, split.split_ts, truth, cancel)
    outcome: dict[str, Any] = {}

    def evaluate_after(folder: Path, encoder_id: str) -> dict[str, Any]:
        tuned = load_encoder(str(folder))  # the instance ranking will use (one per folder)
        ids, vectors = item_text_vectors(db, tuned, progress=evaluate, cancel=cancel)
        after = retrieval_scores(test_pairs, [str(i) for i in ids], vectors, tuned.encode, cancel=cancel)
        comparison = compare_encoders(before, after, seed=cfg.seed)
        comparison["related"] = related_change(related_before, _related_view(db, tuned, split.split_ts, truth, cancel),
                                               seed=cfg.seed)
        outcome["comparison"] = comparison
        return {"test": comparison, "validation": run.best, "history": run.history, "steps": run.steps,
                "n_validation_pairs": run.n_val, "split_ts": split.split_ts}

    def activate_if(metrics: dict[str, Any]) -> bool:
        if cfg.activate is not None:
            return bool(cfg.activate)
        test = metrics["test"]
        if test.get("n_anchors"):
            return test[VALIDATION_METRIC]["delta"] > 0
        return bool(run.best) and run.best.get("step", 0) > 0  # no held-out pairs: the validation decides

    counts = db.execute("SELECT count(*), max(ts) FROM events").fetchone()
    snapshot = {"events": int(counts[0] or 0), "max_ts": counts[1], "split_ts": split.split_ts,
                "train_events": train_set.snapshot.get("events"), "train_pairs": train_set.counts,
                "test_pairs": test_set.counts, "available_pairs": train_set.snapshot.get("available"), **recorded}
    version = save_encoder_version(
        db, config=run.bert_config, parent_dir=base.model_dir, write_weights=run.write_weights,
        weights_sha=run.weights_sha(), parent_encoder_id=base.encoder_id, parent_spec=str(base.model_dir),
        train_config={**cfg.to_dict(), "engine": recorded["engine"], "workers": recorded["workers"]},
        data_snapshot=snapshot, n_pairs=run.n_train,
        train_seconds=time.perf_counter() - t0, name=name, before_register=evaluate_after, activate_if=activate_if)
    plan.finish(f"saved encoder version {version.version_id}")
    return FinetuneResult(version=version, activated=version.active, comparison=outcome.get("comparison", {}),
                          validation=run.best, n_pairs=run.n_train, n_test_pairs=len(test_pairs),
                          seconds=time.perf_counter() - t0, pair_counts=train_set.counts)


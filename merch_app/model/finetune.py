"""Contrastive fine-tuning of the BERT text encoder on behaviour pairs (CPU, seeded, cancellable).

Plain torch on :mod:`merch_app.model.bert_torch`, not sentence-transformers: its training path pulls in
transformers' model classes, accelerate and datasets for a loss that is ten lines here, and training the very
module the app encodes with makes the saved weights load bit-for-bit in :class:`BertEncoder`.

The loss is MultipleNegativesRanking (InfoNCE with in-batch negatives): every
anchor (query / item / history text) should be nearer, in cosine times
``scale``, to its own positive item text than to the other positives of the
batch and to the batch's hard negatives (:func:`merch_app.model.finetune_pairs.mine_hard_negatives`).
In-batch items that are in fact positives of the anchor (the same item, the
anchor item itself, another known positive) are masked out.  Rows are weighted
by the pair weight.  Mean pooling is kept, so the result is an ordinary BERT
folder for :class:`~merch_app.model.bert_encoder.BertEncoder`.

:func:`fine_tune` changes nothing on disk: it returns a :class:`FinetuneRun`
holding the new weights; :mod:`merch_app.model.encoder_versions` saves them.
A cancel raises :class:`~merch_app.jobs.Cancelled` between two batches.
The loop itself is :class:`FinetuneLoop`; the Ray engine runs the same loop on
each of its workers (:mod:`merch_app.engines.ray_finetune`).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from merch_app.errors import MerchAppError
from merch_app.jobs import CancelToken, EtaClock, Progress, ProgressCallback, Throttle
from merch_app.model import bert_torch
from merch_app.model.finetune_pairs import KINDS, Pair, positives_by_anchor

Validator = Callable[[Callable[[list[str]], np.ndarray]], dict[str, float]]
VALIDATION_METRIC = "ndcg@10"


class FinetuneError(MerchAppError, ValueError):
    """Fine-tuning cannot start (message is user-facing)."""


@dataclass
class FinetuneConfig:
    """Settings of one fine-tuning run (defaults: docs/quality.md, fine-tuning section).

    Attributes
    ----------
    epochs
        Passes over the training pairs.
    max_pairs
        Training pairs drawn from the workspace (by weight).
    batch_size
        Pairs per step (each brings its anchor, positive and hard negatives).
    max_length
        Token limit per text while training (encoding for ranking keeps its own).
    lr, warmup, weight_decay
        AdamW learning rate, linear warm-up share of the steps (then linear decay), decay.
    scale
        Cosine scale of the loss (sentence-transformers' default 20).
    freeze_embeddings
        Keep the token/position embeddings fixed (a third of MiniLM's weights).
    freeze_layers
        Lower transformer layers kept fixed (at most all but the top one).
    hard_negatives
        Hard negatives per pair.
    uniformity
        Weight of a spread term added to the loss (Wang & Isola 2020): the log of the mean of
        ``exp(-2 * |x_i - x_j|²)`` over all pairs of the step's unit vectors, lowest when they are
        spread over the sphere.  Contrastive training on basket pairs alone crowds the item vectors
        into one cone; this keeps them apart.  0 (default): the loss is MultipleNegativesRanking alone.
    val_fraction, max_val_pairs
        The latest pairs (in time) that the validation pairs come from (:func:`split_validation`).
    min_val_pairs
        Fewer validation pairs than this cannot tell one step from another (the spread of NDCG@10
        over a few dozen anchors is larger than what training changes): then there is no
        validation, every pair is trained on and the last step's weights are kept.
    val_pool
        Catalogue items ranked for the validation metric (the validation positives plus a seeded sample).
    evals_per_epoch
        Validation runs per epoch (plus one before training).
    seed
        Seed of the shuffling, the sampling and torch.
    kinds
        Pair kinds used.
    split_date
        Evaluation cut-off (default: the 80 % time split).
    activate
        True / False, or None = activate when the held-out metric improves.
    """

    epochs: int = 1
    max_pairs: int = 20000
    batch_size: int = 32
    max_length: int = 32
    lr: float = 5e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    scale: float = 20.0
    freeze_embeddings: bool = True
    freeze_layers: int = 3
    hard_negatives: int = 1
    uniformity: float = 0.0
    val_fraction: float = 0.05
    max_val_pairs: int = 1000
    min_val_pairs: int = 100
    val_pool: int = 2000
    evals_per_epoch: int = 2
    seed: int = 42
    kinds: tuple[str, ...] = KINDS
    split_date: Optional[str] = None
    activate: Optional[bool] = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        d = asdict(self)
        d["kinds"] = list(self.kinds)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinetuneConfig":
        """Settings from :meth:`to_dict` (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in data.items() if k in names})
        cfg.kinds = tuple(cfg.kinds)
        return cfg


@dataclass
class FinetuneRun:
    """The outcome of :func:`fine_tune`: new weights, the BERT config, and the curves."""

    state: dict[str, torch.Tensor]
    bert_config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    n_train: int = 0
    n_val: int = 0
    best: dict[str, Any] = field(default_factory=dict)

    def weights_sha(self) -> str:
        """sha256 over the tensors (names, shapes and bytes, in name order)."""
        h = hashlib.sha256()
        for name in sorted(self.state):
            t = self.state[name].contiguous()
            h.update(name.encode())
            h.update(json.dumps(list(t.shape)).encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    def write_weights(self, path: Path, metadata: dict[str, str]) -> None:
        """Write the weights as safetensors (fp32) with ``metadata`` in the header."""
        save_file({k: v.contiguous() for k, v in self.state.items()}, str(path), metadata=metadata)


def split_validation(pairs: Sequence[Pair], cfg: FinetuneConfig) -> tuple[list[Pair], list[Pair]]:
    """(train, validation) in time order.

    The validation pairs are those of the latest ``val_fraction`` of the pairs (at most
    ``max_val_pairs``) whose anchor never occurs in the earlier pairs, so the metric sees unseen
    queries and items.  The other latest pairs (on a basket-only shop almost all of them) go back
    into training, except those whose positive is a validation anchor's item, which would teach the
    validation pair backwards.  With fewer than ``min_val_pairs`` validation pairs there is no
    validation: every pair is trained on.
    """
    pairs = sorted(pairs, key=lambda p: p.ts)
    n_val = min(int(cfg.max_val_pairs), int(round(len(pairs) * float(cfg.val_fraction))))
    if n_val <= 0 or len(pairs) - n_val < 2:
        return list(pairs), []
    train, latest = list(pairs[:-n_val]), pairs[-n_val:]
    seen = {(p.kind, p.anchor) for p in train}
    val = [p for p in latest if (p.kind, p.anchor) not in seen]
    if len(val) < int(cfg.min_val_pairs):
        return list(pairs), []
    val_anchor_items = {i for p in val for i in p.anchor_items}
    train += [p for p in latest if (p.kind, p.anchor) in seen and p.item_id not in val_anchor_items]
    return train, val


def no_validation_note(cfg: FinetuneConfig) -> str:
    """What a run without validation pairs tells the user (:func:`split_validation` found too few)."""
    return (f"no validation (fewer than {int(cfg.min_val_pairs):,} of the latest pairs have a query or item "
            "training never saw): the last step is kept")


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9), p=2, dim=1)


def _pooled_sorted(stack, enc: dict[str, torch.Tensor], chunk: int) -> torch.Tensor:
    """Unit mean-pooled vectors (with gradients) of a tokenized step, in input order.

    The texts go through the stack in length-sorted chunks of ``chunk``, each cut to its own
    longest text: one pass over all of a step's texts pads a 5-token query to the longest history
    anchor, and padding costs as much as real tokens.  Chunks of two batches (two passes for a step
    of anchors, positives and one hard negative each) measured fastest on 2 cores: more, smaller
    passes lose what they save in padding to per-call overhead (docs/benchmarks.md, fine-tuning at scale).
    """
    mask = enc["attention_mask"]
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    parts = []
    for start in range(0, len(order), chunk):
        idx = order[start:start + chunk]
        n = int(lengths[idx].max())
        hidden = stack(enc["input_ids"][idx, :n], mask[idx, :n], enc["token_type_ids"][idx, :n])
        parts.append(_mean_pool(hidden, mask[idx, :n]))
    return torch.cat(parts)[torch.argsort(order)]


def encode_with(stack, tokenize, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit mean-pooled vectors of ``texts`` under the stack's current weights (no gradients)."""
    dim = int(stack.embeddings.word_embeddings.embedding_dim)
    out = np.zeros((len(texts), dim), np.float32)
    order = np.argsort([len(t) for t in texts], kind="stable")
    was_training = stack.training
    stack.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenize([texts[i] for i in idx])
            hidden = stack(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
            out[idx] = _mean_pool(hidden, batch["attention_mask"]).numpy()
    stack.train(was_training)
    return out


def uniformity_term(vecs: torch.Tensor) -> torch.Tensor:
    """log mean over pairs i < j of exp(-2·|x_i − x_j|²) for unit rows ``vecs``.

    Parameters
    ----------
    vecs
        Unit vectors, one per row (with gradients).

    Returns
    -------
    torch.Tensor
        A scalar: 0 when all rows are the same vector (or there are fewer than two), −4 for two
        orthogonal ones, lower the more spread the rows are (Wang & Isola 2020, uniformity with t = 2).
    """
    n = vecs.shape[0]
    if n < 2:
        return vecs.sum() * 0.0
    i, j = torch.triu_indices(n, n, offset=1)
    sq = (2.0 - 2.0 * (vecs @ vecs.T)).clamp(min=0.0)[i, j]
    return torch.logsumexp(-2.0 * sq, dim=0) - math.log(len(sq))


def _batch_mask(batch: Sequence[Pair], positives: dict, n_neg_cols: list[str]) -> torch.Tensor:
    """False where a column is not a true negative of the row (besides the row's own positive)."""
    cols = [p.item_id for p in batch] + n_neg_cols
    keep = torch.ones(len(batch), len(cols), dtype=torch.bool)
    for i, p in enumerate(batch):
        banned = positives.get((p.kind, p.anchor), set()) | set(p.anchor_items) | {p.item_id}
        for j, c in enumerate(cols):
            if j != i and c in banned:
                keep[i, j] = False
    return keep


def base_config(base_dir: Path) -> dict[str, Any]:
    """The ``config.json`` of a BERT folder that can be fine-tuned.

    Raises
    ------
    FinetuneError
        The config cannot be read, or the folder is not a plain BERT with a ``tokenizer.json``.
    """
    config_path = base_dir / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FinetuneError(f"{config_path}: cannot read the encoder config ({exc})") from exc
    why = bert_torch.native_support(config, base_dir)
    if why is not None:
        raise FinetuneError(f"{base_dir}: only plain BERT folders with a tokenizer.json can be fine-tuned ({why})")
    return config


def _load_base(base_dir: Path) -> tuple[Any, dict[str, Any]]:
    config = base_config(base_dir)
    try:
        stack = bert_torch.load_bert(base_dir, config)
    except (OSError, ValueError, RuntimeError) as exc:
        raise FinetuneError(f"{base_dir}: cannot load the encoder weights ({exc})") from exc
    return stack, config


def usable_pairs(pairs: Sequence[Pair], item_text: dict[str, str]) -> list[Pair]:
    """The pairs whose positive item has a text.

    Raises
    ------
    FinetuneError
        Fewer than two remain.
    """
    train = [p for p in pairs if p.item_id in item_text]
    if len(train) < 2:
        raise FinetuneError(f"{len(train)} training pair(s): fine-tuning needs behaviour with at least two pairs "
                            "(searches followed by clicks, or items bought together)")
    return train


class FinetuneLoop:
    """One fine-tuning run: the network, optimiser, schedule, seeded batches and loss of :func:`fine_tune`.

    :func:`fine_tune` runs it in this process.  The Ray engine's workers run a subclass
    (:class:`merch_app.engines.ray_finetune.ShardedFinetuneLoop`) that overrides the three hooks
    :meth:`encode_step` (each worker encodes its share of the step, the vectors are gathered),
    :meth:`sync_gradients` and :meth:`check_cancel`; everything else is this loop.

    Parameters
    ----------
    base_dir, pairs, item_text, cfg
        As for :func:`fine_tune`.

    Raises
    ------
    FinetuneError
        No usable pairs, or a folder that cannot be fine-tuned.
    """

    def __init__(self, base_dir: Path, pairs: Sequence[Pair], item_text: dict[str, str], cfg: FinetuneConfig) -> None:
        self.t0 = time.perf_counter()
        self.cfg, self.item_text = cfg, item_text
        self.train = usable_pairs(pairs, item_text)
        torch.manual_seed(int(cfg.seed))
        self.rng = np.random.default_rng(int(cfg.seed))
        self.stack, self.bert_config = _load_base(Path(base_dir))
        self.tokenize = bert_torch.FastTokenizer(Path(base_dir), int(cfg.max_length),
                                                 int(self.bert_config.get("pad_token_id") or 0))
        stack = self.stack
        if cfg.freeze_embeddings:
            stack.embeddings.requires_grad_(False)
        n_layers = len(stack.encoder.layer)
        for layer in stack.encoder.layer[: max(0, min(int(cfg.freeze_layers), n_layers - 1))]:  # the top one trains
            layer.requires_grad_(False)
        self.params = [p for p in stack.parameters() if p.requires_grad]
        if not self.params:
            raise FinetuneError("every layer is frozen: nothing to fine-tune (lower freeze_layers)")
        self.optimizer = torch.optim.AdamW(self.params, lr=float(cfg.lr), weight_decay=float(cfg.weight_decay))
        self.batch_size = max(2, int(cfg.batch_size))
        self.steps_per_epoch = math.ceil(len(self.train) / self.batch_size)
        self.total = max(1, self.steps_per_epoch * max(1, int(cfg.epochs)))
        self.warm = max(1, int(round(float(cfg.warmup) * self.total)))
        self.positives = positives_by_anchor(self.train)

    def lr_at(self, step: int) -> float:
        """Learning rate of ``step``: linear warm-up, then linear decay to 0 at the last step."""
        lr, warm, total = float(self.cfg.lr), self.warm, self.total
        return lr * (step / warm if step < warm else max(0.0, (total - step) / max(1, total - warm)))

    def step_negatives(self, batch: Sequence[Pair]) -> list[str]:
        """The hard negatives of ``batch``'s pairs, in pair order (those with a text)."""
        k = max(0, int(self.cfg.hard_negatives))
        return [n for p in batch for n in p.negatives[:k] if n in self.item_text]

    def step_texts(self, batch: Sequence[Pair], negs: Sequence[str]) -> list[str]:
        """Anchors, then positives, then hard negatives: the rows of :meth:`encode_step`."""
        t = self.item_text
        return [p.anchor for p in batch] + [t[p.item_id] for p in batch] + [t[n] for n in negs]

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Unit vectors of ``texts`` with gradients (length-sorted passes of two batches of texts)."""
        return _pooled_sorted(self.stack, self.tokenize(texts), 2 * self.batch_size)  # two with one hard negative

    def encode_step(self, batch: Sequence[Pair], negs: Sequence[str]) -> torch.Tensor:
        """Vectors of the step's anchors, positives and hard negatives (rows of :meth:`step_texts`)."""
        return self.encode_texts(self.step_texts(batch, negs))

    def batch_loss(self, vecs: torch.Tensor, batch: Sequence[Pair], negs: Sequence[str]) -> torch.Tensor:
        """Weighted MultipleNegativesRanking loss of a step (in-batch and hard negatives, known positives masked)."""
        b = len(batch)
        anchors, cands = vecs[:b], vecs[b:]
        scores = float(self.cfg.scale) * anchors @ cands.T
        scores = scores.masked_fill(~_batch_mask(batch, self.positives, list(negs)), float("-inf"))
        weights = torch.tensor([p.weight for p in batch], dtype=scores.dtype)
        loss_rows = F.cross_entropy(scores, torch.arange(b), reduction="none")
        loss = (loss_rows * weights).sum() / weights.sum().clamp(min=1e-9)
        if self.cfg.uniformity:
            loss = loss + float(self.cfg.uniformity) * uniformity_term(vecs)
        return loss

    def sync_gradients(self) -> None:
        """Make the gradients those of the whole batch (one process: they already are)."""

    def check_cancel(self, cancel: Optional[CancelToken]) -> None:
        """Raise :class:`~merch_app.jobs.Cancelled` when the job was cancelled."""
        if cancel is not None:
            cancel.check()

    def run(self, *, validation: Sequence[Pair] = (), validate: Optional[Validator] = None,
            progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> FinetuneRun:
        """Train; arguments and result as :func:`fine_tune`."""
        cfg, stack, tokenize, train, optimizer = self.cfg, self.stack, self.tokenize, self.train, self.optimizer
        batch_size, total = self.batch_size, self.total
        history: list[dict[str, Any]] = []
        clock, throttle = EtaClock(), Throttle(0.1)
        eval_every = max(1, self.steps_per_epoch // max(1, int(cfg.evals_per_epoch)))
        best: dict[str, Any] = {}
        best_state = None

        def run_validation(step: int, epoch: int) -> dict[str, float]:
            nonlocal best, best_state
            if validate is None or not validation:
                return {}
            scores = validate(lambda texts: encode_with(stack, tokenize, list(texts)))
            metrics = {k: float(v) for k, v in scores.items()}
            history.append({"step": step, "epoch": epoch, "validation": True, **metrics})
            score = metrics.get(VALIDATION_METRIC, -math.inf)
            if not best or score > best.get(VALIDATION_METRIC, -math.inf):
                best = {"step": step, **metrics}
                best_state = copy.deepcopy({k: v.detach() for k, v in stack.state_dict().items()})
            return metrics

        def report(step: int, epoch: int, loss: Optional[float], metrics: dict[str, float],
                   final: bool = False) -> None:
            if progress is None or not (final or metrics or throttle.ready()):
                return
            data = {"phase": "finetune", "step": step, "steps": total, "epoch": epoch, "lr": self.lr_at(step),
                    "n_validation": len(validation) if validate is not None else 0}
            if loss is not None:
                data["loss"] = loss
            data.update(metrics)
            text = f"fine-tuning: step {step}/{total}" + (f", loss {loss:.3f}" if loss is not None else "")
            if VALIDATION_METRIC in metrics:
                text += f", validation NDCG@10 {metrics[VALIDATION_METRIC]:.3f}"
            progress(Progress(step, total, text, clock.eta(step, total), data=data))

        self.check_cancel(cancel)
        report(0, 0, None, run_validation(0, 0), final=True)
        step, recent = 0, []
        stack.train()
        for epoch in range(1, max(1, int(cfg.epochs)) + 1):
            order = self.rng.permutation(len(train))
            for start in range(0, len(train), batch_size):
                self.check_cancel(cancel)
                batch = [train[i] for i in order[start:start + batch_size]]
                if len(batch) < 2:
                    continue
                negs = self.step_negatives(batch)
                loss = self.batch_loss(self.encode_step(batch, negs), batch, negs)
                for group in optimizer.param_groups:
                    group["lr"] = self.lr_at(step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.sync_gradients()
                torch.nn.utils.clip_grad_norm_(self.params, 1.0)
                optimizer.step()
                step += 1
                recent = (recent + [float(loss.detach())])[-20:]
                running = float(np.mean(recent))
                history.append({"step": step, "epoch": epoch, "loss": float(loss.detach())})
                metrics = run_validation(step, epoch) if step % eval_every == 0 and step < total else {}
                report(step, epoch, running, metrics)
        final_metrics = run_validation(step, max(1, int(cfg.epochs)))
        report(step, max(1, int(cfg.epochs)), float(np.mean(recent)) if recent else None, final_metrics, final=True)
        state = best_state if best_state is not None else {k: v.detach().clone() for k, v in stack.state_dict().items()}
        return FinetuneRun(state={k: v.clone() for k, v in state.items()}, bert_config=self.bert_config,
                           history=history, seconds=time.perf_counter() - self.t0, steps=step, n_train=len(train),
                           n_val=len(validation), best=best)


def fine_tune(base_dir: Path, pairs: Sequence[Pair], item_text: dict[str, str], cfg: FinetuneConfig, *,
              validation: Sequence[Pair] = (), validate: Optional[Validator] = None,
              progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> FinetuneRun:
    """Fine-tune the BERT folder ``base_dir`` on ``pairs`` (MultipleNegativesRanking + hard negatives).

    Parameters
    ----------
    base_dir
        A BERT folder :mod:`~merch_app.model.bert_torch` runs (``tokenizer.json``, safetensors).
    pairs
        Training pairs (their ``negatives`` are used as hard negatives).
    item_text
        Item id -> text (the texts the item vectors use).
    cfg
        Settings.
    validation
        Held-out pairs; their positives are never trained on.
    validate
        ``validate(encode) -> {"ndcg@10": ..., ...}`` with ``encode(texts) -> unit rows``
        under the current weights; run before training and ``evals_per_epoch``
        times per epoch.  The weights with the best ``ndcg@10`` are returned
        (the initial ones when no step improved it).
    progress, cancel
        Job protocol: ``data`` carries ``phase="finetune"``, ``epoch``, ``step``,
        ``loss`` (running mean of the last 20 steps), ``lr`` and the validation
        metrics after each validation.

    Returns
    -------
    FinetuneRun
        The weights (a copy: nothing is written) and the history.

    Raises
    ------
    FinetuneError
        No usable pairs, or a folder that cannot be fine-tuned.
    Cancelled
        ``cancel`` was set.
    """
    return FinetuneLoop(Path(base_dir), pairs, item_text, cfg).run(validation=validation, validate=validate,
                                                                   progress=progress, cancel=cancel)

"""The trainable parts of the hybrid model and their training loops.

* The **CF part** (torch) fits the bilinear score ``uᵀWv + b_i`` with Adam
  (lazy and row-wise for the ID embeddings: :class:`merch_app.model.optimizers.RowAdam`) on mini-batches:
  BCE of observed (user, item) pairs against sampled negatives (implicit) or
  MSE on ratings (explicit).  ``u = P_u + A·t_u``,
  ``v = Q_i + B·t_i``; ID embeddings are dropped at random (``id_dropout``)
  so the text path alone also scores well (cold start).
* The **combiner** (a weighted logistic regression, fitted exactly after every
  epoch) learns how the CF score, the item bias, the user's own history
  features and the item trend features add up.  Its examples come from an
  internal cut inside the training period (history before the cut, labels =
  items bought after it) while the CF part only sees events before that cut,
  so the CF part cannot memorise the labels and the history weight is learned
  the way it is used at recommendation time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from merch_app.jobs import CancelToken, EtaClock, Progress
from merch_app.memory import one_blas_thread
from merch_app.model import text_matrix
from merch_app.model.history_features import HistoryState
from merch_app.model.topk import top_k_rows


class HybridNet(nn.Module):
    """Parameters of M(u, v) = α·uᵀWv + β·b(i) + γ·h(u, i) + η·g(i) (+ b_u, explicit)."""

    def __init__(self, n_users: int, n_items: int, user_text: np.ndarray, item_text: np.ndarray,
                 dim: int, dropout: float, seed: int, sparse_ids: bool = False) -> None:
        super().__init__()
        # Sparse gradients for the ID embeddings P and Q (with :func:`make_optimizer`): a batch
        # touches a few thousand of a million rows, and dense gradients plus Adam moments made every
        # step update all rows (335 s per epoch and +1 GB at 1M items / 10M events).
        self.sparse_ids = bool(sparse_ids)
        gen = torch.Generator().manual_seed(seed)
        text_dim = item_text.shape[1]
        # fixed inputs; float16 for large catalogues / user sets (rows widened per batch)
        self.register_buffer("T_u", torch.from_numpy(text_matrix.compact(user_text)))
        self.register_buffer("T_i", torch.from_numpy(text_matrix.compact(item_text)))
        self.P = nn.Parameter(torch.randn(n_users, dim, generator=gen) * 0.01)
        self.Q = nn.Parameter(torch.randn(n_items, dim, generator=gen) * 0.01)
        self.A = nn.Parameter(torch.randn(dim, text_dim, generator=gen) / math.sqrt(text_dim))
        self.B = nn.Parameter(torch.randn(dim, text_dim, generator=gen) / math.sqrt(text_dim))
        self.W = nn.Parameter(torch.eye(dim) + torch.randn(dim, dim, generator=gen) * 0.01)
        self.b_item = nn.Parameter(torch.zeros(n_items))
        self.b_user = nn.Parameter(torch.zeros(n_users))
        self.w_text_bias = nn.Parameter(torch.zeros(text_dim))
        self.global_bias = nn.Parameter(torch.zeros(()))
        self.drop = nn.Dropout(dropout)

    def _rows(self, emb: torch.Tensor, T: torch.Tensor, M: torch.Tensor, idx: np.ndarray,
              id_dropout: float, gen: Optional[torch.Generator]):
        """Vectors ``emb + M·t`` for the distinct rows in ``idx``; (vectors, inverse, rows, keep, ids).

        Working on distinct rows makes the cost of the text projection and of
        the backward pass depend on the rows touched, not on the batch size.
        ID dropout and dropout act per row and batch.  ``ids`` are the
        embedding rows themselves (for the L2 penalty: one lookup, so the
        gradient stays sparse); ``T`` may be float16 (widened per batch).
        """
        rows, inv = np.unique(np.asarray(idx, np.int64), return_inverse=True)
        rows, inv = torch.from_numpy(rows), torch.from_numpy(inv.reshape(-1))
        keep = torch.ones(len(rows))
        if self.training and id_dropout > 0:
            keep = (torch.rand(len(rows), generator=gen) >= id_dropout).float()
        ids = nn.functional.embedding(rows, emb, sparse=self.sparse_ids)
        vec = self.drop(ids * keep[:, None] + T.index_select(0, rows).float() @ M.T)
        return vec, inv, rows, keep, ids

    def cf_parts(self, u: np.ndarray, i: np.ndarray, id_dropout: float = 0.0,
                 gen: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(bilinear, item bias, L2 penalty) for pairs; ID parts dropped with ``id_dropout``."""
        uvec, uinv, urows, _, uids = self._rows(self.P, self.T_u, self.A, u, id_dropout, gen)
        vvec, iinv, irows, ikeep, iids = self._rows(self.Q, self.T_i, self.B, i, id_dropout, gen)
        bil = ((uvec @ self.W)[uinv] * vvec[iinv]).sum(-1)
        bias_rows = self.b_item[irows] * ikeep + self.T_i.index_select(0, irows).float() @ self.w_text_bias
        penalty = (uids.pow(2).sum() + iids.pow(2).sum() + self.b_item[irows].pow(2).sum()) / len(u)
        return bil, bias_rows[iinv], penalty

    def proj_penalty(self) -> torch.Tensor:
        eye = torch.eye(self.W.shape[0])
        return self.A.pow(2).sum() + self.B.pow(2).sum() + (self.W - eye).pow(2).sum()

    def numpy_state(self) -> dict[str, np.ndarray]:
        """The parameters as numpy arrays that share the tensors' memory (no copy).

        Callers derive what they need at once (``HybridTrainer._set_state``);
        later optimiser steps change these arrays in place.  P and Q alone
        are 0.3 GB at 1M items, and a copy per epoch was part of the peak.
        """
        names = ["P", "Q", "A", "B", "W", "b_item", "b_user", "w_text_bias"]
        out = {n: getattr(self, n).detach().numpy() for n in names}
        # The text vectors are fixed inputs, never trained: shared as well.
        out["T_u"] = self.T_u.numpy()
        out["T_i"] = self.T_i.numpy()
        return out

    def trained_state(self) -> dict[str, torch.Tensor]:
        """A copy of the trained parameters (for early stopping), without the fixed text buffers."""
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k not in ("T_u", "T_i")}


def popularity_sampler(item_idx: np.ndarray, n_items: int, power: float) -> np.ndarray:
    """Cumulative sampling distribution ∝ (count + 1)^power (unseen items stay possible)."""
    counts = np.bincount(item_idx, minlength=n_items).astype(np.float64)
    p = (counts + 1.0) ** power
    cdf = np.cumsum(p)
    return cdf / cdf[-1]


def sample(cdf: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(n)), len(cdf) - 1).astype(np.int64)


@dataclass
class CombinerExamples:
    """Internal-cut examples for the combiner (fixed for the whole fit).

    Positives are items a user bought after the cut; negatives are the user's
    history items not bought again plus popularity-sampled items.
    """

    u: np.ndarray
    i: np.ndarray
    y: np.ndarray
    w: np.ndarray
    hist: np.ndarray  # (n, n_hist) history features at the cut
    trend: np.ndarray  # (n, n_trend) item trend features at the cut


def combiner_examples(lu: np.ndarray, li: np.ndarray, lw: np.ndarray, state: HistoryState,
                      trend: np.ndarray, item_counts: np.ndarray, negatives: int,
                      rng: np.random.Generator, power: float = 0.75,
                      max_users: Optional[int] = None) -> CombinerExamples:
    """Build :class:`CombinerExamples` from label pairs (lu, li, lw) and the history at the cut.

    Every history item of a label user is an example (positive if bought
    again).  All other items are represented by ``negatives`` samples per
    label, drawn from a half-uniform, half-popularity proposal q and weighted
    by ``1 / (m_u q(j))``: the weighted loss is then an unbiased estimate of
    the loss over the *whole* catalogue, so the fitted weights say how likely a
    history item is bought compared with any other item (without the weights
    the sample would make unseen items look as likely as history items).
    With more than ``max_users`` label users, a uniform sample of them is used
    (every example of a sampled user is kept, so the estimate stays unbiased).
    """
    if max_users is not None and len(lu):
        label_users = np.unique(lu)
        if len(label_users) > max_users:
            pick = np.sort(rng.choice(label_users, int(max_users), replace=False))
            sel = np.isin(lu, pick)
            lu, li, lw = lu[sel], li[sel], lw[sel]
    n_items = state.n_items
    pop = (item_counts.astype(np.float64) + 1.0) ** power
    q = 0.5 / n_items + 0.5 * pop / pop.sum()
    cdf = np.cumsum(q)
    cdf /= cdf[-1]
    label_keys = np.sort(lu * n_items + li)
    users, n_labels = np.unique(lu, return_counts=True)
    hu, hi = state.keys // n_items, state.keys % n_items
    h_mask = np.isin(hu, users) & ~np.isin(state.keys, label_keys)
    m = np.maximum(n_labels * negatives, 1)
    neg_u = np.repeat(users, m)
    neg_i = sample(cdf, len(neg_u), rng)
    neg_w = 1.0 / (np.repeat(m, m) * q[neg_i])
    neg_keys = neg_u * n_items + neg_i
    keep = ~np.isin(neg_keys, label_keys) & ~np.isin(neg_keys, state.keys)
    neg_u, neg_i, neg_w = neg_u[keep], neg_i[keep], neg_w[keep]
    n_h = int(h_mask.sum())
    u = np.concatenate([lu, hu[h_mask], neg_u])
    i = np.concatenate([li, hi[h_mask], neg_i])
    y = np.concatenate([np.ones(len(lu)), np.zeros(n_h + len(neg_u))]).astype(np.float32)
    w = np.concatenate([np.minimum(lw, 1.0), np.ones(n_h), neg_w]).astype(np.float32)
    return CombinerExamples(u, i, y, w, state.features(u, i), trend[i])


# Rows per block of the Newton step's sums: numpy holds the GIL through a
# transposed matrix product (2M x 11 took 85 ms, a GUI stall while training),
# and a block of 64k rows keeps each hold to a few milliseconds.
_GRAM_ROWS = 65_536


def fit_logistic(X, y: np.ndarray, w: np.ndarray, l2: float = 1.0,
                 iters: int = 25) -> tuple[np.ndarray, float]:
    """Weighted L2-regularised logistic regression by Newton steps; (coef, intercept).

    ``X`` is an ``(n, d)`` array or a list of row blocks (concatenated, they
    are the rows of ``y`` and ``w``; no stacked copy is made).

    The combiner has about ten inputs, so exact second-order steps are cheap
    and, unlike SGD on the side of the CF loss, converge every epoch.
    """
    parts = [np.asarray(x) for x in X] if isinstance(X, (list, tuple)) else [np.asarray(X)]
    with one_blas_thread():
        return _newton_logistic(parts, y, w, l2, iters)


def _newton_logistic(parts: list[np.ndarray], y: np.ndarray, w: np.ndarray, l2: float,
                     iters: int) -> tuple[np.ndarray, float]:
    # rows get their float64 copy and intercept column one block at a time (and row blocks may come
    # as a list): a full float64 copy of 2M examples x 17 columns was part of the training's memory peak
    blocks = [(part, start) for part, start in zip(parts, np.cumsum([0] + [len(x) for x in parts[:-1]]))]
    beta = np.zeros(parts[0].shape[1] + 1)
    reg = np.full(len(beta), l2)
    reg[-1] = 0.0
    for _ in range(iters):
        g = reg * beta
        H = np.diag(reg + 1e-9)
        for part, start in blocks:
            for s in range(0, len(part), _GRAM_ROWS):
                block = part[s:s + _GRAM_ROWS]
                xb = np.empty((len(block), len(beta)))
                xb[:, :-1] = block
                xb[:, -1] = 1.0
                p = 1.0 / (1.0 + np.exp(-np.clip(xb @ beta, -30, 30)))
                rows = slice(start + s, start + s + len(block))
                ws = w[rows]
                g += xb.T @ (ws * (p - y[rows]))
                H += (xb * (ws * p * (1 - p))[:, None]).T @ xb
        step = np.linalg.solve(H, g)
        beta -= step
        if np.max(np.abs(step)) < 1e-6:
            break
    return beta[:-1], float(beta[-1])


class Reporter:
    """Turns batch ticks into :class:`Progress` reports (every batch, as the Train screen plots them)."""

    def __init__(self, progress: Optional[Callable[[Progress], None]], total: int) -> None:
        self.progress, self.total, self.done = progress, max(total, 1), 0
        self.clock = EtaClock()

    def tick(self, message: str, data: dict, force: bool = False) -> None:
        """Count one batch (``force``: an epoch-end report that does not count) and report."""
        self.done += 0 if force else 1
        if self.progress:
            self.progress(Progress(done=min(self.done, self.total), total=self.total, message=message,
                                   eta_seconds=self.clock.eta(self.done, self.total), data=dict(data)))


def implicit_batch_loss(net: HybridNet, cfg, ub: np.ndarray, ib: np.ndarray, wb: np.ndarray,
                        neg: np.ndarray, gen: Optional[torch.Generator]) -> torch.Tensor:
    """Implicit CF loss of one batch: positives (ub, ib) with weights ``wb`` (<= 1) against shared ``neg``.

    BCE of every positive against the batch's shared negatives (weighted by
    ``cfg.negatives``) plus the L2 penalties; the training loops (local and
    the Ray engine's distributed one) differ only in how batches are cut.
    """
    softplus = nn.functional.softplus
    n_pos = len(ub)
    wb = torch.from_numpy(np.ascontiguousarray(wb, dtype=np.float32))
    uvec, uinv, urows, _, uids = net._rows(net.P, net.T_u, net.A, ub, cfg.id_dropout, gen)
    vvec, iinv, irows, ikeep, iids = net._rows(net.Q, net.T_i, net.B, np.concatenate([ib, neg]), cfg.id_dropout, gen)
    bias = net.b_item[irows] * ikeep + net.T_i.index_select(0, irows).float() @ net.w_text_bias + net.global_bias
    uw = (uvec @ net.W)[uinv]
    pos_logit = (uw * vvec[iinv[:n_pos]]).sum(-1) + bias[iinv[:n_pos]]
    neg_logit = uw @ vvec[iinv[n_pos:]].T + bias[iinv[n_pos:]][None, :]
    loss = (wb * softplus(-pos_logit)).mean() + cfg.negatives * softplus(neg_logit).mean()
    pen = (uids.pow(2).sum() + iids.pow(2).sum() + net.b_item[irows].pow(2).sum()) / n_pos
    return loss + cfg.l2 * pen + cfg.l2 * 1e-2 * net.proj_penalty()


def explicit_batch_loss(net: HybridNet, cfg, ub: np.ndarray, ib: np.ndarray, rb: np.ndarray,
                        ob: Optional[np.ndarray] = None) -> torch.Tensor:
    """MSE of one batch of ratings ``rb`` for pairs (ub, ib), plus the L2 penalties.

    With ``ob`` (the fixed baseline μ + b_u + b_i of each rating, damped biases fitted in closed
    form) the net learns the residual: ``ob + uᵀWv + wᵀt_i``; its own ID biases and global bias
    are not used (they stay 0), the factors get ``cfg.rating_l2``.
    """
    tu, tr = torch.from_numpy(np.asarray(ub)), torch.from_numpy(np.asarray(rb, dtype=np.float32))
    if ob is not None:
        uvec, uinv, _, _, uids = net._rows(net.P, net.T_u, net.A, ub, 0.0, None)
        vvec, iinv, irows, _, iids = net._rows(net.Q, net.T_i, net.B, ib, 0.0, None)
        bil = ((uvec @ net.W)[uinv] * vvec[iinv]).sum(-1)
        text_bias = (net.T_i.index_select(0, irows).float() @ net.w_text_bias)[iinv]
        pred = bil + text_bias + torch.from_numpy(np.asarray(ob, dtype=np.float32))
        pen = (uids.pow(2).sum() + iids.pow(2).sum()) / len(ub)
        l2 = float(getattr(cfg, "rating_l2", cfg.l2))
        return ((pred - tr) ** 2).mean() + l2 * pen + l2 * 1e-2 * net.proj_penalty()
    bil, bias, pen = net.cf_parts(ub, ib)
    pred = bil + bias + net.b_user[tu] + net.global_bias
    loss = ((pred - tr) ** 2).mean()
    return loss + cfg.l2 * (pen + net.b_user[tu].pow(2).mean()) + cfg.l2 * 1e-2 * net.proj_penalty()


def run_implicit_epoch(net: HybridNet, opt: torch.optim.Optimizer, cfg, pos, neg_cdf: np.ndarray,
                       rng: np.random.Generator, gen: torch.Generator, reporter: Reporter,
                       cancel: Optional[CancelToken], message: str, epoch: int) -> float:
    """One pass of the implicit CF loss over the positive pairs ``pos`` = (u, i, w).

    Each batch of positives shares ``cfg.shared_negatives`` items drawn from
    ``neg_cdf`` (popularity-aware); every positive is scored against all of
    them in one matrix product.  Negatives carry ``cfg.negatives`` times the
    weight of a positive in the BCE loss.  Returns the mean loss.
    """
    u, i, w = pos
    order = rng.permutation(len(u))
    u, i, w = u[order], i[order], np.minimum(w[order], 1.0).astype(np.float32)

    def batch_loss(sl: slice) -> tuple[torch.Tensor, int]:
        ub, ib, wb = u[sl], i[sl], w[sl]
        neg = sample(neg_cdf, cfg.shared_negatives, rng)
        return implicit_batch_loss(net, cfg, ub, ib, wb, neg, gen), len(ub)

    return _run_batches(net, opt, len(u), cfg.batch_size, batch_loss, reporter, cancel, message, epoch)


def run_explicit_epoch(net: HybridNet, opt: torch.optim.Optimizer, cfg, data, gen: torch.Generator,
                       reporter: Reporter, cancel: Optional[CancelToken], message: str, epoch: int) -> float:
    """One pass of the MSE loss over ratings ``data`` = (u, i, rating[, baseline]); returns the mean loss.

    With a fourth array (each rating's baseline μ + b_u + b_i) the net learns the residual.
    """
    u, i, r = data[:3]
    o = data[3] if len(data) > 3 else None

    def batch_loss(sl: slice) -> tuple[torch.Tensor, int]:
        return explicit_batch_loss(net, cfg, u[sl], i[sl], r[sl], None if o is None else o[sl]), len(u[sl])

    return _run_batches(net, opt, len(u), cfg.batch_size, batch_loss, reporter, cancel, message, epoch)


def _run_batches(net: HybridNet, opt: torch.optim.Optimizer, n: int, batch_size: int,
                 batch_loss: Callable[[slice], tuple[torch.Tensor, int]], reporter: Reporter,
                 cancel: Optional[CancelToken], message: str, epoch: int) -> float:
    """One epoch of optimiser steps over ``n`` examples in consecutive batches.

    Parameters
    ----------
    net, opt
        The network (put in training mode) and its optimiser.
    n, batch_size
        Examples in the epoch and per batch (at least one batch runs).
    batch_loss
        ``batch_loss(slice)`` -> (loss tensor, examples in the batch).
    reporter, cancel, message, epoch
        Progress per batch and the cancel check before each batch.

    Returns
    -------
    float
        The example-weighted mean loss of the epoch.
    """
    n_batches = max(1, math.ceil(n / batch_size))
    net.train()
    running, seen = 0.0, 0
    for b in range(n_batches):
        if cancel is not None:
            cancel.check()
        loss, n_batch = batch_loss(slice(b * batch_size, (b + 1) * batch_size))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += loss.item() * n_batch
        seen += n_batch
        reporter.tick(message, {"phase": "train", "epoch": epoch, "batch": b + 1,
                                "loss": running / max(seen, 1), "epoch_end": False})
    return running / max(seen, 1)


def validation_metrics(scores: np.ndarray, val_users: np.ndarray, label_keys: np.ndarray,
                       n_items: int, k: int = 10) -> dict[str, float]:
    """Mean NDCG@k / precision@k of full-catalogue score rows against label keys."""
    k = min(k, scores.shape[1])
    top = top_k_rows(scores, k)  # torch.topk: np.argpartition held the GIL (GUI stalls while training)
    rel = np.isin(val_users[:, None] * n_items + top, label_keys).astype(np.float64)
    n_rel = np.bincount(np.searchsorted(val_users, label_keys // n_items), minlength=len(val_users))
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (rel * disc).sum(1)
    idcg = np.array([disc[: min(n, k)].sum() for n in n_rel])
    ndcg = np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)
    return {"val_ndcg@10": float(ndcg.mean()), "val_precision@10": float(rel.sum(1).mean() / k)}


def validation_ranks(score_rows: Callable[[np.ndarray], np.ndarray], val_users: np.ndarray,
                     label_keys: np.ndarray, n_items: int, k: int = 10,
                     max_cells: int = 4_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Per-user NDCG@k and per-label percentile of full-catalogue scores, over blocks of users.

    Parameters
    ----------
    score_rows
        ``score_rows(users)`` -> ``(len(users), n_items)`` scores.
    val_users, label_keys
        Sorted user indices and sorted ``user * n_items + item`` label keys (every label's user
        is in ``val_users``).
    n_items, k, max_cells
        Catalogue size, cut-off, scores held at once.

    Returns
    -------
    (np.ndarray, np.ndarray)
        NDCG@k per user of ``val_users``, and per label key (in its order) the share of the
        other items scored below it (1 = top, 0.5 = random; as in the evaluation's cold-start view).
    """
    step = max(1, int(max_cells) // max(int(n_items), 1))
    k = min(k, n_items)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    ndcg = np.zeros(len(val_users))
    pct = np.zeros(len(label_keys))
    for lo in range(0, len(val_users), step):
        users = val_users[lo:lo + step]
        a, b = np.searchsorted(label_keys, [users[0] * n_items, (users[-1] + 1) * n_items])
        keys = label_keys[a:b]
        s = np.asarray(score_rows(users), np.float64)
        top = top_k_rows(s, k)
        rel = np.isin(users[:, None] * n_items + top, keys).astype(np.float64)
        n_rel = np.bincount(np.searchsorted(users, keys // n_items), minlength=len(users))
        idcg = np.array([disc[: min(n, k)].sum() for n in n_rel])
        dcg = (rel * disc).sum(1)
        ndcg[lo:lo + len(users)] = np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)
        row = np.searchsorted(users, keys // n_items)
        mine = s[row, keys % n_items]
        above = np.concatenate([(s[row[j:j + step]] > mine[j:j + step, None]).sum(1)
                                for j in range(0, len(row), step)] or [np.zeros(0)]).astype(np.float64)
        pct[a:b] = 1.0 - above / max(n_items - 1, 1)
    return ndcg, pct


def chunked_validation_metrics(score_rows: Callable[[np.ndarray], np.ndarray], val_users: np.ndarray,
                               label_keys: np.ndarray, n_items: int, k: int = 10,
                               max_cells: int = 4_000_000) -> dict[str, float]:
    """:func:`validation_metrics` over blocks of users, ``score_rows(users)`` at most ``max_cells`` scores each.

    Scoring 2,000 validation users against a million items at once needs
    ~40 GB (scores, their negation, the int64 argpartition); blocks keep the
    memory flat.  ``val_users`` and ``label_keys`` are sorted; the means are
    weighted by block size, so the result equals the unblocked one.
    """
    step = max(1, int(max_cells) // max(int(n_items), 1))
    sums: dict[str, float] = {}
    for lo in range(0, len(val_users), step):
        users = val_users[lo:lo + step]
        a, b = np.searchsorted(label_keys, [users[0] * n_items, (users[-1] + 1) * n_items])
        for name, value in validation_metrics(score_rows(users), users, label_keys[a:b], n_items, k).items():
            sums[name] = sums.get(name, 0.0) + value * len(users)
    return {name: value / max(len(val_users), 1) for name, value in sums.items()}

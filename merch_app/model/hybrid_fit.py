"""Fitting the hybrid model: the CF network trained with PyTorch, the combiner, early stopping.

:class:`HybridTrainer` holds the training procedure of a
:class:`~merch_app.model.hybrid.HybridModel` (``HybridModel.fit`` and
``continue_training`` run it); the model itself scores with numpy only, so
ranking never imports torch.  The Ray engine subclasses the trainer to run
the CF epochs data-parallel (:mod:`merch_app.engines.ray_train`).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np
import torch

from merch_app.jobs import CancelToken, Progress
from merch_app.memory import trim_heap
from merch_app.model import cf_module as cf
from merch_app.model import cold_items, text_matrix
from merch_app.model.history_features import (
    HAS_HISTORY, HISTORY_FEATURES, N_HIST, N_TREND, SEASON_FEATURE_COLUMNS, SEASON_LEAD_DAYS, TREND_FEATURES, UNSOLD,
    HistoryState, history_text_vectors,
)
from merch_app.model.hybrid_config import HybridConfig
from merch_app.model.hybrid_files import N_COMBINER
from merch_app.model.interactions import Interactions
from merch_app.model.optimizers import HybridOptimizer
from merch_app.model.rating_bias import (
    DampedBiases, choose_drift, choose_taste, damped_biases, taste_vectors,
)

if TYPE_CHECKING:
    from merch_app.model.hybrid import HybridModel


class HybridTrainer:
    """Trains one :class:`~merch_app.model.hybrid.HybridModel` in place.

    Parameters
    ----------
    model
        The model to fit; its ``config`` holds the hyper-parameters.
    """

    sparse_id_grads = True  # P/Q: sparse gradients, RowAdam (off in the Ray engine: DDP all-reduces dense ones)

    def __init__(self, model: "HybridModel") -> None:
        self.model = model
        self.hist_weights: Optional[np.ndarray] = None

    @property
    def config(self) -> HybridConfig:
        return self.model.config

    def fit(self, interactions: Interactions, item_text: np.ndarray, user_text: np.ndarray | None = None,
            progress: Optional[Callable[[Progress], None]] = None, cancel: Optional[CancelToken] = None,
            validation: Optional[float] = None, ref_day: Optional[float] = None) -> None:
        """Fit the model on ``interactions``; the parameters are those of :meth:`HybridModel.fit`."""
        cfg = self.config
        item_text = text_matrix.compact(item_text)
        if item_text.shape[0] != interactions.n_items:
            raise ValueError(f"item_text has {item_text.shape[0]} rows, catalogue has {interactions.n_items}")
        self.model.user_ids, self.model.item_ids = interactions.user_ids, interactions.item_ids
        self.model.user_pos = self.model.item_pos = None  # built for the new ids at their first use
        self.model.explicit = cfg.mode == "explicit" or (
            cfg.mode == "auto" and bool(np.any(interactions.event_type == "rating")))
        t_end = float(interactions.ts.max()) + 1e-6 if len(interactions) else 0.0
        ref_day = t_end if ref_day is None else max(float(ref_day), t_end)
        threads = torch.get_num_threads()
        try:
            with torch.random.fork_rng():
                torch.manual_seed(cfg.seed)
                torch.set_num_threads(max(1, int(cfg.threads)))
                net = self._fit(interactions, item_text, user_text, progress, cancel, validation, ref_day)
        finally:
            torch.set_num_threads(threads)
        self.model.drop_derived()  # the last epoch's vectors and cut history go before the final ones are built
        self.model.state = None
        self._set_state(net, self.model.history_state(interactions, ref_day),
                        self.model.trend_features(interactions, ref_day))
        if self.model.fill_cold_items():  # cold_impute: items without training sales, from their text neighbours
            self.model._derive()

    def _fit(self, interactions, item_text, user_text, progress, cancel, validation, ref_day):
        if self.model.explicit:
            return self._fit_explicit(interactions, item_text, user_text, progress, cancel)
        share = self.config.val_fraction if validation is None else validation
        return self._fit_implicit(interactions, item_text, user_text, progress, cancel, share, ref_day)

    def _new_net(self, inter: Interactions, user_text: np.ndarray, item_text: np.ndarray):
        cfg = self.config
        net = cf.HybridNet(inter.n_users, inter.n_items, user_text, item_text, cfg.dim, cfg.dropout, cfg.seed,
                           sparse_ids=self.sparse_id_grads)
        return net, HybridOptimizer(net, cfg.lr)

    def _implicit_epoch(self, net, opt, pos, neg_cdf, rng, gen, rep, cancel, message: str, epoch: int) -> float:
        """One implicit-loss epoch; the Ray engine overrides it to run the batches data-parallel."""
        return cf.run_implicit_epoch(net, opt, self.config, pos, neg_cdf, rng, gen, rep, cancel, message, epoch)

    def _explicit_epoch(self, net, opt, data, gen, rep, cancel, message: str, epoch: int) -> float:
        """One rating-loss epoch; the Ray engine overrides it to run the batches data-parallel."""
        return cf.run_explicit_epoch(net, opt, self.config, data, gen, rep, cancel, message, epoch)

    def _fit_implicit(self, inter, item_text, user_text, progress, cancel, val_fraction, ref_day):
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        n_u, n_i = inter.n_users, inter.n_items
        t0, t1 = (float(inter.ts.min()), float(inter.ts.max())) if len(inter) else (0.0, 0.0)
        cut = t0 + self._cut_fraction(t1 - t0) * (t1 - t0)
        if cfg.seasonal_features and not cfg.season_window_days and t1 > cut:
            # the season window is as long as the period the cuts predict (recorded in the config)
            cfg.season_window_days = float(t1 - cut)
        pre, post = inter.before(cut), inter.since(cut)
        state_cut = self.model.history_state(pre, cut)
        trend_cut = self.model.trend_features(pre, cut)
        # labels: what users with a history before the cut bought after it
        lu, li, lw = post.pairs()
        del post
        has_hist = np.zeros(n_u, bool)
        has_hist[state_cut.keys // n_i] = True
        keep = has_hist[lu]
        lu, li, lw = lu[keep], li[keep], lw[keep]
        label_users = np.unique(lu)
        n_val = min(int(round(val_fraction * len(label_users))), cfg.max_val_users)
        val_users = np.sort(rng.permutation(label_users)[:n_val]) if len(label_users) >= 10 else label_users[:0]
        in_val = np.isin(lu, val_users)
        val_keys = np.sort(lu[in_val] * n_i + li[in_val])
        cdf = cf.popularity_sampler(pre.item_idx, n_i, cfg.neg_power)
        examples = None
        if (~in_val).any():
            examples = cf.combiner_examples(lu[~in_val], li[~in_val], lw[~in_val], state_cut, trend_cut,
                                            np.bincount(pre.item_idx, minlength=n_i), cfg.negatives, rng,
                                            cfg.neg_power, cfg.combiner_max_users)
        self.hist_weights = None
        if cfg.history_features and len(label_users):
            self.hist_weights = self._history_weights(inter, t0, t1, val_users, rng, ref_day)
        tu_cut = history_text_vectors(HistoryState.build(pre, cut, cfg.user_text_half_life_days), item_text,
                                      compact=True)
        net, opt = self._new_net(inter, tu_cut, item_text)
        pu, pi, pw = pre.pairs()
        per_epoch = max(1, math.ceil(len(pu) / cfg.batch_size))
        # the refit's pairs are built when it starts (memory); until then their number is estimated
        per_refit = max(1, math.ceil(per_epoch * len(inter) / max(len(pre), 1)))
        del pre
        trim_heap()  # the phases before (encoding, user vectors, cuts) left freed heap behind
        rep = cf.Reporter(progress, cfg.epochs * per_epoch + cfg.refit_epochs * per_refit)
        best, best_metric, bad = None, -np.inf, 0
        self.model.history = []
        for epoch in range(1, cfg.epochs + 1):
            msg = f"epoch {epoch}/{cfg.epochs}"
            self.model.drop_derived()  # last epoch's U/V/UW are rebuilt after this one (0.4 GB at 1M items)
            loss = self._implicit_epoch(net, opt, (pu, pi, pw), cdf, rng, gen, rep, cancel, msg, epoch)
            self._set_state(net, state_cut, trend_cut)
            if examples is not None:
                self._fit_combiner(examples)
            metrics = {}
            if len(val_users):
                metrics = cf.chunked_validation_metrics(self.model.score_matrix, val_users, val_keys, n_i)
                # the CF net's own score (uᵀWv + item bias, unit weights): the combiner's α/β (and
                # α_own) are refitted every epoch and would make this stopping signal jump with them
                cf_part = cf.chunked_validation_metrics(
                    lambda r: self.model.UW[r] @ self.model.V.T + self.model.item_bias[None, :], val_users, val_keys, n_i)
                metrics["val_cf_ndcg@10"] = cf_part["val_ndcg@10"]
            self.model.history.append({"epoch": epoch, "loss": loss, **metrics})
            rep.tick(msg, {"phase": "train", "epoch": epoch, "loss": loss, "epoch_end": True, **metrics},
                     force=True)
            score = metrics.get(cfg.early_stopping_metric, float(epoch))
            if score > best_metric + 1e-5:
                # after the last epoch the net itself is the best state: no copy (0.3 GB at 1M items)
                state = None if epoch == cfg.epochs else net.trained_state()
                best, best_metric, bad = (state, self.model.combiner.copy()), score, 0
                self.model.best_epoch = epoch
            else:
                bad += 1
                if bad >= cfg.early_stopping_patience and epoch >= cfg.min_epochs:
                    rep.total -= (cfg.epochs - epoch) * per_epoch
                    if epoch < cfg.epochs:
                        _report_early_stop(rep, epoch, cfg.epochs, bad, cfg.early_stopping_metric)
                    break
        if best[0] is not None:
            net.load_state_dict(best[0], strict=False)  # the text buffers stay as they are
        self.model.combiner = best[1]
        if cfg.cold_impute and len(val_users) and (cfg.cold_shrink is None or cfg.cold_neighbours is None):
            self._choose_cold(net, state_cut, trend_cut, val_users, val_keys, rep)
        # the cut's vectors, history and pairs go before the final user vectors are made
        self.model.drop_derived()
        self.model.state, self.model.arrays = None, {}
        del state_cut, trend_cut, examples, tu_cut, pu, pi, pw
        net.T_u = net.T_u[:0]
        trim_heap()
        final_tu = _resolve(user_text, cancel)
        if final_tu is None:
            final_tu = history_text_vectors(HistoryState.build(inter, t1 + 1e-6, cfg.user_text_half_life_days),
                                            item_text, compact=True)
        # refit the CF part on the whole period; the combiner keeps its weights
        net.T_u = torch.from_numpy(text_matrix.compact(final_tu))
        cdf_all = cf.popularity_sampler(inter.item_idx, n_i, cfg.neg_power)
        all_u, all_i, all_w = inter.pairs() if cfg.refit_epochs else (np.zeros(0, np.int64),) * 2 + (np.zeros(0),)
        rep.total += cfg.refit_epochs * (max(1, math.ceil(len(all_u) / cfg.batch_size)) - per_refit)
        for r in range(1, cfg.refit_epochs + 1):
            msg, epoch = f"refit {r}/{cfg.refit_epochs}", self.model.best_epoch + r
            loss = self._implicit_epoch(net, opt, (all_u, all_i, all_w), cdf_all, rng, gen, rep, cancel,
                                        msg, epoch)
            self.model.history.append({"epoch": epoch, "loss": loss, "refit": True})
            rep.tick(msg, {"phase": "train", "epoch": epoch, "loss": loss, "epoch_end": True, "refit": True,
                           "refit_from": self.model.best_epoch}, force=True)
        return net

    def _choose_cold(self, net, state_cut: HistoryState, trend_cut: np.ndarray, val_users: np.ndarray,
                     val_keys: np.ndarray, rep: "cf.Reporter") -> None:
        """Choose λ (``cold_shrink``) and k (``cold_neighbours``) of the cold-item imputation at the main cut.

        Runs when the config leaves either open (None); a value the config fixes is kept.

        The best-epoch net scores the validation users of the main internal cut
        (history before the cut, labels after it; items unsold before the cut
        are the cold ones) once without imputation and once per grid point
        (:data:`cold_items.SHRINK_GRID` x :data:`cold_items.NEIGHBOUR_GRID`, or
        the values the config fixes).  A point is admissible when its mean
        per-user NDCG@10 drop against no imputation is at most one standard
        error of that paired difference; among those the one with the highest
        mean percentile of all validation labels (the whole ranking, cold and
        sold items alike) is chosen (λ = 0: nothing is imputed).  The choice is
        written into the config and reported.
        """
        cfg = self.config
        model = self.model
        self._set_state(net, state_cut, trend_cut)
        n_i = model.n_items
        sold = state_cut.item_sales[:, 0] > 0
        kept = {name: model.arrays[name] for name in ("trend", "b_item", "Q")}  # b_item / Q share the net
        shrinks = (cfg.cold_shrink,) if cfg.cold_shrink is not None else cold_items.SHRINK_GRID
        ks = (cfg.cold_neighbours,) if cfg.cold_neighbours is not None else cold_items.NEIGHBOUR_GRID
        is_cold = ~sold[val_keys % n_i]
        rows = []
        for lam, k in [(0.0, 0)] + [(float(a), int(b)) for b in ks for a in shrinks]:
            model.arrays.update({name: arr.copy() for name, arr in kept.items()})
            if lam > 0:
                cold_items.fill_cold(model.arrays, sold, lam, k, bool(cfg.cold_cf_map))
            model._derive()
            ndcg, pct = cf.validation_ranks(model.score_matrix, val_users, val_keys, n_i)
            rows.append({"shrink": lam, "neighbours": k, "ndcg": ndcg, "pct": float(pct.mean()),
                         "cold_pct": float(pct[is_cold].mean()) if is_cold.any() else float("nan")})
        base = rows[0]["ndcg"]
        for r in rows:
            d = r.pop("ndcg") - base
            se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0
            r.update({"ndcg_delta": float(d.mean()), "ndcg_se": se, "admissible": -float(d.mean()) <= se})
        best = max((r for r in rows if r["admissible"]), key=lambda r: r["pct"])
        cfg.cold_shrink = best["shrink"]
        cfg.cold_neighbours = best["neighbours"] or int(ks[0])
        model.arrays.update(kept)
        model._derive()
        rep.tick(f"cold items: λ {cfg.cold_shrink:g}, {cfg.cold_neighbours} text neighbours (validation cut: "
                 f"cold percentile {rows[0]['cold_pct']:.3f} -> {best['cold_pct']:.3f})",
                 {"phase": "train", "cold_choice": rows, "milestone": True}, force=True)

    def _cut_fraction(self, span_days: float) -> float:
        """Where the main internal cut lies, as a fraction of the training time range.

        ``label_horizon_days`` (the length of the period the model will
        predict, e.g. the test period) places the cut that far before the end,
        so the examples ask the same question as the evaluation ("what will
        the user buy in the next H days"); otherwise ``internal_cut``.
        """
        cfg = self.config
        if cfg.label_horizon_days and span_days > 0:
            return float(min(0.9, max(0.5, 1.0 - cfg.label_horizon_days / span_days)))
        return cfg.internal_cut

    def _history_weights(self, inter: Interactions, t0: float, t1: float, val_users: np.ndarray,
                         rng: np.random.Generator, ref_day: Optional[float] = None) -> np.ndarray:
        """Relative weights of the history and trend features, pooled over several internal cuts.

        Cuts at the main internal cut, 0.1 of the time range earlier, ...
        (``extra_cuts`` more), each labelled by the same horizon;
        several seasons make the weights less tied to one period.  With
        ``season_cut``, one more cut one season lag before ``ref_day`` (the
        same weeks of the year as the period to predict), when the events
        reach back to that cut's own season window and its labels lie inside
        the data: the seasonal weights then come from the same season.
        Validation users are left out; features not in ``seasonal_features``
        get weight 0.  Returns (γ, η) concatenated.
        """
        cfg, span = self.config, t1 - t0
        main = self._cut_fraction(span)
        horizon = (1.0 - main) * span
        cuts = [t0 + (main - 0.1 * k) * span for k in range(cfg.extra_cuts + 1)]
        cuts = [c for n, c in enumerate(cuts) if all(x > t0 for x in cuts[:n + 1])]
        if cfg.season_cut and self.model.season() is not None and ref_day is not None:
            lag = float(cfg.season_lag_days)
            c_season = float(ref_day) - lag
            if c_season - lag - SEASON_LEAD_DAYS >= t0 and c_season + horizon <= t1 + 1e-9:
                cuts.append(c_season)
        X, y, w = [], [], []
        n_new = 0  # items unsold at a cut and bought after it, summed over the cuts
        for k, c0 in enumerate(cuts):
            pre = inter.before(c0)
            window = inter.subset((inter.ts >= c0) & (inter.ts < c0 + horizon + 1e-9 + (k == 0)))
            state = self.model.history_state(pre, c0)
            lu, li, lw = window.pairs()
            has = np.zeros(inter.n_users, bool)
            has[state.keys // inter.n_items] = True
            keep = has[lu] & ~np.isin(lu, val_users)
            if not keep.any():
                continue
            ex = cf.combiner_examples(lu[keep], li[keep], lw[keep], state, self.model.trend_features(pre, c0),
                                      np.bincount(pre.item_idx, minlength=inter.n_items), cfg.negatives, rng,
                                      cfg.neg_power, cfg.combiner_max_users)
            X.append(np.hstack([ex.hist, ex.trend]))
            y.append(ex.y)
            w.append(ex.w)
            n_new += new_items_bought(ex)
        if not X:
            return np.zeros(N_HIST + N_TREND, np.float32)
        off = [N_HIST + TREND_FEATURES.index(c) for c in _switched_off(cfg.seasonal_features, TREND_FEATURES, 1)]
        off += [HISTORY_FEATURES.index(c) for c in _switched_off(cfg.seasonal_features, HISTORY_FEATURES, 0)]
        if not cfg.cold_feature or n_new < MIN_NEW_ITEMS:
            off.append(N_HIST + UNSOLD)  # off, or too few new items bought after the cuts to learn from
        for block in X:  # a switched-off feature is a zero column: weight 0 (L2), nothing else moves
            block[:, off] = 0.0
        coef, _ = cf.fit_logistic(X, np.concatenate(y), np.concatenate(w))  # row blocks: no stacked copy
        return coef.astype(np.float32)

    def _fit_combiner(self, ex: "cf.CombinerExamples") -> None:
        """Fit how the CF score, item bias and history/trend features add up, with the current CF part.

        With ``history_features``, the history and trend features enter through
        one combined column (relative weights from :meth:`_history_weights`),
        scaled here together with α (bilinear) and β (item bias).
        """
        bil = self.model.pair_bilinear(ex.u, ex.i)
        cols = [bil[:, None], self.model.item_bias[ex.i][:, None]]
        hw = getattr(self, "hist_weights", None)
        with_hist = bool(self.config.history_features and hw is not None)
        if with_hist:
            # bilinear on the user's own items gets its own weight (α + α_own): the CF part was
            # fitted on those very purchases, so it ranks re-purchases less well than new items
            cols += [(bil * ex.hist[:, HAS_HISTORY])[:, None], (np.hstack([ex.hist, ex.trend]) @ hw)[:, None]]
        learn_cold = bool(self.config.cold_feature and new_items_bought(ex) >= MIN_NEW_ITEMS)
        if learn_cold:
            # bilinear on items unsold at the cut (text only) gets its own weight too (α + α_cold):
            # the cut's new items say how far their text can be trusted
            cols.append((bil * ex.trend[:, UNSOLD])[:, None])
        coef, _ = cf.fit_logistic(np.hstack(cols), ex.y, ex.w)
        comb = np.zeros(N_COMBINER, np.float32)
        comb[0], comb[1] = coef[0], coef[1]
        if with_hist:
            comb[3:3 + N_HIST + N_TREND] = coef[3] * hw
            comb[3 + N_HIST + N_TREND] = coef[2]
        if learn_cold:
            comb[4 + N_HIST + N_TREND] = coef[-1]
        self.model.combiner = comb
        self.model.arrays["combiner"] = comb.copy()
        self.model._derive(vectors=False)

    def _fit_explicit(self, inter, item_text, user_text, progress, cancel):
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        r = inter.subset((inter.event_type == "rating") & np.isfinite(inter.value))
        order = np.argsort(r.ts, kind="stable")
        n_val = int(len(order) * cfg.val_fraction) if len(order) >= 20 else 0
        tr, va = order[: len(order) - n_val], order[len(order) - n_val:]
        user_text = _resolve(user_text, cancel)
        tu = user_text if user_text is not None else history_text_vectors(
            HistoryState.build(r.subset(np.isin(np.arange(len(r)), tr)), float(r.ts.max()) + 1e-6,
                               cfg.user_text_half_life_days), item_text)
        net, opt = self._new_net(inter, tu, item_text)
        per_epoch = max(1, math.ceil(len(tr) / cfg.batch_size))
        rep = cf.Reporter(progress, cfg.epochs * per_epoch)
        offset = None
        if cfg.rating_baseline:
            # μ + damped biases from every training rating (closed form); the net learns the residual
            args = (r.user_idx, r.item_idx, r.value, r.ts)
            n = (inter.n_users, inter.n_items)
            shrinks = (cfg.bias_shrink_user, cfg.bias_shrink_item)
            drift = self._baseline_choice("drift", "user-bias drift", rep, lambda: choose_drift(
                *args, *n, tr, va, *shrinks))
            taste = self._baseline_choice("taste", "user taste in text space", rep, lambda: choose_taste(
                *args, item_text, *n, tr, va, *shrinks, drift_shrink=drift))
            self.base = damped_biases(r.user_idx, r.item_idx, r.value, *n, *shrinks, days=r.ts, drift_shrink=drift)
            if taste is not None:
                residual = r.value - self.base.predict(r.user_idx, r.item_idx, days=r.ts)
                self.base.taste = taste_vectors(r.user_idx, r.item_idx, residual, item_text, inter.n_users, taste)
            offset = self.base.predict(r.user_idx, r.item_idx, days=r.ts, item_text=item_text).astype(np.float32)
        else:
            with torch.no_grad():
                net.global_bias.fill_(float(r.value[tr].mean()) if len(tr) else 0.0)
        best, best_rmse, bad = None, float("inf"), 0
        self.model.history = []
        for epoch in range(1, cfg.epochs + 1):
            perm = rng.permutation(tr)
            data = (r.user_idx[perm], r.item_idx[perm], r.value[perm]) + (() if offset is None else (offset[perm],))
            loss = self._explicit_epoch(net, opt, data, gen, rep, cancel, f"epoch {epoch}/{cfg.epochs}", epoch)
            metrics = {}
            if len(va):
                self._set_state(net, None, np.zeros((inter.n_items, N_TREND), np.float32))
                pred = self.model.predict_pairs(r.user_idx[va], r.item_idx[va])
                err = pred - r.value[va]
                metrics = {"val_rmse": float(np.sqrt(np.mean(err ** 2))), "val_mae": float(np.mean(np.abs(err)))}
            self.model.history.append({"epoch": epoch, "loss": loss, **metrics})
            rep.tick(f"epoch {epoch}/{cfg.epochs}", {"phase": "train", "epoch": epoch, "loss": loss,
                                                     "epoch_end": True, **metrics}, force=True)
            rmse = metrics.get("val_rmse", -epoch)
            if not len(va) or rmse < best_rmse - 1e-6:
                best, best_rmse, bad, self.model.best_epoch = net.trained_state(), rmse, 0, epoch
            else:
                bad += 1
                if bad >= cfg.early_stopping_patience:
                    rep.total -= (cfg.epochs - epoch) * per_epoch
                    if epoch < cfg.epochs:
                        _report_early_stop(rep, epoch, cfg.epochs, bad, "val_rmse")
                    break
        net.load_state_dict(best, strict=False)
        return net

    def _baseline_choice(self, name: str, label: str, rep: "cf.Reporter",
                         choose: Callable[[], dict]) -> Optional[float]:
        """λ of the baseline part ``name`` (``drift`` / ``taste``; None: off): as configured, else chosen.

        ``choose()`` returns :func:`choose_drift`-style ``{"shrink", "val_mae"}``; the choice is
        recorded in the config (``rating_<name>_shrink``, ``rating_<name>`` False when off) and reported.
        """
        cfg = self.config
        if not getattr(cfg, f"rating_{name}"):
            return None
        if getattr(cfg, f"rating_{name}_shrink") is not None:
            return float(getattr(cfg, f"rating_{name}_shrink"))
        chosen = choose()
        if chosen["val_mae"]:
            setattr(cfg, f"rating_{name}_shrink", chosen["shrink"])
            setattr(cfg, f"rating_{name}", chosen["shrink"] is not None)
            scores = ", ".join(f"{k} {v:.4f}" for k, v in chosen["val_mae"].items())
            what = f"λ {chosen['shrink']:g}" if chosen["shrink"] is not None else "off"
            rep.tick(f"{label}: {what} (validation MAE: {scores})",
                     {"phase": "train", f"rating_{name}": chosen, "milestone": True}, force=True)
        return getattr(cfg, f"rating_{name}_shrink")

    def continue_training(self, interactions: Interactions, epochs: int = 3,
                          progress: Optional[Callable[[Progress], None]] = None,
                          cancel: Optional[CancelToken] = None, ref_day: Optional[float] = None) -> None:
        """More CF epochs on ``interactions`` (which use this model's user/item index).

        Add new items/users first (:meth:`add_items`, :meth:`add_users`).  The
        combiner weights are kept; history and trend features are rebuilt at
        ``ref_day`` (default: just after the last event).
        """
        if interactions.n_items != self.model.n_items or interactions.n_users != len(self.model.user_ids):
            raise ValueError("interactions do not use the model's user/item index")
        t_end = float(interactions.ts.max()) + 1e-6 if len(interactions) else self.model.state.ref_day
        ref_day = t_end if ref_day is None else max(float(ref_day), t_end)
        net = self._more_epochs(interactions, epochs, progress, cancel)
        self._set_state(net, self.model.history_state(interactions, ref_day),
                        self.model.trend_features(interactions, ref_day))
        if self.model.fill_cold_items():  # items still without sales: again from their text neighbours
            self.model._derive()

    def _set_state(self, net: cf.HybridNet, state: Optional[HistoryState], trend: np.ndarray) -> None:
        """Copy the trained parameters into numpy arrays used for scoring."""
        a = net.numpy_state()
        if self.model.explicit:
            base = getattr(self, "base", None)
            self.model.combiner = np.zeros(N_COMBINER, np.float32)
            self.model.combiner[:3] = [1.0, 1.0, base.mu if base is not None else float(net.global_bias.item())]
            if base is not None:  # the damped biases: saved with the model, shown by explain
                a["base_user"] = base.user_bias_at()  # with drift: as of the last training rating
                a["base_item"] = base.b_item
                if len(base.taste):
                    a["base_taste"] = base.taste
        a["combiner"] = self.model.combiner.copy()
        a["trend"] = trend.astype(np.float32)
        # which items had no behaviour in the training data: refreshing the trend to "now" later
        # (services.training) must not make their text-only vectors look like co-behaviour ones
        a["unsold_at_fit"] = a["trend"][:, UNSOLD].copy()
        n_u, n_i = a["P"].shape[0], a["Q"].shape[0]
        self.model.state = state or HistoryState.empty(n_u, n_i)
        self.model.arrays = a
        self.model._derive()

    def _more_epochs(self, interactions: Interactions, epochs: int,
                     progress: Optional[Callable[[Progress], None]] = None,
                     cancel: Optional[CancelToken] = None) -> "cf.HybridNet":
        """A net started from ``model``'s parameters, trained ``epochs`` more passes over ``interactions``.

        Implicit models train on the weighted (user, item) pairs, explicit ones on
        the ratings; the combiner is not touched.  Returns the net (the caller
        copies its state into the model).
        """
        model = self.model
        cfg, a = model.config, model.arrays
        threads = torch.get_num_threads()
        try:
            with torch.random.fork_rng():
                torch.manual_seed(cfg.seed)
                torch.set_num_threads(max(1, int(cfg.threads)))
                net = cf.HybridNet(len(model.user_ids), model.n_items, a["T_u"], a["T_i"], cfg.dim, cfg.dropout,
                                   cfg.seed, sparse_ids=self.sparse_id_grads)
                with torch.no_grad():
                    for name in ("P", "Q", "A", "B", "W", "b_item", "b_user", "w_text_bias"):
                        getattr(net, name).copy_(torch.from_numpy(np.asarray(a[name], np.float32)))
                    net.global_bias.fill_(model.mu if model.explicit else 0.0)
                opt = HybridOptimizer(net, cfg.lr)
                rng, gen = np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed + 1)
                if model.explicit:
                    r = interactions.subset((interactions.event_type == "rating") & np.isfinite(interactions.value))
                    rep = cf.Reporter(progress, epochs * max(1, math.ceil(len(r) / cfg.batch_size)))
                    offset = None
                    if "base_user" in a:  # baseline-plus-factors: the damped biases stay, the residual trains
                        self.base = DampedBiases(model.mu, np.asarray(a["base_user"], np.float32),
                                                 np.asarray(a["base_item"], np.float32),
                                                 np.zeros(0, np.int64), np.zeros(0, np.int64))
                        if "base_taste" in a:
                            self.base.taste = a["base_taste"]
                        offset = self.base.predict(r.user_idx, r.item_idx, item_text=a["T_i"]).astype(np.float32)
                        with torch.no_grad():
                            net.global_bias.fill_(0.0)
                    for e in range(1, epochs + 1):
                        perm = rng.permutation(len(r))
                        data = (r.user_idx[perm], r.item_idx[perm], r.value[perm])
                        data += () if offset is None else (offset[perm],)
                        cf.run_explicit_epoch(net, opt, cfg, data, gen, rep, cancel, f"update {e}/{epochs}", e)
                else:
                    pairs = interactions.pairs()
                    cdf = cf.popularity_sampler(interactions.item_idx, model.n_items, cfg.neg_power)
                    rep = cf.Reporter(progress, epochs * max(1, math.ceil(len(pairs[0]) / cfg.batch_size)))
                    for e in range(1, epochs + 1):
                        loss = cf.run_implicit_epoch(net, opt, cfg, pairs, cdf, rng, gen, rep, cancel,
                                                     f"update {e}/{epochs}", e)
                        rep.tick(f"update {e}/{epochs}", {"phase": "train", "epoch": e, "loss": loss,
                                                          "epoch_end": True}, force=True)
        finally:
            torch.set_num_threads(threads)
        return net


# Items unsold at an internal cut and bought after it (distinct, per cut) needed before their weights
# (the trend feature "unsold" over all cuts, α_cold at the main cut) are learned; with fewer both stay
# 0: a handful of new items gave weights of either sign on small planted shops.  Online Retail has
# about 100 at the main cut and 650 over the four cuts.
MIN_NEW_ITEMS = 20


def new_items_bought(ex: "cf.CombinerExamples") -> int:
    """Distinct items among the positives of ``ex`` that had no sales before the cut (``unsold``)."""
    return int(len(np.unique(ex.i[(ex.y > 0) & (ex.trend[:, UNSOLD] > 0)])))


METRIC_WORDS = {"val_cf_ndcg@10": "validation NDCG@10 of the CF part", "val_ndcg@10": "validation NDCG@10",
                "val_precision@10": "validation precision@10", "val_rmse": "validation RMSE"}


def early_stop_message(epoch: int, epochs: int, without_gain: int, metric: str) -> str:
    """``early stopping at epoch 12 of 20 (no gain in validation NDCG@10 … for 3 epochs)``.

    Parameters
    ----------
    epoch, epochs
        The last epoch run and the epochs configured.
    without_gain
        Epochs in a row without a gain in ``metric`` (at least the patience).
    metric
        The stopping metric's key (e.g. ``val_cf_ndcg@10``).

    Returns
    -------
    str
        The sentence the training job reports.
    """
    noun = "epoch" if without_gain == 1 else "epochs"
    return (f"early stopping at epoch {epoch} of {epochs} "
            f"(no gain in {METRIC_WORDS.get(metric, metric)} for {without_gain} {noun})")


def _report_early_stop(rep: "cf.Reporter", epoch: int, epochs: int, without_gain: int, metric: str) -> None:
    rep.tick(early_stop_message(epoch, epochs, without_gain, metric),
             {"phase": "train", "epoch": epoch, "epochs": epochs, "early_stop": True, "without_gain": without_gain,
              "metric": metric, "milestone": True}, force=True)


def _switched_off(enabled, names: tuple[str, ...], which: int) -> list[str]:
    """Seasonal feature columns of ``names`` whose group is not in ``enabled`` (which: 0 history, 1 trend)."""
    return [col for group, cols in SEASON_FEATURE_COLUMNS.items() if group not in (enabled or [])
            for col in cols[which] if col in names]


def _resolve(user_text, cancel: Optional[CancelToken]) -> Optional[np.ndarray]:
    """``user_text`` itself, or what the function passed as ``user_text`` returns."""
    if not callable(user_text):
        return user_text
    out = user_text()
    if cancel is not None:
        cancel.check()
    return out

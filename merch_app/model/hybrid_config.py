"""Hyper-parameters of the hybrid model (:class:`HybridConfig`, JSON-serialisable)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

from merch_app.model.interactions import DEFAULT_EVENT_WEIGHTS


@dataclass
class HybridConfig:
    """Hyper-parameters of :class:`~merch_app.model.hybrid.HybridModel` (all JSON-serialisable)."""

    dim: int = 64
    epochs: int = 20
    lr: float = 0.005
    l2: float = 1e-4
    dropout: float = 0.1
    id_dropout: float = 0.25
    negatives: int = 4  # weight of the negatives per positive in the BCE loss
    shared_negatives: int = 512  # items sampled per batch, scored against every positive
    batch_size: int = 4096
    event_weights: dict = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    mode: str = "auto"  # implicit | explicit | auto (explicit when rating events exist)
    seed: int = 42
    split_date: Optional[str] = None
    # where the default train/test cut-off lies: "range" (80 % of the event time range), "quantile"
    # (the 80th percentile of the event times, so most test users are known), "auto" (quantile when
    # the workspace has rating events, else range)
    split: str = "auto"
    # explicit mode: μ + damped user and item biases in closed form (b_i = Σ(r − μ)/(n_i + λ_item),
    # b_u = Σ(r − μ − b_i)/(n_u + λ_user)), the factors and text parts learned on the residual
    rating_baseline: bool = True
    bias_shrink_user: float = 10.0
    bias_shrink_item: float = 25.0
    # explicit mode: each user's bias drifts linearly in time, b_u(t) = b_u + d_u·(t − t̄_u), damped by
    # λ_drift (rating_bias); None: chosen at fit by the MAE on the last val_fraction of the training
    # ratings and recorded here (rating_drift False when no drift predicts them better)
    rating_drift: bool = True
    rating_drift_shrink: Optional[float] = None
    # explicit mode: each user's taste in text space, a ridge regression of what the biases leave on the
    # rated items' text vectors (rating_bias), damped by λ_taste; None: chosen like rating_drift_shrink
    rating_taste: bool = True
    rating_taste_shrink: Optional[float] = None
    rating_l2: float = 0.05  # L2 weight of the factors on the rating residual
    early_stopping_patience: int = 3
    min_epochs: int = 4  # early stopping never ends training before this epoch
    # val_cf_ndcg@10: the CF part alone on the validation users.  The full
    # model's val_ndcg@10 is dominated by the history features and barely
    # moves with the CF part, so it stops too early to train the CF part.
    early_stopping_metric: str = "val_cf_ndcg@10"
    history_features: bool = True
    history_half_life_days: float = 60.0
    user_text_half_life_days: float = 90.0
    internal_cut: float = 0.8
    label_horizon_days: Optional[float] = None  # label window of the internal cuts (None: 1 - internal_cut)
    val_fraction: float = 0.15
    max_val_users: int = 2000
    refit_epochs: int = 2
    extra_cuts: int = 3  # earlier internal cuts pooled for the history/trend weights
    # label users per cut whose examples fit the combiner (~20 weights): a sample
    # beyond this (at 1M items / 10M events all users' examples took ~9 GB)
    combiner_max_users: int = 20_000
    relative_recency: bool = True  # history ages from the user's own last event
    # seasonality (model format 5): features of the weeks a year earlier that match the predicted
    # period, [t - lag - 7 d, t - lag + window); names from history_features.SEASON_FEATURE_COLUMNS
    seasonal_features: list = field(default_factory=lambda: ["user_last_year", "item_last_year", "calendar",
                                                                   "christmas_item", "christmas_user"])
    season_lag_days: float = 364.0  # 52 weeks: the same weekdays a year earlier
    season_window_days: Optional[float] = None  # None: set at fit to the label horizon of the internal cuts
    season_cut: bool = True  # pool an internal cut one lag before the prediction time (same season) if the data allows
    # cold start, learned (model format 6; the default): the trend feature "unsold" (no sales before
    # the reference time) gets a weight from the internal cuts, and the bilinear part of unsold items
    # its own weight α + α_cold from the main cut (the cuts' new items say how far text alone can be
    # trusted).  Off: both weights 0, scores as format 5 did.  See docs/quality.md, cold start.
    cold_feature: bool = True
    # cold start, imputed (model.cold_items; off by default): items without sales before the reference
    # time take their trend row and item bias as cold_shrink x the similarity-weighted mean of their
    # cold_neighbours nearest sold items in text space (None: chosen on the internal validation cut at
    # fit and recorded here); cold_cf_map also predicts their ID embedding Q from their text (ridge map
    # fitted on the sold items).  With cold_feature on, the validation cut chooses λ = 0 on Online Retail.
    cold_impute: bool = False
    cold_shrink: Optional[float] = None
    cold_neighbours: Optional[int] = None
    cold_cf_map: bool = False
    neg_power: float = 0.75
    threads: int = 1  # torch threads; small matrices train faster without OpenMP contention
    encoder: Optional[str] = None
    activate: str = "if_none"  # if_none | always | never

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for ``config.json``).

        Returns
        -------
        dict
            Field name to value.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HybridConfig":
        """A config from :meth:`to_dict` output; unknown keys are ignored, missing ones take defaults.

        Parameters
        ----------
        d
            Saved fields (None or empty: all defaults).

        Returns
        -------
        HybridConfig
        """
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in names})

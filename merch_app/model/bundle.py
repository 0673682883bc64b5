"""What ranking, explanation and the UI need from a trained model, in one object.

``ModelBundle`` is the contract between the model package (which builds it,
see ``registry.load_bundle``) and its consumers (ranking, explain, UI, CLI).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

import numpy as np


class Encoder(Protocol):
    """A text encoder: texts in, L2-normalised float32 vectors out."""

    encoder_id: str  # stable id, e.g. "all-MiniLM-L6-v2@<sha of config+weights>"
    dim: int

    def encode(self, texts: list[str], batch_size: int = 64, progress=None, cancel=None) -> np.ndarray:
        """Return an array of shape (len(texts), dim), rows with unit norm."""
        ...


@dataclass
class ModelVersion:
    """One row of the model registry (table ``models``)."""

    model_id: str
    name: str
    created: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    data_snapshot: dict[str, Any]
    encoder_id: str
    path: str
    train_seconds: float
    engine: str = "local"
    active: bool = False


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
    """

    item_ids: np.ndarray
    item_vectors: np.ndarray
    popularity: np.ndarray
    encoder: Encoder
    index: Any
    model: Any = None
    version: Optional[ModelVersion] = None
    item_pos: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.item_pos:
            self.item_pos = {str(i): n for n, i in enumerate(self.item_ids)}

"""A text-only bundle (no CF model) built from the workspace's item vectors.

Stop-gap used when no model registry / trained model is available: item text
vectors through the embedding cache, an exact or IVF vector index, and a
popularity prior ``log1p(event count) / log1p(max count)``.
"""
from __future__ import annotations

import numpy as np

from merch_app.model.bundle import ModelBundle


def text_only_bundle(db, encoder, progress=None, cancel=None) -> ModelBundle:
    """Bundle over every item in ``db`` with vectors from ``encoder`` (cached)."""
    from merch_app.model.item_vectors import item_text_vectors
    from merch_app.model.vector_index import VectorIndex

    ids, vectors = item_text_vectors(db, encoder, progress=progress, cancel=cancel)
    counts = dict(db.execute("SELECT item_id, count(*) FROM events GROUP BY item_id").fetchall())
    pop = np.log1p(np.array([counts.get(str(i), 0) for i in ids], dtype=np.float64))
    pop = (pop / pop.max() if len(pop) and pop.max() > 0 else pop).astype(np.float32)
    return ModelBundle(item_ids=ids, item_vectors=vectors, popularity=pop, encoder=encoder,
                       index=VectorIndex.from_vectors(vectors))

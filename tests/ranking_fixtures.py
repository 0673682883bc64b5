"""Small deterministic stand-ins for the ranking, rules and explanation tests.

``WordVectorEncoder`` encodes a text as the normalised sum of fixed random
word vectors, so texts sharing words are close and the expected ranking of a
hand-made catalogue is known.  ``BruteForceIndex`` is an exact inner-product
index and ``TableCFModel`` a CF model defined by a user × item score table,
both with the method signatures of the real classes.  ``SAMPLE_ITEMS`` is the
hand-made catalogue, ``insert_items`` and ``make_bundle`` put it into a
workspace and wrap it in a :class:`~merch_app.model.bundle.ModelBundle`.

(Formerly ``merch_app/ranking/testing.py``; test helpers live with the tests.)
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterable, Optional

import numpy as np

from merch_app.model.bundle import ModelBundle

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


class WordVectorEncoder:
    """Bag-of-words encoder with one seeded random unit vector per word.

    Parameters
    ----------
    dim
        Vector size.
    synonyms
        Maps a word to another whose vector it shares (e.g.
        ``{"tealight": "candle"}``) to make semantic-only matches in tests.

    Attributes
    ----------
    encoder_id
        ``"word-vectors-<dim>"``.
    calls
        Number of :meth:`encode` calls so far (to check caching).
    """

    def __init__(self, dim: int = 64, synonyms: Optional[dict[str, str]] = None) -> None:
        self.dim = dim
        self.synonyms = {k.casefold(): v.casefold() for k, v in (synonyms or {}).items()}
        self.encoder_id = f"word-vectors-{dim}"
        self.calls = 0

    def word_vector(self, word: str) -> np.ndarray:
        """The fixed unit vector of ``word`` (of its synonym, if it has one), seeded by its sha256."""
        word = self.synonyms.get(word, word)
        seed = int.from_bytes(hashlib.sha256(word.encode("utf-8")).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode(self, texts: list[str], batch_size: int = 64, progress=None, cancel=None) -> np.ndarray:
        """Encode ``texts`` (the real encoders' signature; ``batch_size``, ``progress``, ``cancel`` unused).

        Returns
        -------
        np.ndarray
            ``(len(texts), dim)`` float32; unit rows, or zero rows for texts
            without a word.
        """
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for w in _WORD.findall(text.casefold()):
                out[i] += self.word_vector(w)
            norm = np.linalg.norm(out[i])
            if norm > 0:
                out[i] /= norm
        return out


class BruteForceIndex:
    """Exact inner-product search over unit vectors.

    Parameters
    ----------
    vectors
        ``(n, dim)`` rows to search.
    """

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows by inner product for each query row.

        Returns
        -------
        (scores, idx)
            Two ``(n_queries, min(k, n))`` arrays, best first; ties keep row order.
        """
        q = np.atleast_2d(np.asarray(q, dtype=np.float32))
        sims = q @ self.vectors.T
        k = min(k, self.vectors.shape[0])
        idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, idx, axis=1), idx


class TableCFModel:
    """CF model from a dense user × item score table (HybridModel's interface).

    Parameters
    ----------
    user_ids, item_ids
        Row and column labels of ``table``.
    table
        ``(n_users, n_items)`` scores; ``score(user)`` is the user's row, an
        unknown user scores 0 everywhere.
    factors
        Unused (kept for the real model's signature).
    """

    def __init__(self, user_ids: list[str], item_ids: list[str], table: np.ndarray,
                 factors: Optional[np.ndarray] = None) -> None:
        self.user_ids = list(user_ids)
        self.item_ids = list(item_ids)
        self.table = np.asarray(table, dtype=np.float64)
        self._u = {u: i for i, u in enumerate(self.user_ids)}
        self._i = {it: i for i, it in enumerate(self.item_ids)}

    def score(self, user_id, item_idx=None, user_text=None) -> np.ndarray:
        """The user's row of the table (restricted to ``item_idx`` if given)."""
        row = self.table[self._u[user_id]] if user_id in self._u else np.zeros(len(self.item_ids))
        return row if item_idx is None else row[np.asarray(item_idx)]

    def score_parts(self, user_id, item_idx) -> dict[str, np.ndarray]:
        """``{"cf": score(user_id, item_idx)}``."""
        return {"cf": self.score(user_id, item_idx)}

    def similar_items(self, item_id, k) -> tuple[list[str], np.ndarray]:
        """The ``k`` items whose table columns have the largest inner product with ``item_id``'s."""
        col = self.table[:, self._i[item_id]]
        sims = self.table.T @ col
        sims[self._i[item_id]] = -np.inf
        order = np.argsort(-sims, kind="stable")[:k]
        return [self.item_ids[j] for j in order], sims[order]

    def explain(self, user_id, item_id, top: int = 5) -> dict:
        """Score, parts, the user's ``top`` best other items as "because", one factor."""
        s = float(self.score(user_id, [self._i[item_id]])[0])
        bought = [j for j in np.argsort(-self.table[self._u[user_id]]) if self.table[self._u[user_id], j] > 0]
        because = [{"item_id": self.item_ids[j], "contribution": float(self.table[self._u[user_id], j])}
                   for j in bought[:top] if self.item_ids[j] != item_id]
        return {"score": s, "parts": {"cf": s}, "because": because,
                "factors": [{"dim": 0, "contribution": s}]}


def insert_items(db, items: Iterable[dict]) -> None:
    """Insert catalogue rows and rebuild the full-text index.

    Parameters
    ----------
    db
        Open workspace.
    items
        Dicts with ``item_id`` and any of ``title``, ``description``,
        ``tags``, ``category``, ``price`` (missing keys are NULL).
    """
    from merch_app.data.workspace import rebuild_fts

    cols = ("item_id", "title", "description", "tags", "category", "price")
    rows = [tuple(it.get(c) for c in cols) for it in items]
    with db.conn:
        db.conn.executemany(
            f"INSERT INTO items ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
        rebuild_fts(db)


def make_bundle(db, encoder=None, model=None, popularity: Optional[dict[str, float]] = None) -> ModelBundle:
    """A text bundle over every item in ``db``.

    Parameters
    ----------
    db
        Open workspace holding the catalogue.
    encoder
        Encodes ``title description tags category`` of each item; a fresh
        :class:`WordVectorEncoder` if None.
    model
        CF model of the bundle (e.g. :class:`TableCFModel`), or None for text only.
    popularity
        ``{item_id: popularity}``; missing items get 0.

    Returns
    -------
    ModelBundle
        Items in insertion order, searched by a :class:`BruteForceIndex`.
    """
    encoder = encoder or WordVectorEncoder()
    rows = db.execute("SELECT item_id, title, description, tags, category FROM items ORDER BY rowid").fetchall()
    ids = np.array([r[0] for r in rows], dtype=object)
    texts = [" ".join(x or "" for x in r[1:]) for r in rows]
    vecs = encoder.encode(texts)
    pop = np.array([(popularity or {}).get(i, 0.0) for i in ids], dtype=np.float32)
    return ModelBundle(item_ids=ids, item_vectors=vecs, popularity=pop, encoder=encoder,
                       index=BruteForceIndex(vecs), model=model)


SAMPLE_ITEMS = [
    {"item_id": "85123A", "title": "WHITE HANGING HEART T-LIGHT HOLDER", "category": "Home", "price": 2.55},
    {"item_id": "71053", "title": "WHITE METAL LANTERN", "category": "Home", "price": 3.39},
    {"item_id": "22001", "title": "red candle", "tags": "candle wax", "category": "Home", "price": 1.0},
    {"item_id": "22002", "title": "candle holder", "category": "Home", "price": 2.0},
    {"item_id": "22003", "title": "heart cushion cover", "category": "Textiles", "price": 5.0},
    {"item_id": "22004", "title": "blue mug", "description": "a mug for tea", "category": "Kitchen",
     "price": 3.0},
    {"item_id": "22005", "title": "tealight set", "category": "Home", "price": 4.0},
    {"item_id": "22006", "title": "paper napkins", "description": "party napkins, red",
     "category": "Party", "price": None},
]
SAMPLE_SYNONYMS = {"tealight": "candle", "lantern": "lamp"}

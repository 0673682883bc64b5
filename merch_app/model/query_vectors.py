"""Query vectors that outlive the process, in the workspace's embedding cache.

A one-shot ``merch-app query`` used to load the encoder (seconds) to encode
one query.  :class:`QueryVectorStore` keeps every query vector a ranker
encodes in the table ``embeddings`` under ``(encoder_id, sha1(query text))``,
the key every cached text has (:func:`merch_app.model.item_vectors.text_hash`),
so a repeated query on the same workspace and encoder reads its vector and
never loads the weights (encoders load lazily, see
:class:`~merch_app.model.bert_encoder.BertEncoder`).  A vector depends only
on the encoder and the text, so sharing keys with item texts and the logged
queries of user vectors is exact: a query equal to a cached text is a hit,
and ``merch-app forget`` removes a user's query vectors by the same key.

A store belongs to the thread that made it (that thread's connection): used
from another thread it neither reads nor writes.  Writes wait at most 200 ms
for a lock held by another job and are skipped on read-only workspaces.
"""
from __future__ import annotations

import sqlite3
import threading
from typing import Optional

import numpy as np

from merch_app.model.item_vectors import cached_vectors, store_vectors, text_hash


class QueryVectorStore:
    """Persistent query vectors of one encoder in one workspace.

    Parameters
    ----------
    db
        Open workspace of the calling thread.
    encoder
        Any encoder with ``encoder_id`` and ``dim`` (reading them must not
        load its weights).
    """

    def __init__(self, db, encoder) -> None:
        self.db = db
        self.encoder_id = str(encoder.encoder_id)
        self.dim = int(encoder.dim)
        self.writable = True
        self._thread = threading.get_ident()
        self.hits = 0
        self.writes = 0

    def _own_thread(self) -> bool:
        return threading.get_ident() == self._thread

    def get(self, text: str) -> Optional[np.ndarray]:
        """The stored vector of ``text`` (float32, shape ``(dim,)``), or None."""
        if not self._own_thread():
            return None
        key = text_hash(text)
        vec = cached_vectors(self.db, self.encoder_id, self.dim, [key]).get(key)
        if vec is None:
            return None
        self.hits += 1
        return np.array(vec, dtype=np.float32)

    def put(self, text: str, vector: np.ndarray) -> bool:
        """Store the vector of ``text``; False when it was not written (read-only, busy, other thread)."""
        if not (self.writable and self._own_thread()):
            return False
        vec = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        if vec.shape[1] != self.dim:
            raise ValueError(f"query vector has {vec.shape[1]} values, encoder {self.encoder_id} gives {self.dim}")
        try:
            written = store_vectors(self.db, self.encoder_id, self.dim, [text_hash(text)], vec)
        except sqlite3.OperationalError as exc:
            text_ = str(exc).lower()
            if "locked" not in text_ and "busy" not in text_:
                raise
            return False  # another job holds the write lock: try again with the next query
        if not written:
            self.writable = False  # read-only workspace: stop trying
            return False
        self.writes += 1
        return True

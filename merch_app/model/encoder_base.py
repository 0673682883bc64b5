"""Shared parts of the text encoders: the error type, the query-vector cache, the base class.

Every encoder (:class:`~merch_app.model.bert_encoder.BertEncoder`,
:class:`~merch_app.model.hashing_encoder.HashingEncoder`) derives from
:class:`_EncoderBase`: ``encode(texts)`` returns L2-normalised float32 rows and
``encode_query(text)`` caches recent query vectors.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Optional

import numpy as np

from merch_app.errors import MerchAppError


class EncoderError(MerchAppError):
    """The encoder cannot be loaded or used (message is user-facing)."""


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class _QueryCache:
    """Thread-safe LRU of recent query vectors."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[np.ndarray]:
        with self._lock:
            v = self._data.get(key)
            if v is not None:
                self._data.move_to_end(key)
            return v

    def put(self, key: str, value: np.ndarray) -> None:
        value = value.copy()
        value.setflags(write=False)
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class _EncoderBase:
    encoder_id: str
    dim: int

    def __init__(self, query_cache_size: int = 512) -> None:
        self._query_cache = _QueryCache(query_cache_size)

    def encode(self, texts, batch_size=64, progress=None, cancel=None) -> np.ndarray:
        raise NotImplementedError

    def encode_query(self, text: str) -> np.ndarray:
        """Vector of one query, shape ``(dim,)``; recent queries come from an LRU cache.

        The returned array is read-only (it is shared with the cache).
        """
        cached = self._query_cache.get(text)
        if cached is not None:
            return cached
        vec = self.encode([text])[0]
        self._query_cache.put(text, vec)
        return self._query_cache.get(text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.encoder_id!r}, dim={self.dim})"

"""A tiny deterministic hashing encoder (tests, fallback without BERT files)."""
from __future__ import annotations

import functools
import re
import zlib

import numpy as np

from merch_app.jobs import Progress
from merch_app.model.encoder_base import EncoderError, _EncoderBase, _normalise_rows

_WORD_RE = re.compile(r"\w+", re.UNICODE)


@functools.lru_cache(maxsize=200_000)
def _signed_bucket(feature: str, dim: int) -> tuple[int, float]:
    h = zlib.crc32(feature.encode("utf-8"))
    return h % dim, (1.0 if (h >> 31) & 1 else -1.0)


class HashingEncoder(_EncoderBase):
    """Deterministic bag-of-words + character-trigram encoder (tests, fallback).

    Each lower-cased word and each trigram of ``#word#`` is hashed (CRC32) to a
    bucket with a sign; the counts are L2-normalised.  Shared trigrams make
    "candle" and "candles" close.  An empty text maps to a fixed unit vector.
    """

    def __init__(self, dim: int = 64, *, word_weight: float = 1.0, trigram_weight: float = 0.5) -> None:
        super().__init__()
        if int(dim) < 2:
            raise EncoderError(f"hashing encoder dim must be at least 2, got {dim}")
        self.dim = int(dim)
        self.word_weight = float(word_weight)
        self.trigram_weight = float(trigram_weight)
        self.encoder_id = f"hashing-{self.dim}"

    def _features(self, text: str) -> list[tuple[str, float]]:
        feats: list[tuple[str, float]] = []
        for word in _WORD_RE.findall(text.lower()):
            feats.append(("w:" + word, self.word_weight))
            padded = f"#{word}#"
            feats.extend(("t:" + padded[i : i + 3], self.trigram_weight) for i in range(len(padded) - 2))
        return feats or [("<empty>", 1.0)]

    def encode(
        self, texts: list[str], batch_size: int = 64, progress=None, cancel=None
    ) -> np.ndarray:
        """Encode texts to unit-norm float32 vectors.

        Parameters
        ----------
        texts
            The texts (None counts as empty).
        batch_size
            Texts between two progress reports / cancel checks.
        progress, cancel
            Job protocol, as for :meth:`BertEncoder.encode`.

        Returns
        -------
        np.ndarray
            float32, shape ``(len(texts), dim)``.
        """
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        batch_size = max(1, int(batch_size))
        for start in range(0, n, batch_size):
            if cancel is not None:
                cancel.check()
            for row in range(start, min(start + batch_size, n)):
                text = "" if texts[row] is None else str(texts[row])
                for feat, weight in self._features(text):
                    bucket, sign = _signed_bucket(feat, self.dim)
                    out[row, bucket] += sign * weight
            if progress is not None:
                done = min(start + batch_size, n)
                progress(Progress(done, n, f"encoded {done}/{n} texts"))
        return _normalise_rows(out)

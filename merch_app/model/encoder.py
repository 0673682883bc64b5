"""Text encoders by name: :func:`load_encoder` and :func:`workspace_encoder`.

All encoders implement :class:`merch_app.model.bundle.Encoder`: ``encode(texts)``
returns L2-normalised float32 rows, ``encoder_id`` names the exact weights so
cached vectors (table ``embeddings``) are never mixed across models.

The encoders themselves live in :mod:`merch_app.model.bert_encoder` (the local
BERT sentence encoder; importing it sets the offline switches of Hugging Face)
and :mod:`merch_app.model.hashing_encoder` (a tiny hashing fallback).  Getting an encoder is cheap: a BERT encoder
knows its ``encoder_id`` and ``dim`` from its files and loads torch and the
weights on its first ``encode``.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

from merch_app.data.workspace import get_setting
from merch_app.model.bert_encoder import DEFAULT_MODEL_NAME, BertEncoder
from merch_app.model.encoder_base import EncoderError, _EncoderBase
from merch_app.model.encoder_versions import active_encoder_spec
from merch_app.model.hashing_encoder import HashingEncoder

INT8_SUFFIX = "+int8"
# Workspace setting: true = BERT encoders run int8 unless a command says otherwise.  Off by
# default: int8 encodes ~4x faster but costs 0.01-0.02 NDCG@10 on the judged demo suite
# (docs/benchmarks.md, int8 section), so it stays opt-in.
INT8_SETTING = "encoder_int8"
# Workspace setting: the base encoder when no fine-tuned version is active, a load_encoder
# spec (a local BERT folder, e.g. a Chinese or multilingual model); None = the packaged MiniLM.
BASE_ENCODER_SETTING = "encoder"


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
        Open workspace: its active encoder version
        (:mod:`merch_app.model.encoder_versions`) is the default encoder and
        its ``encoder_int8`` setting the default int8 choice.
    spec
        As for :func:`load_encoder`; None = the workspace's active encoder
        version, else its ``encoder`` setting (a local BERT folder), else
        the packaged MiniLM.  A ``+int8`` suffix always wins.
    int8
        ``--int8`` (True) / ``--fp32`` (False) from a command, None = the
        workspace setting.  The setting only applies to BERT encoders.

    Raises
    ------
    EncoderVersionError
        The active encoder version has lost its folder.
    """
    if spec is None or not spec.strip():
        spec = active_encoder_spec(db) or get_setting(db, BASE_ENCODER_SETTING)
    base = (spec or "minilm").strip()
    if base.lower().endswith(INT8_SUFFIX):
        return load_encoder(base)
    if int8 is None:
        hashing = base.lower().startswith("hashing")
        int8 = bool(get_setting(db, INT8_SETTING, False)) and not hashing
    return load_encoder(base, quantize="int8" if int8 else None)

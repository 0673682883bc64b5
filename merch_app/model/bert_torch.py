"""A plain-torch BERT encoder stack and a ``tokenizers`` tokenizer for :class:`BertEncoder`.

Importing ``transformers``' BERT classes (``AutoModel`` or ``BertModel``
alike) costs about twice the ``import torch`` it sits on (its model-loading
machinery pulls in sympy, jinja2, the hub client...), which made every
uncached ``merch-app query`` seconds slower.  BERT inference is small: this
module runs the same computation (embeddings, post-norm self-attention
layers through ``scaled_dot_product_attention``, exact GELU) on the
checkpoint's own parameter names, and the ``tokenizers`` library reads the
folder's ``tokenizer.json``.  On all-MiniLM-L6-v2 its hidden states are
bit-identical to ``transformers.BertModel`` in fp32 and int8
(tests/test_encoder_minilm.py).  :func:`native_support` says which configs
it covers; :class:`~merch_app.model.bert_encoder.BertEncoder` loads every
other folder through the transformers Auto classes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import nn

# transformers.BertConfig defaults, for keys a config.json leaves out.
BERT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "hidden_act": "gelu", "max_position_embeddings": 512,
    "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
}
# config hidden_act -> activation (transformers' ACT2FN names with the same function)
_ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


def native_support(config: dict[str, Any], model_dir: Path) -> Optional[str]:
    """Why this folder needs transformers instead of :class:`BertStack`, or None when it does not.

    Parameters
    ----------
    config
        The folder's ``config.json``.
    model_dir
        The folder (a ``tokenizer.json`` is needed).
    """
    cfg = {**BERT_DEFAULTS, **config}
    if config.get("model_type") != "bert":
        return f"model_type {config.get('model_type')!r} is not 'bert'"
    if (config.get("position_embedding_type") or "absolute") != "absolute":
        return f"position_embedding_type {config['position_embedding_type']!r}"
    if config.get("is_decoder") or config.get("add_cross_attention"):
        return "a decoder configuration"
    if cfg["hidden_act"] not in _ACTIVATIONS:
        return f"hidden_act {cfg['hidden_act']!r}"
    if int(cfg["hidden_size"]) % int(cfg["num_attention_heads"]):
        return "hidden_size is not a multiple of num_attention_heads"
    if not (model_dir / "tokenizer.json").is_file():
        return "no tokenizer.json"
    return None


class _Dense(nn.Module):
    def __init__(self, n_in: int, n_out: int, eps: Optional[float] = None) -> None:
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)
        if eps is not None:
            self.LayerNorm = nn.LayerNorm(n_out, eps=eps)


class _SelfAttention(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.query, self.key, self.value = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)


class _Attention(nn.Module):
    def __init__(self, hidden: int, eps: float) -> None:
        super().__init__()
        self.self = _SelfAttention(hidden)
        self.output = _Dense(hidden, hidden, eps)


class _Layer(nn.Module):
    def __init__(self, hidden: int, inner: int, eps: float) -> None:
        super().__init__()
        self.attention = _Attention(hidden, eps)
        self.intermediate = _Dense(hidden, inner)
        self.output = _Dense(inner, hidden, eps)


class _Embeddings(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        hidden = int(cfg["hidden_size"])
        self.word_embeddings = nn.Embedding(int(cfg["vocab_size"]), hidden)
        self.position_embeddings = nn.Embedding(int(cfg["max_position_embeddings"]), hidden)
        self.token_type_embeddings = nn.Embedding(int(cfg["type_vocab_size"]), hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=float(cfg["layer_norm_eps"]))


class _Encoder(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(
            _Layer(int(cfg["hidden_size"]), int(cfg["intermediate_size"]), float(cfg["layer_norm_eps"]))
            for _ in range(int(cfg["num_hidden_layers"]))
        )


class BertStack(nn.Module):
    """BERT embeddings + encoder layers (no pooler), parameter names as in the checkpoints.

    Parameters
    ----------
    config
        A BERT ``config.json`` accepted by :func:`native_support`.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        cfg = {**BERT_DEFAULTS, **config}
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Encoder(cfg)
        self.heads = int(cfg["num_attention_heads"])
        self.act = _ACTIVATIONS[cfg["hidden_act"]]

    def forward(self, input_ids, attention_mask, token_type_ids):
        """Last hidden states, shape ``(batch, tokens, hidden)``."""
        b, n = input_ids.shape
        e = self.embeddings
        x = e.word_embeddings(input_ids) + e.token_type_embeddings(token_type_ids)
        x = e.LayerNorm(x + e.position_embeddings(torch.arange(n, device=input_ids.device))[None])
        keep = attention_mask.bool()[:, None, None, :]  # padding keys are never attended to
        heads = self.heads
        size = x.shape[-1] // heads

        def split(t):
            return t.view(b, n, heads, size).transpose(1, 2)

        for layer in self.encoder.layer:
            a = layer.attention
            ctx = F.scaled_dot_product_attention(split(a.self.query(x)), split(a.self.key(x)),
                                                 split(a.self.value(x)), attn_mask=keep)
            x = a.output.LayerNorm(a.output.dense(ctx.transpose(1, 2).reshape(b, n, heads * size)) + x)
            inner = self.act(layer.intermediate.dense(x))
            x = layer.output.LayerNorm(layer.output.dense(inner) + x)
        return x


def _checkpoint_name(name: str) -> str:
    if name.startswith("bert."):  # saved from BertForMaskedLM & co.
        name = name[len("bert."):]
    if name.endswith(".gamma"):  # TF-era LayerNorm names
        return name[: -len("gamma")] + "weight"
    if name.endswith(".beta"):
        return name[: -len("beta")] + "bias"
    return name


def load_bert(model_dir: Path, config: dict[str, Any]) -> BertStack:
    """The :class:`BertStack` of ``model_dir`` with its safetensors weights, in eval mode (fp32).

    Raises
    ------
    ValueError
        The weights file lacks parameters of the stack (wrong architecture).
    """
    model = BertStack(config)
    weights = {_checkpoint_name(k): v.float() for k, v in load_file(str(model_dir / "model.safetensors")).items()}
    missing, _unused = model.load_state_dict(weights, strict=False)  # unused: pooler, position_ids
    if missing:
        raise ValueError(f"model.safetensors lacks {len(missing)} BERT weights (e.g. {missing[0]})")
    return model.eval()


def _special_token(model_dir: Path, key: str) -> Optional[str]:
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = model_dir / name
        if path.is_file():
            value = json.loads(path.read_text(encoding="utf-8")).get(key)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                return value
    return None


class FastTokenizer:
    """The folder's ``tokenizer.json`` through ``tokenizers``: texts -> padded torch tensors.

    Padding goes to the longest text of the batch and truncation to
    ``max_length`` tokens (special tokens included), whatever the file's own
    padding/truncation settings say; the output is what
    ``AutoTokenizer(texts, padding=True, truncation=True, max_length=...)`` gives.

    Parameters
    ----------
    model_dir
        Folder with ``tokenizer.json`` (and optionally ``tokenizer_config.json``).
    max_length
        Token limit per text.
    pad_token_id
        Fallback pad id when the pad token is not in the vocabulary.
    """

    def __init__(self, model_dir: Path, max_length: int, pad_token_id: int = 0) -> None:
        self._tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        pad = _special_token(model_dir, "pad_token") or "[PAD]"
        pad_id = self._tok.token_to_id(pad)
        self._tok.enable_truncation(max_length=int(max_length))
        self._tok.enable_padding(pad_id=pad_token_id if pad_id is None else pad_id, pad_token=pad)

    def __call__(self, texts: list[str]) -> dict[str, Any]:
        encodings = self._tok.encode_batch(texts)
        return {
            "input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
            "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long),
            "token_type_ids": torch.tensor([e.type_ids for e in encodings], dtype=torch.long),
        }

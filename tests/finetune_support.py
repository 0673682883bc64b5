"""A tiny random BERT folder (word-level tokenizer.json from the ``tokenizers`` library) and planted shops."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

WORDS = ("red blue green black white candle mug scarf lamp bag box tin heart star cake bunting jar clock "
         "card paper wooden glass metal vintage retro garden kitchen party gift set small large pink").split()


def tiny_bert(folder: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Write a random 2-layer BERT (hidden 32) with a word-level tokenizer into ``folder``."""
    import torch
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers, normalizers, processors

    from merch_app.model.bert_torch import BertStack

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {t: n for n, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS,
                                         *[f"w{i}" for i in range(40)], *[str(i) for i in range(100)]])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
        ("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"pad_token": "[PAD]"}), encoding="utf-8")
    config = {"model_type": "bert", "vocab_size": len(vocab), "hidden_size": hidden, "num_hidden_layers": layers,
              "num_attention_heads": 4, "intermediate_size": 2 * hidden, "max_position_embeddings": 64,
              "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": 0}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    torch.manual_seed(seed)
    stack = BertStack(config)
    for p in stack.parameters():  # BERT's init: N(0, 0.02) weights (LayerNorm stays 1/0)
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.02)
    save_file({k: v.contiguous() for k, v in stack.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


def basket_shop(n_users: int = 40, days: int = 100, seed: int = 0):
    """(items, events): random baskets, and two items with unrelated titles (P1, P2) always bought together.

    C1 and C2, a control pair with as unrelated titles, are bought in different baskets.
    """
    rng = np.random.default_rng(seed)
    items = [{"item_id": f"i{j:02d}", "title": f"{WORDS[j % len(WORDS)]} {WORDS[(3 * j + 7) % len(WORDS)]} w{j % 40}"}
             for j in range(40)]
    items += [{"item_id": "P1", "title": "vintage candle jar"}, {"item_id": "P2", "title": "metal garden clock"},
              {"item_id": "C1", "title": "pink paper card"}, {"item_id": "C2", "title": "wooden kitchen box"}]
    start = datetime(2024, 1, 1)
    events = []
    for n in range(n_users):
        for b in range(6):
            t = start + timedelta(days=float(rng.uniform(0, days)))
            ts = t.strftime("%Y-%m-%dT%H:%M:%SZ")
            basket = [f"i{j:02d}" for j in rng.choice(40, 3, replace=False)]
            if rng.random() < 0.5:
                basket += ["P1", "P2"]
            elif rng.random() < 0.5:
                basket += ["C1" if rng.random() < 0.5 else "C2"]
            for item in basket:
                events.append({"user_id": f"u{n:02d}", "item_id": item, "event_type": "purchase", "ts": ts,
                               "session_id": f"s{n}-{b}"})
    return items, events

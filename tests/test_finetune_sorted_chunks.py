"""Fine-tuning encodes a step's texts in length-sorted chunks: same vectors and gradients as one padded pass."""
from __future__ import annotations

import json

import torch

from merch_app.model import bert_torch
from merch_app.model.finetune import _mean_pool, _pooled_sorted
from finetune_support import tiny_bert

TEXTS = ["red mug", "vintage candle jar; metal garden clock; pink paper card; wooden kitchen box",
         "lamp", "blue scarf gift set small", "heart tin", "retro party bunting w1 w2 w3 w4 w5", "cake",
         "green glass jar"]


def _stack_and_tokens(tmp_path):
    folder = tiny_bert(tmp_path / "bert")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    stack = bert_torch.load_bert(folder, config)
    enc = bert_torch.FastTokenizer(folder, 32, 0)(TEXTS)
    return stack, enc


def _grads(stack, vecs):
    stack.zero_grad(set_to_none=True)
    (vecs @ vecs.T)[0, 1:].sum().backward()  # rows in input order matter
    return {k: p.grad.clone() for k, p in stack.named_parameters() if p.grad is not None}


def test_sorted_chunks_give_the_one_pass_vectors_and_gradients_in_input_order(tmp_path):
    stack, enc = _stack_and_tokens(tmp_path)
    lengths = enc["attention_mask"].sum(dim=1)
    assert int(lengths.min()) < int(lengths.max())  # the chunks really cut padding
    one = _mean_pool(stack(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]), enc["attention_mask"])
    g_one = _grads(stack, one)
    chunked = _pooled_sorted(stack, enc, 3)
    g_chunked = _grads(stack, chunked)
    assert chunked.shape == one.shape
    assert torch.allclose(chunked, one, atol=1e-5)
    assert g_one.keys() == g_chunked.keys() and g_one
    for name, g in g_one.items():
        assert torch.allclose(g_chunked[name], g, atol=1e-5, rtol=1e-4), name


def test_chunk_rows_are_not_left_in_sorted_order(tmp_path):
    stack, enc = _stack_and_tokens(tmp_path)
    with torch.no_grad():
        chunked = _pooled_sorted(stack, enc, 3)
        shortest = int(torch.argmin(enc["attention_mask"].sum(dim=1)))
        alone = {k: v[shortest:shortest + 1] for k, v in enc.items()}
        n = int(alone["attention_mask"].sum())
        ref = _mean_pool(stack(alone["input_ids"][:, :n], alone["attention_mask"][:, :n],
                               alone["token_type_ids"][:, :n]), alone["attention_mask"][:, :n])
    assert shortest != 0
    assert torch.allclose(chunked[shortest], ref[0], atol=1e-5)
    assert not torch.allclose(chunked[0], ref[0], atol=1e-3)

"""Fast encoder tests: HashingEncoder, load_encoder specs, folder errors (no BERT loading)."""
from __future__ import annotations

import numpy as np
import pytest

from merch_app.jobs import CancelToken, Cancelled
from merch_app.model.encoder import load_encoder
from merch_app.model.hashing_encoder import HashingEncoder
from merch_app.model.encoder_base import EncoderError
from merch_app.model.bert_encoder import BertEncoder


def test_hashing_encoder_is_deterministic_and_unit_norm():
    a = HashingEncoder(64).encode(["Red heart candle holder", "blue chair", ""])
    b = HashingEncoder(64).encode(["Red heart candle holder", "blue chair", ""])
    assert a.shape == (3, 64) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)


def test_hashing_encoder_similar_words_are_closer():
    enc = HashingEncoder(64)
    candle, candles, chair = enc.encode(["candle", "candles", "garden chair"])
    assert candle @ candles > 0.4
    assert candle @ candles > candle @ chair + 0.3
    holder = enc.encode(["red heart candle holder", "heart shaped candle holder red", "blue metal garden chair"])
    assert holder[0] @ holder[1] > holder[0] @ holder[2]


def test_hashing_encoder_case_insensitive_and_id():
    enc = HashingEncoder(32)
    v = enc.encode(["Candle HOLDER", "candle holder"])
    np.testing.assert_allclose(v[0], v[1])
    assert enc.encoder_id == "hashing-32" and enc.dim == 32


def test_hashing_encoder_progress_and_cancel():
    enc = HashingEncoder()
    seen = []
    enc.encode([f"item {i}" for i in range(10)], batch_size=4, progress=seen.append)
    assert [p.done for p in seen] == [4, 8, 10] and seen[-1].total == 10
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        enc.encode(["a", "b"], cancel=token)


def test_encode_query_lru_returns_same_vector():
    enc = HashingEncoder()
    v1 = enc.encode_query("lantern")
    v2 = enc.encode_query("lantern")
    assert v1 is v2 and v1.shape == (64,)
    np.testing.assert_allclose(v1, enc.encode(["lantern"])[0])
    assert not v1.flags.writeable


def test_load_encoder_specs_and_caching():
    h = load_encoder("hashing")
    assert isinstance(h, HashingEncoder) and h.dim == 64
    assert load_encoder("hashing:64") is h
    assert load_encoder("hashing:16").dim == 16
    with pytest.raises(EncoderError, match="hashing"):
        load_encoder("hashing:abc")
    with pytest.raises(EncoderError, match="int8"):
        load_encoder("hashing", quantize="int8")


def test_missing_model_dir_raises_encoder_error(tmp_path):
    with pytest.raises(EncoderError, match="does not exist"):
        BertEncoder(tmp_path / "nope")
    with pytest.raises(EncoderError, match="does not exist"):
        load_encoder(str(tmp_path / "nope"))


def test_broken_model_dir_raises_encoder_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(EncoderError, match="missing model.safetensors"):
        BertEncoder(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 4)
    (tmp_path / "vocab.txt").write_text("[PAD]\n", encoding="utf-8")
    with pytest.raises(EncoderError, match="config.json"):
        BertEncoder(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    with pytest.raises(EncoderError, match="safetensors"):
        BertEncoder(tmp_path)


def test_unknown_quantization_is_rejected():
    with pytest.raises(EncoderError, match="quantization"):
        BertEncoder(quantize="int4")

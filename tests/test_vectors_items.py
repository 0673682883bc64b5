"""Item texts, the embedding cache and cancel safety."""
from __future__ import annotations

import numpy as np
import pytest

from merch_app.jobs import CancelToken, Cancelled
from merch_app.model import item_vectors as iv
from merch_app.model.hashing_encoder import HashingEncoder
from merch_app.model.item_vectors import (
    cache_size,
    encode_items,
    item_text_vectors,
    item_texts,
    render_item_text,
    text_hash,
)


class CountingEncoder(HashingEncoder):
    """HashingEncoder that records how many texts it encoded."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__(dim)
        self.calls: list[int] = []

    def encode(self, texts, batch_size=64, progress=None, cancel=None):
        self.calls.append(len(texts))
        return super().encode(texts, batch_size, progress, cancel)

    @property
    def n_encoded(self) -> int:
        return sum(self.calls)


def add_items(db, rows):
    with db.conn:
        db.insert_rows("items", rows, replace=True)


ITEMS = [
    {"item_id": "B2", "title": "Blue garden chair", "category": "Garden", "tags": '["metal", "outdoor"]',
     "description": "Folding chair."},
    {"item_id": "A1", "title": "Red heart candle holder", "category": None, "tags": "", "description": None},
    {"item_id": "C3", "title": "Candles", "category": "Home", "tags": "wax", "description": ""},
]


def test_render_item_text_cleans_empty_parts():
    assert render_item_text(ITEMS[0]) == "Blue garden chair. Garden. metal, outdoor. Folding chair."
    assert render_item_text(ITEMS[1]) == "Red heart candle holder"
    assert render_item_text({"title": "Mug.", "description": "Tea"}) == "Mug. Tea"
    assert render_item_text({"title": "", "category": "Home", "description": "x"}) == "Home. x"
    assert render_item_text({"title": "Mug", "price": 3.5}, "{title} ({price})") == "Mug (3.5)"


def test_item_texts_ordered_by_id(ws):
    add_items(ws, ITEMS)
    ids, texts = item_texts(ws)
    assert ids == ["A1", "B2", "C3"]
    assert texts[2] == "Candles. Home. wax"


def test_bad_template_names_the_field(ws):
    with pytest.raises(ValueError, match="colour"):
        item_texts(ws, "{title} {colour}")


def test_cache_reencodes_only_changed_texts(ws):
    add_items(ws, ITEMS)
    enc = CountingEncoder()
    ids, vecs = item_text_vectors(ws, enc)
    assert list(ids) == ["A1", "B2", "C3"] and vecs.shape == (3, 16) and vecs.dtype == np.float32
    assert enc.n_encoded == 3 and cache_size(ws, enc.encoder_id) == 3

    enc.calls.clear()
    again = encode_items(ws, enc)
    assert enc.n_encoded == 0
    assert (again.stats.encoded, again.stats.cached) == (0, 3)
    np.testing.assert_array_equal(again.vectors, vecs)

    with ws.conn:
        ws.execute("UPDATE items SET title = 'Pink heart candle holder' WHERE item_id = 'A1'")
    third = encode_items(ws, enc)
    assert enc.n_encoded == 1 and (third.stats.encoded, third.stats.cached) == (1, 2)
    np.testing.assert_array_equal(third.vectors[1:], vecs[1:])
    np.testing.assert_allclose(third.vectors[0], HashingEncoder(16).encode(["Pink heart candle holder"])[0])


def test_cache_is_per_encoder_and_rows_are_exact(ws):
    add_items(ws, ITEMS)
    item_text_vectors(ws, HashingEncoder(16))
    _, v32 = item_text_vectors(ws, HashingEncoder(32))
    assert v32.shape == (3, 32)
    assert cache_size(ws) == 6
    blob, dim = ws.execute(
        "SELECT vector, dim FROM embeddings WHERE encoder_id='hashing-32' AND text_hash=?",
        [text_hash("Red heart candle holder")],
    ).fetchone()
    assert dim == 32
    np.testing.assert_array_equal(np.frombuffer(blob, np.float32), v32[0])


def test_duplicate_texts_are_encoded_once(ws):
    add_items(ws, [{"item_id": f"X{i}", "title": "Same mug"} for i in range(5)])
    enc = CountingEncoder()
    result = encode_items(ws, enc)
    assert enc.n_encoded == 1 and result.stats.texts == 1 and len(result.item_ids) == 5
    assert np.allclose(result.vectors, result.vectors[0])
    again = encode_items(ws, enc)  # every row filled from the one cached vector
    assert enc.n_encoded == 1 and again.stats.cached == 1
    np.testing.assert_array_equal(again.vectors, result.vectors)


def test_damaged_cache_row_is_reencoded(ws):
    add_items(ws, ITEMS[:1])
    enc = CountingEncoder()
    item_text_vectors(ws, enc)
    with ws.conn:
        ws.execute("UPDATE embeddings SET vector = x'0000'")
    enc.calls.clear()
    _, vecs = item_text_vectors(ws, enc)
    assert enc.n_encoded == 1
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-6)


def test_empty_catalogue(ws):
    ids, vecs = item_text_vectors(ws, HashingEncoder(8))
    assert len(ids) == 0 and vecs.shape == (0, 8)


def test_cancel_keeps_only_whole_chunks(ws, monkeypatch):
    monkeypatch.setattr(iv, "CHUNK_TEXTS", 4)
    add_items(ws, [{"item_id": f"I{i:02d}", "title": f"product number {i}"} for i in range(10)])
    token = CancelToken()

    class CancelOnSecondChunk(CountingEncoder):
        def encode(self, texts, batch_size=64, progress=None, cancel=None):
            out = super().encode(texts, batch_size, progress, cancel)
            if len(self.calls) == 2:
                token.cancel()  # cancelled while the second chunk was being encoded
            return out

    enc = CancelOnSecondChunk()
    with pytest.raises(Cancelled):
        item_text_vectors(ws, enc, cancel=token)
    assert cache_size(ws, enc.encoder_id) == 4  # first chunk committed, second dropped

    fresh = CountingEncoder()
    result = encode_items(ws, fresh)
    assert (result.stats.cached, result.stats.encoded) == (4, 6)


def test_progress_reports_cached_and_encoded(ws):
    add_items(ws, ITEMS)
    item_text_vectors(ws, HashingEncoder(16))
    with ws.conn:
        ws.insert_rows("items", [{"item_id": "D4", "title": "Lamp"}])
    seen = []
    item_text_vectors(ws, HashingEncoder(16), progress=seen.append)
    last = seen[-1]
    assert (last.done, last.total) == (4, 4)
    assert last.data["cached"] == 3 and last.data["encoded"] == 1


def test_readonly_workspace_still_returns_vectors(ws_path):
    from merch_app.data.workspace import open_workspace

    db = open_workspace(ws_path)
    add_items(db, ITEMS)
    db.close()
    ro = open_workspace(ws_path, readonly=True)
    try:
        ids, vecs = item_text_vectors(ro, HashingEncoder(16))
        assert len(ids) == 3 and vecs.shape == (3, 16)
        assert cache_size(ro) == 0
    finally:
        ro.close()

"""Encoding on Ray Data: same vectors as local encoding, in the same workspace cache."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from merch_app.engines import get_engine
from merch_app.engines.errors import EngineError
from merch_app.jobs import CancelToken, Cancelled
from merch_app.model.encoder import load_encoder
from merch_app.model.item_vectors import cache_size, encode_items, item_texts
from ray_support import add_items, start_ray, synthetic_items


@pytest.fixture(scope="module")
def ray_runtime():
    ray = start_ray()
    yield ray
    ray.shutdown()


def test_local_engine_never_imports_ray(tmp_path):
    """The embedded default (encode + engine lookup + CLI) runs without importing Ray."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from merch_app.cli.main import cli\n"
        "from merch_app.engines import get_engine\n"
        "assert get_engine('local').describe() == {'engine': 'local', 'workers': 1}\n"
        f"r = CliRunner().invoke(cli, ['encode', '-w', r'{tmp_path / 'ws.sqlite'}', '--encoder', 'hashing', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray was imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MERCH_APP_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_engine_options_are_checked():
    with pytest.raises(EngineError, match="unknown engine 'spark'"):
        get_engine("spark")
    with pytest.raises(EngineError, match="need --engine ray"):
        get_engine("local", address="ray://head:10001")
    with pytest.raises(EngineError, match="at least 1"):
        get_engine("ray", workers=0)


def test_ray_engine_without_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(EngineError, match=r"merch_app\[ray\]"):
        get_engine("ray")


def test_ray_hashing_vectors_equal_local_and_fill_the_cache(ray_runtime, ws):
    add_items(ws, synthetic_items(700))
    reports = []
    result = get_engine("ray", workers=2).encode_items(ws, "hashing:32", progress=reports.append)
    ids, texts = item_texts(ws)
    assert list(result.item_ids) == ids
    local = load_encoder("hashing:32").encode(texts)
    np.testing.assert_allclose(result.vectors, local, atol=1e-6)
    distinct = len(set(texts))
    assert result.stats.encoded == distinct and result.stats.cached == 0
    assert cache_size(ws, "hashing-32") == distinct
    assert reports and reports[-1].done == reports[-1].total == distinct
    assert reports[-1].data["engine"] == "ray" and reports[-1].data["workers"] == 2
    # local encoding now finds every text in the cache Ray filled
    again = encode_items(ws, load_encoder("hashing:32"))
    assert again.stats.encoded == 0 and again.stats.cached == distinct
    np.testing.assert_array_equal(again.vectors, result.vectors)


def test_ray_encodes_only_texts_missing_from_the_cache(ray_runtime, ws):
    rows = synthetic_items(300, seed=3)
    add_items(ws, rows[:200])
    encode_items(ws, load_encoder("hashing:16"))
    add_items(ws, rows[200:])
    result = get_engine("ray", workers=1).encode_items(ws, load_encoder("hashing:16"))
    _, texts = item_texts(ws)
    first = set(item_texts_of(rows[:200]))
    assert result.stats.cached == len(first)
    assert result.stats.encoded == len(set(texts) - first)


def item_texts_of(rows):
    from merch_app.model.item_vectors import render_item_text

    return [render_item_text(r) for r in rows]


def test_ray_encode_cancel_keeps_whole_chunks(ray_runtime, ws):
    add_items(ws, synthetic_items(2500, seed=5))
    distinct = len(set(item_texts(ws)[1]))
    token = CancelToken()

    def progress(p):
        if p.data.get("encoded", 0) > 0:
            token.cancel()  # at the first batch back: the driver stops before the last one

    with pytest.raises(Cancelled):
        get_engine("ray", workers=2).encode_items(ws, "hashing:8", progress=progress, cancel=token)
    kept = cache_size(ws, "hashing-8")
    assert kept < distinct
    found = ws.execute("SELECT dim, length(vector) FROM embeddings WHERE encoder_id = 'hashing-8'").fetchall()
    assert all(d == 8 and n == 32 for d, n in found)  # only complete vectors were written
    # a second run sends only what is missing and ends with the same vectors as local encoding
    again = get_engine("ray", workers=2).encode_items(ws, "hashing:8")
    assert again.stats.cached == kept and again.stats.encoded == distinct - kept
    np.testing.assert_allclose(again.vectors, load_encoder("hashing:8").encode(item_texts(ws)[1]), atol=1e-6)


def test_cli_encode_on_ray(ray_runtime, ws_path):
    from merch_app.cli.main import cli
    from merch_app.data.workspace import open_workspace

    db = open_workspace(ws_path)
    add_items(db, synthetic_items(120, seed=7))
    db.close()
    r = CliRunner().invoke(cli, ["encode", "-w", str(ws_path), "--encoder", "hashing", "--engine", "ray",
                                 "--workers", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["engine"] == "ray" and out["workers"] == 2 and out["items"] == 120
    assert out["encoded"] + out["cached"] == len(set(item_texts_of(synthetic_items(120, seed=7))))
    bad = CliRunner().invoke(cli, ["encode", "-w", str(ws_path), "--workers", "2"])
    assert bad.exit_code != 0 and "--engine ray" in bad.output


@pytest.mark.slow
def test_ray_minilm_vectors_agree_with_local(ray_runtime, ws):
    """The real encoder on Ray actors: cosine >= 0.9999 to local vectors for every item."""
    add_items(ws, synthetic_items(400, seed=11))
    result = get_engine("ray", workers=2).encode_items(ws, "minilm")
    _, texts = item_texts(ws)
    local = load_encoder("minilm").encode(texts)
    cos = np.sum(result.vectors * local, axis=1) / (
        np.linalg.norm(result.vectors, axis=1) * np.linalg.norm(local, axis=1))
    assert cos.min() >= 0.9999, f"worst cosine {cos.min():.6f}"
    assert result.encoder_id == load_encoder("minilm").encoder_id

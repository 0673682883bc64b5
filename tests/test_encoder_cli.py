"""`merch-app encode` end to end on a small workspace."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from merch_app.data.workspace import open_workspace


@pytest.fixture
def small_ws(ws_path):
    db = open_workspace(ws_path)
    with db.conn:
        db.insert_rows("items", 
            [
                {"item_id": "A1", "title": "Red heart candle holder", "category": "Home"},
                {"item_id": "B2", "title": "Blue garden chair", "category": "Garden"},
                {"item_id": "C3", "title": "Jumbo bag red retrospot", "category": None},
            ],
        )
    db.close()
    return ws_path


def run(*args):
    result = CliRunner().invoke(cli, ["encode", *args])
    return result


def test_encode_json_then_everything_cached(small_ws):
    first = run("--workspace", str(small_ws), "--encoder", "hashing", "--json")
    assert first.exit_code == 0, first.output
    out = json.loads(first.output)
    assert out["items"] == 3 and out["encoded"] == 3 and out["cached"] == 0
    assert out["encoder_id"] == "hashing-64"
    assert set(out) == {
        "items", "encoded", "cached", "seconds", "items_per_s", "encoder_id", "engine", "workers",
    }
    assert out["engine"] == "local"

    second = json.loads(run("-w", str(small_ws), "--encoder", "hashing", "--json").output)
    assert (second["encoded"], second["cached"]) == (0, 3)


def test_encode_plain_text_output(small_ws):
    result = run("-w", str(small_ws), "--encoder", "hashing:32")
    assert result.exit_code == 0
    assert "3 items: 3 texts encoded, 0 from cache" in result.output


def test_encode_bad_encoder_dir_is_a_clear_error(small_ws, tmp_path):
    result = run("-w", str(small_ws), "--encoder", str(tmp_path / "no-model"))
    assert result.exit_code == 1
    assert "encoder folder does not exist" in result.output
    assert "Traceback" not in result.output


def test_encode_empty_workspace(ws_path):
    result = run("-w", str(ws_path), "--encoder", "hashing")
    assert result.exit_code == 0 and "No items" in result.output


@pytest.mark.slow
def test_encode_with_minilm_int8(small_ws):
    out = json.loads(run("-w", str(small_ws), "--int8", "--json").output)
    assert out["encoded"] == 3 and out["encoder_id"].startswith("all-MiniLM-L6-v2@")
    assert out["encoder_id"].endswith("+int8")
    db = open_workspace(small_ws)
    assert db.execute("SELECT DISTINCT dim FROM embeddings").fetchall() == [(384,)]
    db.close()

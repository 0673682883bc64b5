"""CLI start-up: the lazy command table, the lazy encoder and the persistent query-vector cache."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

import merch_app
from merch_app.__main__ import register_gui
from merch_app.cli.main import COMMANDS, LazyGroup, cli
from merch_app.data.workspace import open_workspace
from merch_app.model import encoder as encoder_mod
from merch_app.model.encoder import load_encoder
from merch_app.model.hashing_encoder import HashingEncoder
from merch_app.model.bert_encoder import BertEncoder
from merch_app.model.item_vectors import text_hash
from merch_app.model.query_vectors import QueryVectorStore
from ranking_fixtures import SAMPLE_ITEMS, insert_items

PACKAGE = Path(merch_app.__file__).resolve().parent


def _eager_group() -> click.Group:
    """Every command of the table, imported and registered the old way."""
    group = click.Group("merch-app")
    table = dict(COMMANDS)
    table["gui"] = ("merch_app.ui.gui_command", "")
    for module in sorted({m for m, _ in table.values()}):
        __import__(module, fromlist=["register"]).register(group)
    return group


def test_table_names_every_command_and_its_short_help():
    eager = _eager_group()
    lazy = LazyGroup("merch-app", lazy_commands=COMMANDS)
    register_gui(lazy)
    assert sorted(eager.commands) == sorted(lazy.lazy_commands)
    for name, cmd in eager.commands.items():
        for limit in (30, 45, 60, 200):
            stand_in = click.Command(name, help=lazy.lazy_commands[name][1])
            assert stand_in.get_short_help_str(limit) == cmd.get_short_help_str(limit), name


def test_help_lists_every_command_like_an_eager_group():
    lazy = LazyGroup("merch-app", lazy_commands=COMMANDS)
    register_gui(lazy)
    eager = _eager_group()
    runner = CliRunner()
    got = runner.invoke(lazy, ["--help"]).output
    want = runner.invoke(eager, ["--help"]).output
    assert got == want
    assert not lazy.commands  # listing them imported none


def test_help_imports_no_command_module_and_no_heavy_library():
    code = (
        "import sys\n"
        "from merch_app.__main__ import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('torch', 'transformers', 'pandas', 'numpy', 'sqlite_utils', 'PySide6', 'faiss')\n"
        "print([m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('merch_app.cli.')\n"
        "       and m != 'merch_app.cli.main' or m.startswith('merch_app.ui')])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "query" in out and "gui" in out
    assert out.strip().splitlines()[-1] == "[]"


def test_a_missing_command_module_fails_loudly():
    group = LazyGroup("g", lazy_commands={"nope": ("merch_app.cli.no_such_module", "Not written.")})
    assert "nope" in CliRunner().invoke(group, ["--help"]).output
    result = CliRunner().invoke(group, ["nope"])
    assert isinstance(result.exception, ModuleNotFoundError)


def test_cli_package_never_names_the_ui_package():
    for path in (PACKAGE / "cli").glob("*.py"):
        assert "merch_app.ui" not in path.read_text(encoding="utf-8"), path.name


def test_bert_encoder_id_and_dim_without_torch():
    code = (
        "import sys\n"
        "from merch_app.model.encoder import load_encoder\n"
        "enc = load_encoder('minilm')\n"
        "print(enc.encoder_id, enc.dim, enc.loaded, 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0].startswith("all-MiniLM-L6-v2@") and out[1:] == ["384", "False", "False", "False"]
    assert out[0] == BertEncoder().encoder_id  # the id the cached vectors are stored under


class CountingHashing(HashingEncoder):
    """A hashing encoder that counts the texts it encodes."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__(dim)
        self.texts: list[str] = []

    def encode(self, texts, batch_size=64, progress=None, cancel=None):
        self.texts.extend(texts)
        return super().encode(texts, batch_size, progress, cancel)


@pytest.fixture
def items_ws(ws, ws_path):
    insert_items(ws, SAMPLE_ITEMS)
    return ws_path


@pytest.fixture
def counting(monkeypatch):
    """``--encoder hashing`` / ``hashing:32`` give fresh counting encoders (one per spec)."""
    monkeypatch.setattr(encoder_mod, "_CACHE", {})
    made: dict[int, CountingHashing] = {}

    def make(dim: int = 64) -> CountingHashing:
        made[dim] = CountingHashing(dim)
        return made[dim]

    monkeypatch.setattr(encoder_mod, "HashingEncoder", make)
    return made


def _query(ws_path, text, *extra):
    result = CliRunner().invoke(cli, ["query", text, "-w", str(ws_path), "--json", "--k", "3", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_repeated_query_reads_its_vector_from_the_workspace(items_ws, counting):
    first = _query(items_ws, "red heart candle", "--encoder", "hashing")
    assert "red heart candle" in counting[64].texts
    encoder_mod._CACHE.clear()  # a new process: new encoder, empty in-memory caches
    again = _query(items_ws, "red heart candle", "--encoder", "hashing")
    assert counting[64].texts == []  # neither the items nor the query were encoded
    assert again == first


def test_query_vectors_are_keyed_by_encoder_id(items_ws, counting):
    _query(items_ws, "red heart candle", "--encoder", "hashing")
    _query(items_ws, "red heart candle", "--encoder", "hashing:32")
    assert "red heart candle" in counting[32].texts  # another encoder does not reuse the 64-d vector
    db = open_workspace(items_ws)
    rows = db.execute("SELECT encoder_id, dim, length(vector) FROM embeddings WHERE text_hash = ? ORDER BY dim",
                      [text_hash("red heart candle")]).fetchall()
    db.close()
    assert rows == [("hashing-32", 32, 128), ("hashing-64", 64, 256)]


def test_store_skips_read_only_workspaces_and_other_threads(items_ws):
    enc = HashingEncoder(16)
    db = open_workspace(items_ws, readonly=True)
    store = QueryVectorStore(db, enc)
    assert store.get("mug") is None
    assert store.put("mug", enc.encode(["mug"])[0]) is False and not store.writable
    db.close()

    db = open_workspace(items_ws)
    store = QueryVectorStore(db, enc)
    vec = enc.encode(["mug"])[0]
    seen = []
    worker = threading.Thread(target=lambda: seen.extend([store.put("mug", vec), store.get("mug")]))
    worker.start()
    worker.join()
    assert seen == [False, None]  # another thread never touches this thread's connection
    assert store.put("mug", vec) and np.array_equal(store.get("mug"), vec)
    db.close()


@pytest.mark.slow
def test_cached_query_never_loads_the_bert_weights(items_ws, monkeypatch):
    monkeypatch.setattr(encoder_mod, "_CACHE", {})
    first = _query(items_ws, "red heart candle")
    assert load_encoder("minilm").loaded
    encoder_mod._CACHE.clear()
    assert _query(items_ws, "red heart candle") == first
    assert not load_encoder("minilm").loaded  # the query vector came from the workspace
    _query(items_ws, "blue tea mug")
    assert load_encoder("minilm").loaded  # a new query loads it


@pytest.mark.slow
@pytest.mark.parametrize("quantize", [None, "int8"])
def test_native_bert_matches_transformers_bert_model(quantize):
    """The plain-torch stack gives transformers' BertModel hidden states (same weights, same tokens)."""
    import torch
    from transformers import AutoTokenizer, BertModel

    from merch_app.model.bert_encoder import _quantize_int8
    from merch_app.model.bert_torch import FastTokenizer, load_bert
    from test_encoder_minilm import demo_titles

    enc = BertEncoder()
    texts = demo_titles(200) + ["Crème brûlée café", "日本語 中文", "emoji 🎉 candle", "word " * 300, "", "  x  "]
    reference = BertModel.from_pretrained(str(enc.model_dir), local_files_only=True).eval()
    ours = load_bert(enc.model_dir, enc.config)
    if quantize:
        reference, ours = _quantize_int8(reference, torch), _quantize_int8(ours, torch)
    auto_tok = AutoTokenizer.from_pretrained(str(enc.model_dir), local_files_only=True)
    fast_tok = FastTokenizer(enc.model_dir, enc.max_length)
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            batch = texts[start:start + 64]
            want = auto_tok(batch, padding=True, truncation=True, max_length=enc.max_length, return_tensors="pt")
            got = fast_tok(batch)
            for key in ("input_ids", "attention_mask", "token_type_ids"):
                assert torch.equal(got[key], want[key]), key
            mask = want["attention_mask"].unsqueeze(-1).float()
            diff = (reference(**want).last_hidden_state - ours(*[got[k] for k in (
                "input_ids", "attention_mask", "token_type_ids")])).abs() * mask
            assert float(diff.max()) < 1e-5


def test_native_support_covers_plain_bert_only(tmp_path):
    from merch_app.model.bert_torch import native_support

    (tmp_path / "tokenizer.json").write_text("{}", encoding="utf-8")
    assert native_support({"model_type": "bert", "hidden_size": 384, "num_attention_heads": 12}, tmp_path) is None
    assert "distilbert" in native_support({"model_type": "distilbert"}, tmp_path)
    assert "relative_key" in native_support({"model_type": "bert", "position_embedding_type": "relative_key"},
                                            tmp_path)
    assert "decoder" in native_support({"model_type": "bert", "is_decoder": True}, tmp_path)
    assert "tokenizer.json" in native_support({"model_type": "bert"}, tmp_path / "elsewhere")


@pytest.mark.slow
def test_folder_without_tokenizer_json_loads_through_transformers(tmp_path):
    import shutil

    src = BertEncoder().model_dir
    folder = tmp_path / "minilm-vocab-only"
    shutil.copytree(src, folder, ignore=shutil.ignore_patterns("tokenizer.json"))
    texts = ["red heart candle", "WHITE HANGING HEART T-LIGHT HOLDER", "Crème brûlée café"]
    vocab_only = BertEncoder(folder)
    assert vocab_only.dim == 384 and not vocab_only.loaded
    np.testing.assert_allclose(vocab_only.encode(texts), BertEncoder().encode(texts), atol=1e-5)

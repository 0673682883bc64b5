"""Nothing reaches the network at run time: import → train → query → explain with sockets blocked.

Sockets are blocked by patching ``socket.socket.connect`` / ``connect_ex``,
``socket.create_connection`` and the name lookups to raise (and record the
attempt).  The real MiniLM encoder is loaded in a fresh interpreter with the
same block and WITHOUT the Hugging Face offline switches, which proves the
bundled model files are enough.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from merch_app.cli.main import cli
from ui_support import write_shop

ROOT = Path(__file__).resolve().parents[1]

BLOCK_SOCKETS = '''
import socket
ATTEMPTS = []
def _blocked(*args, **kwargs):
    ATTEMPTS.append(repr(args[1:] if args and isinstance(args[0], socket.socket) else args)[:200])
    raise OSError(101, "network blocked by test")
socket.socket.connect = _blocked
socket.socket.connect_ex = _blocked
socket.socket.sendto = _blocked
socket.create_connection = _blocked
socket.getaddrinfo = _blocked
socket.gethostbyname = _blocked
socket.gethostbyname_ex = _blocked
'''


@pytest.fixture
def no_network(monkeypatch):
    attempts: list[str] = []

    def blocked(*args, **kwargs):
        attempts.append(repr(args)[:200])
        raise OSError(101, "network blocked by test")

    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, blocked)
    for name in ("create_connection", "getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        monkeypatch.setattr(socket, name, blocked)
    with pytest.raises(OSError, match="network blocked"):
        socket.create_connection(("example.org", 80), timeout=1)
    attempts.clear()
    return attempts


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_import_train_query_explain_without_network(no_network, tmp_path, ws_path):
    cat, ev = write_shop(tmp_path / "shop", n_items=60, n_users=25, n_events=900)
    ws = str(ws_path)
    doc = json.loads(invoke("import", str(cat), str(ev), "-w", ws, "--json"))
    assert (doc["items"], doc["events"]) == (60, 900)
    version = json.loads(invoke("train", "-w", ws, "--encoder", "hashing", "--epochs", "2", "--json"))
    assert version["active"] and version["encoder_id"] == "hashing-64"
    rows = json.loads(invoke("query", "red mug", "-w", ws, "--json", "--k", "5"))
    assert len(rows) == 5 and any("mug" in r["title"] for r in rows)
    target = next(r["item_id"] for r in rows if "mug" in r["title"])
    exp = json.loads(invoke("explain", "red mug", "--item", target, "--user", "U01", "-w", ws, "--json"))
    assert exp["item_id"] == target and exp["rank"] is not None
    recs = json.loads(invoke("recommend", "--user", "U01", "-w", ws, "--json"))
    assert len(recs) == 10
    assert no_network == []


@pytest.mark.slow
def test_real_minilm_encodes_with_sockets_blocked_and_hub_online(tmp_path):
    code = BLOCK_SOCKETS + '''
import numpy as np
from merch_app.model.encoder import load_encoder
enc = load_encoder("minilm")
v = enc.encode(["red heart candle holder", "heart shaped candle holder red", "blue metal garden chair"])
assert v.shape == (3, 384), v.shape
print(json.dumps({"attempts": ATTEMPTS, "sim_close": float(v[0] @ v[1]), "sim_far": float(v[0] @ v[2])}))
'''
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")}
    env["HF_HOME"] = str(tmp_path / "hf_home")  # an empty cache: nothing to fall back on
    proc = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["attempts"] == []
    assert out["sim_close"] > out["sim_far"] + 0.3

"""Test-wide settings: offscreen Qt, offline Hugging Face, temp workspaces."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ONLINE_RETAIL = SHARED_DATA / "online_retail" / "online_retail.csv.gz"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep every test's default workspace out of the real user folder."""
    monkeypatch.setenv("MERCH_APP_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
def ws_path(tmp_path) -> Path:
    return tmp_path / "ws.merch.sqlite"


@pytest.fixture
def ws(ws_path):
    from merch_app.data.workspace import open_workspace

    db = open_workspace(ws_path)
    yield db
    db.close()

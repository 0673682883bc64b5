"""Test-wide settings: offscreen Qt, offline Hugging Face, temp workspaces."""
from __future__ import annotations

import gc
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# Data kept beside the repository on the development machine (../shared), not in a clone:
# tests that need it ask for the ``online_retail`` fixture, which skips when the file is absent.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ONLINE_RETAIL = SHARED_DATA / "online_retail" / "online_retail.csv.gz"
# Data that ships in the repository (a real 47k-row subset of the same file).
DEMO_RETAIL = Path(__file__).resolve().parents[1] / "resources" / "demo" / "online_retail_demo.csv.gz"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep every test's default workspace out of the real user folder."""
    monkeypatch.setenv("MERCH_APP_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(autouse=True)
def _qt_garbage_collected_here():
    """After a test (and after qtbot closed its widgets), collect garbage and run deferred deletes now.

    Otherwise the wrappers of a closed window may be collected in the middle of
    the next test, and PySide deletes their C++ objects from a pending call at
    a random point (seen as a segfault between two UI tests).
    """
    yield
    if "PySide6.QtWidgets" not in sys.modules:
        return
    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        return
    for _ in range(2):
        gc.collect()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        app.processEvents()


@pytest.fixture(scope="session")
def online_retail() -> Path:
    """The full UCI Online Retail file from ``../shared``; skips the test when it is absent.

    Returns
    -------
    Path
        ``../shared/data/online_retail/online_retail.csv.gz`` (541,909 rows).
        A fresh clone has no ``../shared``: the test is skipped with the path
        in the reason, never failed.
    """
    if not ONLINE_RETAIL.is_file():
        pytest.skip(f"shared Online Retail data not present: {ONLINE_RETAIL}")
    return ONLINE_RETAIL


@pytest.fixture
def ws_path(tmp_path) -> Path:
    return tmp_path / "ws.merch.sqlite"


@pytest.fixture
def ws(ws_path):
    from merch_app.data.workspace import open_workspace

    db = open_workspace(ws_path)
    yield db
    db.close()


@pytest.fixture
def insights_db(ws):
    """The workspace filled with the small known-answer shop of ``insights_data.fill``."""
    from insights_data import fill

    fill(ws)
    return ws


@pytest.fixture
def synthetic_ratings():
    """(interactions, item text vectors): 40 users x 15 ratings (1-5) of 30 items from latent tastes.

    Ratings are ``clip(3 + taste_u . kind_i, 1, 5)``; text vectors are random
    unit rows (8-d).  Seeded, so every test sees the same data.
    """
    import numpy as np

    from merch_app.model.interactions import from_arrays

    rng = np.random.default_rng(3)
    taste, kind = rng.normal(size=(40, 4)), rng.normal(size=(30, 4))
    users, items, vals, ts = [], [], [], []
    for u in range(40):
        for i in rng.choice(30, 15, replace=False):
            users.append(f"u{u}")
            items.append(f"i{i}")
            vals.append(float(np.clip(3 + taste[u] @ kind[i], 1, 5)))
            ts.append(19000.0 + rng.uniform(0, 100))
    text = rng.normal(size=(30, 8)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    inter = from_arrays(users, items, ts, item_ids=[f"i{i}" for i in range(30)],
                        event_types=["rating"] * len(users), values=vals)
    return inter, text

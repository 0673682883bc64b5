"""A finished training waits for another program's long write instead of losing its model."""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from merch_app.data.workspace import begin_write, open_workspace
from merch_app.jobs import CancelToken, Cancelled


def _hold_lock(path, seconds: float, started: threading.Event) -> None:
    conn = sqlite3.connect(path, timeout=30)
    conn.execute("BEGIN IMMEDIATE")  # another program's import, mid-transaction
    started.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


def test_begin_write_waits_past_the_busy_timeout_and_says_so(ws_path):
    db = open_workspace(ws_path)
    db.execute("PRAGMA busy_timeout = 200")  # shorter than the other writer's transaction
    started = threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(ws_path, 1.5, started))
    holder.start()
    started.wait(10)
    waited: list[float] = []
    begin_write(db, waiting=waited.append)
    db.execute("COMMIT")
    holder.join()
    assert len(waited) >= 1 and waited == sorted(waited)
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 200  # the connection's own timeout is back
    db.close()


def test_begin_write_gives_up_after_its_patience_or_when_cancelled(ws_path):
    db = open_workspace(ws_path)
    started = threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(ws_path, 2.5, started))
    holder.start()
    started.wait(10)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        begin_write(db, patience_s=0.5)
    token = CancelToken()
    with pytest.raises(Cancelled):
        begin_write(db, cancel=token, waiting=lambda s: token.cancel())
    holder.join()
    assert not db.conn.in_transaction
    db.close()


def test_a_trained_model_is_registered_once_a_long_import_commits(ws_path):
    """save_version with a connection whose busy timeout (200 ms) is far below the other write (2 s)."""
    from merch_app.data.workspace import open_workspace as reopen
    from merch_app.model import registry
    from merch_app.model.hybrid import HybridConfig, HybridModel

    from ranking_fixtures import SAMPLE_ITEMS, insert_items

    db = reopen(ws_path)
    insert_items(db, SAMPLE_ITEMS)
    with db.conn:
        db.insert_rows("events", [{"user_id": f"u{n % 4}", "item_id": it["item_id"], "event_type": "purchase",
                                   "ts": f"2024-01-{1 + n % 28:02d}T10:00:00Z"}
                                  for n, it in enumerate(SAMPLE_ITEMS * 3)])
    from merch_app.model.encoder import load_encoder
    from merch_app.model.interactions import load_interactions
    from merch_app.model.item_vectors import item_text_vectors

    enc = load_encoder("hashing:32")
    ids, vecs = item_text_vectors(db, enc)
    model = HybridModel(HybridConfig(dim=8, epochs=1, refit_epochs=0, batch_size=64)).fit(load_interactions(db, ids),
                                                                                         vecs)
    db.execute("PRAGMA busy_timeout = 200")
    started = threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(ws_path, 1.5, started))
    holder.start()
    started.wait(10)
    waited: list[float] = []
    version = registry.save_version(db, model, name="after the import", encoder_id=enc.encoder_id,
                                    waiting=waited.append)
    holder.join()
    assert waited and registry.get_version(db, version.model_id).name == "after the import"
    db.close()

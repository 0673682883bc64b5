"""Forget a user: remove everything the workspace holds about them, then refresh the model.

:func:`forget_user` removes one user's events (given the original id or its
pseudonym), their rejected lines and cached query vectors, removes them from
every saved model version (vectors zeroed, history dropped, id replaced by a
tombstone), then refreshes the active model with
:func:`merch_app.services.training.update_with_new_events`.
"""
from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import numpy as np

from merch_app.data.privacy import SPLIT_CELLS, PrivacyError, stored_user_id
from merch_app.jobs import CancelToken, ProgressCallback
from merch_app.model.hybrid import HybridModel
from merch_app.model.hybrid_files import ModelLoadError
from merch_app.model.item_vectors import text_hash
from merch_app.model.registry import RegistryError, list_versions, version_folder
from merch_app.services.training import update_with_new_events


@dataclass
class ForgetResult:
    user_id: str  # as stored (pseudonym in a pseudonymised workspace)
    events_removed: int
    rejected_rows_removed: int
    cached_vectors_removed: int
    model_id: Optional[str]  # model refreshed after the removal, if any
    message: str
    models_scrubbed: int = 0  # saved model versions the user was removed from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rejected_rows_of(db, ids: set[str]) -> list[int]:
    """Rejected lines holding one of ``ids`` as a whole cell (any common delimiter)."""
    out = []
    for row_id, raw in db.execute("SELECT id, raw FROM rejected_rows"):
        if not raw:
            continue
        try:
            cells = next(csv.reader([raw]), [])
        except csv.Error:
            cells = []
        parts = {c.strip().strip('"') for c in SPLIT_CELLS.split(raw)} | {c.strip() for c in cells}
        if parts & ids:
            out.append(row_id)
    return out


def _query_hashes_only_of(db, user_id: str) -> list[str]:
    """Text hashes of the user's search queries that no other user's event carries."""
    rows = db.execute(
        "SELECT DISTINCT query FROM events e WHERE user_id = ? AND query IS NOT NULL AND query != '' "
        "AND NOT EXISTS (SELECT 1 FROM events o WHERE o.query = e.query AND o.user_id IS NOT ?)",
        [user_id, user_id],
    ).fetchall()
    hashes = set()
    for (query,) in rows:
        for text in {query, query.strip(), " ".join(query.split()), query.strip().lower()}:
            hashes.add(text_hash(text))
    return sorted(hashes)


def forget_user(
    db,
    user_id: str,
    *,
    retrain: bool = True,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    retrainer: Optional[Callable[..., Any]] = None,
) -> ForgetResult:
    """Remove everything the workspace holds about one user, then refresh the model.

    Parameters
    ----------
    db
        Open workspace owned by the calling thread.
    user_id
        The original id (pseudonymised by the workspace key when needed) or
        the stored id / pseudonym.
    retrain
        Refresh the active model afterwards (incrementally) so it no longer
        holds the user's history.
    retrainer
        Override of the refresh function (tests); default
        :func:`merch_app.services.training.update_with_new_events`.

    Returns
    -------
    ForgetResult

    Raises
    ------
    PrivacyError
        The user has no events in the workspace.
    """
    stored = stored_user_id(db, user_id)
    if stored is None:
        raise PrivacyError(f"user {user_id!r} has no events in this workspace (nothing to forget)")
    ids = {stored, str(user_id).strip()}
    conn = db.conn
    with conn:  # one transaction: all or nothing
        hashes = _query_hashes_only_of(db, stored)
        n_vectors = 0
        for start in range(0, len(hashes), 500):
            chunk = hashes[start:start + 500]
            cur = conn.execute(
                f"DELETE FROM embeddings WHERE text_hash IN ({','.join('?' * len(chunk))})", chunk)
            n_vectors += cur.rowcount
        n_events = conn.execute("DELETE FROM events WHERE user_id = ?", [stored]).rowcount
        reject_ids = _rejected_rows_of(db, ids)
        for start in range(0, len(reject_ids), 500):
            chunk = reject_ids[start:start + 500]
            conn.execute(f"DELETE FROM rejected_rows WHERE id IN ({','.join('?' * len(chunk))})", chunk)
    scrubbed = scrub_user_from_models(db, stored)
    model_id, refresh_note = None, "; no trained model to refresh"
    if retrain:
        try:
            model_id = _refresh_model(db, progress, cancel, retrainer)
        except Exception as exc:  # noqa: BLE001 - the data is already gone; say what is left to do
            refresh_note = f"; the model refresh failed ({exc}): run `merch-app update` later"
    message = (f"forgot user {stored}: {n_events:,} events, {len(reject_ids):,} rejected lines, "
               f"{n_vectors:,} cached query vectors removed, {scrubbed} saved model version(s) scrubbed")
    message += f"; model refreshed as {model_id}" if model_id else refresh_note
    return ForgetResult(stored, n_events, len(reject_ids), n_vectors, model_id, message, scrubbed)


def scrub_user(model, user_id: str) -> bool:
    """Remove one user from a loaded hybrid model in place; False if the model does not know them.

    The user's learned and text vectors and bias become zero, their purchase
    history leaves the history state, and their id becomes a tombstone
    (``forgotten-<n>``) so every array keeps its shape.
    """
    u = model.user_pos.get(str(user_id))
    if u is None:
        return False
    for name in ("P", "T_u", "b_user", "base_user"):
        arr = model.arrays.get(name)
        if arr is not None and len(arr) > u:
            arr = np.array(arr, copy=True)
            arr[u] = 0
            model.arrays[name] = arr
    model.state = model.state.without_user(u)
    ids = np.array(model.user_ids, dtype=object, copy=True)
    ids[u] = f"forgotten-{secrets.token_hex(6)}"
    model.user_ids = ids
    model._derive(ids=True)  # same number of users, one new id
    return True


def scrub_user_from_models(db, user_id: str) -> int:
    """Remove ``user_id`` from every saved model version that holds it; returns how many.

    Each version's ``ids.json`` and ``arrays.safetensors`` are rewritten into
    a temporary folder and moved over the old files one by one (each move is
    atomic and both states load), so a crash never leaves a broken version.
    A version that cannot be read is skipped (its own error shows on load), and so is one whose
    registered folder is not inside the workspace's model folder (nothing outside it is written).
    """
    if db.execute("SELECT 1 FROM models LIMIT 1").fetchone() is None:
        return 0
    done = 0
    for version in list_versions(db):
        try:
            folder = version_folder(db, version)
        except RegistryError:
            continue
        try:
            ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        if not isinstance(ids, dict) or not isinstance(ids.get("user_ids"), list) \
                or str(user_id) not in set(map(str, ids["user_ids"])):
            continue
        try:
            model = HybridModel.load(folder)
        except ModelLoadError:
            continue
        scrub_user(model, user_id)
        tmp = folder.with_name(f"{folder.name}.scrub-{secrets.token_hex(4)}")
        try:
            model.save(tmp)
            for name in ("arrays.safetensors", "ids.json"):
                os.replace(tmp / name, folder / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        done += 1
    return done


def _refresh_model(db, progress, cancel, retrainer) -> Optional[str]:
    """Update the active model without the removed events; the new model id or None."""
    retrainer = retrainer or update_with_new_events
    if db.execute("SELECT 1 FROM models WHERE active = 1 LIMIT 1").fetchone() is None:
        return None
    result = retrainer(db, progress=progress, cancel=cancel)
    return getattr(result, "model_id", None) or (result if isinstance(result, str) else None)

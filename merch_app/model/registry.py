"""Model versions: table ``models`` + one folder per version beside the workspace.

A version folder (``models_dir(db)/<model_id>/``) holds ``config.json``,
``ids.json``, ``arrays.safetensors`` (see :class:`HybridModel.save`) and the
FAISS index over the item text vectors (``index.faiss``, built when the version
is activated).  Folders are written as ``<model_id>.tmp-*`` and renamed into
place, so a crash or a cancel never leaves a half-written version; what a
killed process leaves behind (a ``.tmp-*`` folder, or a folder renamed but not
registered) is removed by the next save once it is an hour old.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np

from merch_app.data.workspace import models_dir
from merch_app.model.bundle import ModelBundle, ModelVersion
from merch_app.model.hybrid import HybridModel
from merch_app.model.hybrid_scoring import ModelLoadError

INDEX_FILE = "index.faiss"
__all__ = ["ModelLoadError", "RegistryError", "list_versions", "get_version", "rename", "activate", "delete",
           "active_version", "save_version", "load_model", "load_bundle", "item_popularity"]


class RegistryError(LookupError):
    """Unknown model id or an impossible registry operation (message is user-facing)."""


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row_to_version(row: dict) -> ModelVersion:
    def js(v):
        try:
            return json.loads(v) if v else {}
        except ValueError:
            return {}

    return ModelVersion(model_id=row["model_id"], name=row["name"] or row["model_id"], created=row["created"] or "",
                        config=js(row["config"]), metrics=js(row["metrics"]), data_snapshot=js(row["data_snapshot"]),
                        encoder_id=row["encoder_id"] or "", path=row["path"] or row["model_id"],
                        train_seconds=float(row["train_seconds"] or 0.0), engine=row["engine"] or "local",
                        active=bool(row["active"]))


def list_versions(db) -> list[ModelVersion]:
    """All versions, newest first."""
    return [_row_to_version(r) for r in db["models"].rows_where(order_by="created DESC, rowid DESC")]


def get_version(db, model_id: str) -> ModelVersion:
    """One version; :class:`RegistryError` if the id is unknown."""
    rows = list(db["models"].rows_where("model_id = ?", [model_id]))
    if not rows:
        raise RegistryError(f"no model version {model_id!r} in this workspace")
    return _row_to_version(rows[0])


def active_version(db) -> Optional[ModelVersion]:
    """The active version or None."""
    rows = list(db["models"].rows_where("active = 1", order_by="created DESC", limit=1))
    return _row_to_version(rows[0]) if rows else None


def version_folder(db, version: ModelVersion) -> Path:
    return models_dir(db) / version.path


def rename(db, model_id: str, name: str) -> ModelVersion:
    """Give a version a display name."""
    name = (name or "").strip()
    if not name:
        raise RegistryError("a model name cannot be empty")
    get_version(db, model_id)
    with db.conn:
        db.execute("UPDATE models SET name = ? WHERE model_id = ?", [name, model_id])
    return get_version(db, model_id)


# Workspace setting: the FAISS index kind of new model versions (``auto`` or a VectorIndex kind).
INDEX_SETTING = "vector_index"


def index_kind(db) -> str:
    """The workspace's vector index kind (``auto`` unless set with ``merch-app settings``)."""
    from merch_app.data.workspace import get_setting
    from merch_app.model.vector_index import KINDS

    kind = str(get_setting(db, INDEX_SETTING, "auto") or "auto")
    return kind if kind in KINDS else "auto"


def _ensure_index(folder: Path, item_text: np.ndarray, kind: str = "auto") -> None:
    from merch_app.model.vector_index import VectorIndex

    if not (folder / INDEX_FILE).exists():
        VectorIndex.from_vectors(item_text, kind=kind).save(folder / INDEX_FILE)


def activate(db, model_id: str) -> ModelVersion:
    """Make ``model_id`` the active version (builds its vector index if missing)."""
    version = get_version(db, model_id)
    model = load_model(db, model_id)
    _ensure_index(version_folder(db, version), model.arrays["T_i"], index_kind(db))
    with db.conn:
        db.execute("UPDATE models SET active = CASE WHEN model_id = ? THEN 1 ELSE 0 END", [model_id])
    return get_version(db, model_id)


def delete(db, model_id: str) -> None:
    """Remove a version and its files (deleting the active one leaves none active)."""
    version = get_version(db, model_id)
    folder = version_folder(db, version)
    trash = folder.with_name(f"{folder.name}.deleted-{uuid.uuid4().hex[:8]}")
    if folder.exists():
        os.replace(folder, trash)
    try:
        with db.conn:
            db.execute("DELETE FROM models WHERE model_id = ?", [model_id])
    except Exception:
        if trash.exists():
            os.replace(trash, folder)
        raise
    shutil.rmtree(trash, ignore_errors=True)


LEFTOVER_AGE_S = 3600.0  # younger ones may be another process's save in progress


def remove_leftovers(db, min_age_s: float = LEFTOVER_AGE_S) -> list[str]:
    """Delete model folders no version owns: ``*.tmp-*`` from a killed save, or a folder
    renamed into place whose table row was never written.

    Returns
    -------
    list of str
        Names of the removed folders.
    """
    root = models_dir(db)
    if not root.is_dir():
        return []
    owned = {r[0] for r in db.execute("SELECT path FROM models")}
    removed = []
    for folder in root.iterdir():
        if not folder.is_dir() or folder.name in owned:
            continue
        if ".tmp-" not in folder.name and not (folder / "config.json").exists():
            continue  # not ours
        try:
            if time.time() - folder.stat().st_mtime < min_age_s:
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed


def new_model_id() -> str:
    return datetime.now(timezone.utc).strftime("m%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def save_version(db, model: HybridModel, *, name: Optional[str] = None, metrics: Optional[dict] = None,
                 data_snapshot: Optional[dict] = None, encoder_id: str = "", train_seconds: float = 0.0,
                 engine: str = "local", activate_mode: str = "if_none", model_id: Optional[str] = None
                 ) -> ModelVersion:
    """Write ``model`` as a new version and register it.

    Parameters
    ----------
    activate_mode
        ``if_none`` (activate when no version is active), ``always`` or ``never``.

    The files go to ``<model_id>.tmp-*`` first and are renamed only when
    complete; the table row is inserted after the rename (and the folder
    removed again if that fails).
    """
    model_id = model_id or new_model_id()
    remove_leftovers(db)
    root = models_dir(db)
    tmp = root / f"{model_id}.tmp-{uuid.uuid4().hex[:8]}"
    final = root / model_id
    make_active = activate_mode == "always" or (activate_mode == "if_none" and active_version(db) is None)
    try:
        model.save(tmp)
        if make_active:
            _ensure_index(tmp, model.arrays["T_i"], index_kind(db))
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    row: dict[str, Any] = {
        "model_id": model_id, "name": name or model_id, "created": _now(),
        "config": json.dumps(model.config.to_dict()), "metrics": json.dumps(metrics or {}, default=float),
        "data_snapshot": json.dumps(data_snapshot or {}, default=str), "encoder_id": encoder_id,
        "path": model_id, "train_seconds": float(train_seconds), "engine": engine, "active": 0,
    }
    try:
        with db.conn:
            if make_active:
                db.execute("UPDATE models SET active = 0")
                row["active"] = 1
            db["models"].insert(row, pk="model_id")
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        raise
    return get_version(db, model_id)


def load_model(db, model_id: Optional[str] = None) -> HybridModel:
    """The trained model of ``model_id`` (active one if None); :class:`ModelLoadError` if unreadable."""
    version = get_version(db, model_id) if model_id else active_version(db)
    if version is None:
        raise RegistryError("no active model: train one first (merch-app train)")
    folder = version_folder(db, version)
    if not folder.is_dir():
        raise ModelLoadError(f"{folder}: model folder of {version.model_id!r} is missing")
    return HybridModel.load(folder)


def encoder_for_version(version: ModelVersion, encoder=None):
    """The encoder a version was trained with (or ``encoder`` when given)."""
    from merch_app.model.encoder import load_encoder

    if encoder is not None:
        return encoder
    if version.encoder_id.startswith("hashing-"):
        return load_encoder("hashing:" + version.encoder_id.split("-", 1)[1])
    quantize = "int8" if "+int8" in (version.encoder_id or "") else None  # trained with the int8 encoder
    return load_encoder(version.config.get("encoder"), quantize=quantize)


def item_popularity(db, item_ids, pos: Optional[dict[str, int]] = None) -> np.ndarray:
    """Popularity prior in [0, 1]: log1p(event count) / max, in the order of ``item_ids``.

    ``pos`` (id -> position in ``item_ids``) is reused when the caller has it
    (a million-entry dict is ~0.1 GB).
    """
    pos = pos if pos is not None else {str(i): n for n, i in enumerate(item_ids)}
    counts = np.zeros(len(pos), np.float64)
    for item_id, n in db.execute(  # iterated: a million (id, count) tuples at once cost ~0.3 GB
            "SELECT item_id, count(*) FROM events WHERE item_id IS NOT NULL AND event_type != 'search' "
            "GROUP BY item_id"):
        p = pos.get(str(item_id))
        if p is not None:
            counts[p] = n
    pop = np.log1p(counts)
    top = pop.max() if len(pop) else 0.0
    return (pop / top if top > 0 else pop).astype(np.float32)


def load_bundle(db, model_id: Optional[str] = None, encoder=None) -> ModelBundle:
    """Everything ranking needs for ``model_id`` (active version if None).

    Without any model: a text-only bundle (cached item vectors, a fresh
    vector index, popularity).  Catalogue items added after training join the
    model at once through their text vectors (cold start).

    Raises
    ------
    RegistryError
        Unknown ``model_id``.
    ModelLoadError
        Model files missing or damaged, or ``encoder`` differs from the one
        the model was trained with.
    """
    from merch_app.model.encoder import workspace_encoder
    from merch_app.model.item_vectors import item_text_vectors
    from merch_app.model.vector_index import VectorIndex, VectorIndexError

    version = get_version(db, model_id) if model_id else active_version(db)
    if version is None:
        encoder = encoder or workspace_encoder(db)
        ids, vectors = item_text_vectors(db, encoder)
        return ModelBundle(item_ids=ids, item_vectors=vectors, popularity=item_popularity(db, ids),
                           encoder=encoder, index=VectorIndex.from_vectors(vectors, kind=index_kind(db)))
    model = load_model(db, version.model_id)
    encoder = encoder_for_version(version, encoder)
    if version.encoder_id and encoder.encoder_id != version.encoder_id:
        raise ModelLoadError(f"model {version.model_id!r} was trained with encoder {version.encoder_id!r}, "
                             f"not {encoder.encoder_id!r}: choose that encoder or retrain")
    known = model.item_pos
    new = [i for (i,) in db.execute("SELECT item_id FROM items") if str(i) not in known]
    index = None
    if new:
        ids, vectors = item_text_vectors(db, encoder)
        pos = {str(i): n for n, i in enumerate(ids)}
        rows = [pos[i] for i in new if i in pos]
        model.add_items([str(ids[r]) for r in rows], vectors[rows])
    else:
        try:
            index = VectorIndex.load(version_folder(db, version) / INDEX_FILE)
            if index.ntotal != model.n_items:
                index = None
        except VectorIndexError:
            index = None
    item_vectors = model.arrays["T_i"]
    if index is None:
        index = VectorIndex.from_vectors(item_vectors, kind=index_kind(db))
    model.for_serving()  # ranking needs U/V/UW, not the ID embeddings they were built from
    return ModelBundle(item_ids=model.item_ids, item_vectors=item_vectors,
                       popularity=item_popularity(db, model.item_ids, model.item_pos), encoder=encoder, index=index,
                       model=model, version=version, item_pos=model.item_pos)

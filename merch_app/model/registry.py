"""Model versions: table ``models`` + one folder per version beside the workspace.

A version folder (``models_dir(db)/<model_id>/``) holds ``config.json``,
``ids.json``, ``arrays.safetensors`` (see :class:`HybridModel.save`) and the
FAISS index over the item text vectors (``index.faiss``, built when the version
is activated).  Folders are written as ``<model_id>.tmp-*`` and renamed into
place, so a crash or a cancel never leaves a half-written version; what a
killed process leaves behind (a ``.tmp-*`` folder, or a folder renamed but not
registered) is removed by the next save, or the next opening for writing, under the
write lock (:func:`merch_app.data.workspace.remove_leftover_folders`).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from merch_app.data.forget_list import forget_matcher
from merch_app.data.workspace import begin_write, get_setting, models_dir, remove_leftover_folders
from merch_app.errors import MerchAppError
from merch_app.model.encoder import load_encoder
from merch_app.model.hybrid import HybridModel
from merch_app.model.hybrid_files import ModelLoadError
from merch_app.model.scrub import scrub_listed
from merch_app.model.vector_index import KINDS, VectorIndex
from merch_app.model.version_folders import delete_folder_and_rows

INDEX_FILE = "index.faiss"
__all__ = ["ModelVersion", "RegistryError", "list_versions", "get_version", "rename", "activate", "delete",
           "active_version", "save_version", "load_model", "encoder_for_version", "index_kind"]


@dataclass
class ModelVersion:
    """One row of the model registry (table ``models``)."""

    model_id: str
    name: str
    created: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    data_snapshot: dict[str, Any]
    encoder_id: str
    path: str
    train_seconds: float
    engine: str = "local"
    active: bool = False


class RegistryError(MerchAppError, LookupError):
    """Unknown model id or an impossible registry operation (message is user-facing)."""


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row_to_version(row: dict) -> ModelVersion:
    def js(v):  # the columns come from the workspace file: garbage or deep nesting reads as {}
        try:
            data = json.loads(v) if v else {}
        except (ValueError, TypeError, RecursionError):
            return {}
        return data if isinstance(data, dict) else {}

    try:
        seconds = float(row["train_seconds"] or 0.0)
    except (TypeError, ValueError):
        seconds = 0.0
    return ModelVersion(model_id=row["model_id"], name=row["name"] or row["model_id"], created=row["created"] or "",
                        config=js(row["config"]), metrics=js(row["metrics"]), data_snapshot=js(row["data_snapshot"]),
                        encoder_id=row["encoder_id"] or "", path=row["path"] or row["model_id"],
                        train_seconds=seconds, engine=row["engine"] or "local",
                        active=bool(row["active"]))


def _rows(db, where: str, params: Sequence[Any] = ()) -> list[dict]:
    cur = db.execute(f"SELECT * FROM models WHERE {where}", params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def list_versions(db) -> list[ModelVersion]:
    """All versions, newest first."""
    return [_row_to_version(r) for r in _rows(db, "1 ORDER BY created DESC, rowid DESC")]


def get_version(db, model_id: str) -> ModelVersion:
    """One version; :class:`RegistryError` if the id is unknown."""
    rows = _rows(db, "model_id = ?", [model_id])
    if not rows:
        raise RegistryError(f"no model version {model_id!r} in this workspace")
    return _row_to_version(rows[0])


def active_version(db) -> Optional[ModelVersion]:
    """The active version or None."""
    rows = _rows(db, "active = 1 ORDER BY created DESC LIMIT 1")
    return _row_to_version(rows[0]) if rows else None


def has_versions(db) -> bool:
    """True when the workspace holds at least one model version (one indexed row read)."""
    return db.execute("SELECT 1 FROM models LIMIT 1").fetchone() is not None


def version_folder(db, version: ModelVersion) -> Path:
    """The folder of a version's files: always a direct sub-folder of ``models_dir(db)``.

    The ``models.path`` column comes from the workspace file, which may be shared or
    tampered with: a path that is not a plain folder name (``../victim``, an absolute path,
    a symbolic link leading elsewhere) is refused with :class:`RegistryError`, so nothing
    outside the workspace's own model folder is ever read, written or deleted.
    """
    root = models_dir(db)
    return root / _safe_folder_name(root, version.path, version.model_id)


def _safe_folder_name(root: Path, name: Any, model_id: str) -> str:
    text = name if isinstance(name, str) else ""
    plain = (text not in ("", ".", "..") and "/" not in text and "\\" not in text and "\x00" not in text
             and ":" not in text and Path(text).name == text)
    if plain:
        try:
            plain = (root / text).resolve().parent == root.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            plain = False
    if not plain:
        raise RegistryError(f"model version {model_id!r} names the folder {name!r}, which is not inside this "
                            f"workspace's model folder {root}: refused (the workspace file may have been "
                            "edited by hand or by another program); nothing was read or deleted")
    return text


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
    kind = str(get_setting(db, INDEX_SETTING, "auto") or "auto")
    return kind if kind in KINDS else "auto"


def _ensure_index(folder: Path, item_text: np.ndarray, kind: str = "auto") -> None:
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

    def delete_rows() -> None:
        with db.conn:
            db.execute("DELETE FROM models WHERE model_id = ?", [model_id])

    delete_folder_and_rows(version_folder(db, version), delete_rows)


def new_model_id() -> str:
    return datetime.now(timezone.utc).strftime("m%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def save_version(db, model: HybridModel, *, name: Optional[str] = None, metrics: Optional[dict] = None,
                 data_snapshot: Optional[dict] = None, encoder_id: str = "", train_seconds: float = 0.0,
                 engine: str = "local", activate_mode: str = "if_none", model_id: Optional[str] = None,
                 cancel=None, waiting: Optional[Callable[[float], None]] = None) -> ModelVersion:
    """Write ``model`` as a new version and register it.

    Parameters
    ----------
    activate_mode
        ``if_none`` (activate when no version is active), ``always`` or ``never``.
    cancel, waiting
        While another program holds the write lock (a long import), the save waits for it
        (:func:`merch_app.data.workspace.begin_write`): ``waiting(seconds)`` says so about once a
        second, ``cancel.check()`` may stop it.

    The files go to ``<model_id>.tmp-*`` first and are renamed only when
    complete; the table row is inserted after the rename (and the folder
    removed again if that fails).

    Users on the forget list (:mod:`merch_app.data.forget_list`) are removed
    from ``model`` first (:func:`merch_app.model.scrub.scrub_listed`): a model
    fitted while a forget ran never registers with that user.  The list is
    read, the files written and the row inserted in one write transaction
    (taken before the files are written), so a forget is either listed before
    it, and honoured here, or comes after the registration and scrubs this
    version.
    """
    model_id = model_id or new_model_id()
    root = models_dir(db)
    tmp = root / f"{model_id}.tmp-{uuid.uuid4().hex[:8]}"
    final = root / model_id
    written = False
    try:
        with db.conn:
            if not db.conn.in_transaction:  # the write lock: a forget waits until this version is registered
                begin_write(db, cancel=cancel, waiting=waiting)
            remove_leftover_folders(db)  # under the lock no other save runs: what is there was left by a kill
            matcher = forget_matcher(db)
            if matcher is not None:
                scrub_listed(model, matcher, derive=False)
            make_active = activate_mode == "always" or (activate_mode == "if_none" and active_version(db) is None)
            try:
                model.save(tmp)
                if make_active:
                    _ensure_index(tmp, model.arrays["T_i"], index_kind(db))
                os.replace(tmp, final)
                written = True
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            row: dict[str, Any] = {
                "model_id": model_id, "name": name or model_id, "created": _now(),
                "config": json.dumps(model.config.to_dict()), "metrics": json.dumps(metrics or {}, default=float),
                "data_snapshot": json.dumps(data_snapshot or {}, default=str), "encoder_id": encoder_id,
                "path": model_id, "train_seconds": float(train_seconds), "engine": engine, "active": 0,
            }
            if make_active:
                db.execute("UPDATE models SET active = 0")
                row["active"] = 1
            db.insert_rows("models", [row])
    except BaseException:
        if written:
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
    if encoder is not None:
        return encoder
    if version.encoder_id.startswith("hashing-"):
        return load_encoder("hashing:" + version.encoder_id.split("-", 1)[1])
    quantize = "int8" if "+int8" in (version.encoder_id or "") else None  # trained with the int8 encoder
    return load_encoder(version.config.get("encoder"), quantize=quantize)

"""Fine-tuned encoder versions: table ``encoder_versions`` + one folder per version beside the workspace.

A version folder (``encoders_dir(db)/<version_id>/``) is a plain BERT folder
(``config.json``, ``model.safetensors``, the parent's tokenizer files) that
:class:`~merch_app.model.bert_encoder.BertEncoder` loads like any other.  It is
written as ``<version_id>.tmp-*`` and renamed into place only when complete,
then registered; a failure on the way removes the folder, so the registry never
names a half-written encoder.  The safetensors header carries the sha256 of the
weights, so the folder's ``encoder_id`` (which fingerprints config.json and
that header) changes with every set of weights and the embedding cache (keyed
by ``encoder_id``) never mixes two versions.

At most one version is active (column ``active``); no active version means the
packaged all-MiniLM-L6-v2.  :func:`merch_app.model.encoder.workspace_encoder`
honours it, so every bundle without a model, every new training run and the
query encoder of such bundles use it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from merch_app.data.job_marks import running_jobs
from merch_app.data.workspace import WorkspaceError, begin_write, workspace_path
from merch_app.errors import MerchAppError
from merch_app.jobs import pause_point
from merch_app.model.bert_encoder import BertEncoder
from merch_app.model.version_folders import delete_folder_and_rows

# Files of the parent folder that go with the weights (the tokenizer and its settings).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
WEIGHTS_FILE = "model.safetensors"
_ID = re.compile(r"^ft\d{8}-\d{6}-[0-9a-f]{6}$")


class EncoderVersionError(MerchAppError, LookupError):
    """Unknown or unusable encoder version (message is user-facing)."""


@dataclass
class EncoderVersion:
    """One row of the encoder registry (table ``encoder_versions``)."""

    version_id: str
    name: str
    created: str
    encoder_id: str
    parent_encoder_id: str
    parent_spec: Optional[str]
    path: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    data_snapshot: dict[str, Any]
    n_pairs: int
    train_seconds: float
    active: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of the row."""
        return dict(self.__dict__)

    def held_out_change(self) -> str:
        """The held-out NDCG@10 before and after fine-tuning (and of the related lists), as shown to the user."""
        test = self.metrics.get("test") or {}
        nd = test.get("ndcg@10") or {}
        if "before" not in nd or "after" not in nd:
            return "no held-out table"
        related = (test.get("related") or {}).get("ndcg@10") or {}
        return f"NDCG@10 {nd['before']:.3f} -> {nd['after']:.3f}" + (
            f", related {related['before']:.3f} -> {related['after']:.3f}" if "after" in related else "")


def encoders_dir(db, create: bool = True) -> Path:
    """Folder beside the workspace file where fine-tuned encoders are stored (``<workspace>.encoders``).

    Raises
    ------
    WorkspaceError
        An in-memory workspace (it has no folder).
    """
    p = workspace_path(db)
    if p is None:
        raise WorkspaceError("in-memory workspace has no encoders folder")
    d = p.with_name(p.name + ".encoders")
    if create:
        d.mkdir(parents=True, exist_ok=True)
    return d


def is_version_id(name: str) -> bool:
    """True when ``name`` has the form of an encoder version id (``ft<date>-<time>-<hex>``)."""
    return bool(_ID.match(name or ""))


def new_version_id() -> str:
    """A fresh, time-ordered encoder version id."""
    return datetime.now(timezone.utc).strftime("ft%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def _js(value) -> dict:
    try:
        data = json.loads(value) if value else {}
    except (ValueError, TypeError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _version(row: dict) -> EncoderVersion:
    return EncoderVersion(
        version_id=row["version_id"], name=row["name"] or row["version_id"], created=row["created"] or "",
        encoder_id=row["encoder_id"] or "", parent_encoder_id=row["parent_encoder_id"] or "",
        parent_spec=row["parent_spec"], path=row["path"] or row["version_id"], config=_js(row["config"]),
        metrics=_js(row["metrics"]), data_snapshot=_js(row["data_snapshot"]), n_pairs=int(row["n_pairs"] or 0),
        train_seconds=float(row["train_seconds"] or 0.0), active=bool(row["active"]))


def _rows(db, where: str, params: Sequence[Any] = ()) -> list[EncoderVersion]:
    cur = db.execute(f"SELECT * FROM encoder_versions WHERE {where}", params)
    names = [d[0] for d in cur.description]
    return [_version(dict(zip(names, r))) for r in cur.fetchall()]


def list_encoder_versions(db) -> list[EncoderVersion]:
    """Every fine-tuned encoder version, newest first."""
    return _rows(db, "1 ORDER BY created DESC, rowid DESC")


def get_encoder_version(db, version_id: str) -> EncoderVersion:
    """One version; :class:`EncoderVersionError` if the id is unknown."""
    rows = _rows(db, "version_id = ?", [version_id])
    if not rows:
        raise EncoderVersionError(f"no encoder version {version_id!r} in this workspace "
                                  "(merch-app encoders list shows them)")
    return rows[0]


def active_encoder_version(db) -> Optional[EncoderVersion]:
    """The active fine-tuned encoder, or None (the packaged MiniLM is the workspace's encoder)."""
    rows = _rows(db, "active = 1 ORDER BY created DESC LIMIT 1")
    return rows[0] if rows else None


def active_encoder_key(db) -> Optional[tuple[str, str]]:
    """(version id, encoder id) of the active version or None: one indexed read, for cache keys."""
    row = db.execute("SELECT version_id, encoder_id FROM encoder_versions WHERE active = 1 "
                     "ORDER BY created DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else None


def version_folder(db, version: EncoderVersion) -> Path:
    """The folder of a version: always a direct sub-folder of :func:`encoders_dir` (a tampered path is refused)."""
    root = encoders_dir(db, create=False)
    name = version.path
    plain = isinstance(name, str) and is_version_id(name)
    if not plain:
        raise EncoderVersionError(f"encoder version {version.version_id!r} names the folder {name!r}, which is not "
                                  f"a version folder inside {root}: refused")
    return root / name


def active_encoder_spec(db) -> Optional[str]:
    """The ``load_encoder`` spec (folder path) of the active version, or None for the packaged MiniLM.

    Raises
    ------
    EncoderVersionError
        The active version's folder is missing.
    """
    version = active_encoder_version(db)
    if version is None:
        return None
    folder = version_folder(db, version)
    if not (folder / "config.json").is_file():
        raise EncoderVersionError(
            f"the active encoder version {version.version_id!r} has no files ({folder} is missing): "
            "activate another one or the packaged MiniLM (merch-app encoders activate base)")
    return str(folder)


def activate_encoder(db, version_id: Optional[str]) -> Optional[EncoderVersion]:
    """Make ``version_id`` the workspace's encoder; None (or ``"base"``) goes back to the packaged MiniLM.

    Returns
    -------
    EncoderVersion or None
        The active version after the call.
    """
    if version_id in (None, "", "base", "minilm"):
        with db.conn:
            db.execute("UPDATE encoder_versions SET active = 0")
        return None
    version = get_encoder_version(db, version_id)
    folder = version_folder(db, version)
    if not (folder / "config.json").is_file():
        raise EncoderVersionError(f"encoder version {version_id!r} has no files ({folder} is missing): "
                                  "delete it (merch-app encoders delete)")
    with db.conn:
        db.execute("UPDATE encoder_versions SET active = CASE WHEN version_id = ? THEN 1 ELSE 0 END", [version_id])
    return get_encoder_version(db, version_id)


def models_using(db, encoder_id_prefix: str) -> list[str]:
    """Model versions trained with an encoder whose id starts with ``encoder_id_prefix`` (fp32 and int8)."""
    return [r[0] for r in db.execute("SELECT model_id FROM models WHERE encoder_id LIKE ? ESCAPE '\\'",
                                     [_like_prefix(encoder_id_prefix)])]


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def delete_encoder_version(db, version_id: str) -> EncoderVersion:
    """Remove a version, its folder and its cached vectors (deleting the active one makes MiniLM active).

    Models trained with it stay registered but refuse to load with a message
    that names the deleted version (see :func:`deleted_encoder_problem`).
    """
    version = get_encoder_version(db, version_id)

    def delete_rows() -> None:
        with db.conn:
            db.execute("DELETE FROM encoder_versions WHERE version_id = ?", [version_id])
            db.execute("DELETE FROM embeddings WHERE encoder_id LIKE ? ESCAPE '\\'",
                       [_like_prefix(f"{version_id}@")])

    delete_folder_and_rows(version_folder(db, version), delete_rows)
    return version


def deleted_encoder_problem(db, encoder_id: str) -> Optional[str]:
    """Why a model trained with ``encoder_id`` cannot rank, when that id names a missing encoder version.

    Returns
    -------
    str or None
        A user-facing sentence when ``encoder_id`` is a fine-tuned encoder
        (``<version id>@...``) that is no longer registered or has lost its
        folder; None otherwise.
    """
    name = (encoder_id or "").partition("@")[0]
    if not is_version_id(name):
        return None
    rows = _rows(db, "version_id = ?", [name])
    if rows:
        try:
            folder = version_folder(db, rows[0])
        except EncoderVersionError as exc:
            return str(exc)
        if (folder / "config.json").is_file():
            return None
        return f"its fine-tuned encoder version {name!r} has lost its folder ({folder})"
    return f"its fine-tuned encoder version {name!r} was deleted"


def weights_digest(path: Path) -> str:
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_encoder_folder(folder: Path, config: dict[str, Any], parent_dir: Path,
                         write_weights: Callable[[Path, dict[str, str]], None], weights_sha: str) -> None:
    """Write a BERT folder: config.json, the weights (through ``write_weights``) and the parent's tokenizer files.

    Parameters
    ----------
    folder
        The folder to create (it must not exist).
    config
        The BERT ``config.json``.
    parent_dir
        Folder whose tokenizer files are copied.
    write_weights
        ``write_weights(path, metadata)`` writes the safetensors file with the
        given header metadata.
    weights_sha
        Digest of the weights, stored in the safetensors header (it makes the
        ``encoder_id`` differ per set of weights).
    """
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    write_weights(folder / WEIGHTS_FILE, {"format": "pt", "merch_app_weights_sha256": weights_sha})
    for name in TOKENIZER_FILES:
        if (parent_dir / name).is_file():
            shutil.copyfile(parent_dir / name, folder / name)


def remove_leftover_encoder_folders(db) -> list[str]:
    """Delete encoder folders no version owns (``*.tmp-*`` of a killed save, or a folder renamed into place
    whose row was never written), unless another process is fine-tuning on this workspace right now.

    A fine-tuning renames its folder into place before its before/after evaluation and registers it after,
    so such a folder is only a leftover when no other fine-tuning runs (:mod:`merch_app.data.job_marks`).

    Returns
    -------
    list of str
        Names of the removed folders.
    """
    root = encoders_dir(db, create=False)
    if not root.is_dir() or running_jobs(db, "finetune"):
        return []
    owned = {row[0] for row in db.execute("SELECT path FROM encoder_versions")}
    removed = []
    for folder in root.iterdir():
        if folder.is_symlink() or not folder.is_dir() or folder.name in owned:
            continue  # a symbolic link may lead anywhere: never followed, never removed
        if ".tmp-" in folder.name or (".deleted-" not in folder.name and (folder / "config.json").exists()):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return sorted(removed)


def save_encoder_version(db, *, config: dict[str, Any], parent_dir: Path,
                         write_weights: Callable[[Path, dict[str, str]], None], weights_sha: str,
                         parent_encoder_id: str, parent_spec: Optional[str], train_config: dict[str, Any],
                         data_snapshot: dict[str, Any], n_pairs: int, train_seconds: float,
                         name: Optional[str] = None, version_id: Optional[str] = None,
                         before_register: Optional[Callable[[Path, str], dict[str, Any]]] = None,
                         activate_if: Optional[Callable[[dict[str, Any]], bool]] = None) -> EncoderVersion:
    """Write a fine-tuned encoder folder and register it (temp folder, rename, insert row).

    Parameters
    ----------
    config, parent_dir, write_weights, weights_sha
        See :func:`write_encoder_folder`.
    before_register
        ``before_register(folder, encoder_id) -> metrics`` runs after the
        rename and before the row is written (the before/after evaluation);
        its result is stored as the version's metrics.  If it raises (also
        :class:`~merch_app.jobs.Cancelled`), the folder and the vectors cached
        under the new encoder id are removed and nothing is registered.
    activate_if
        ``activate_if(metrics) -> bool``: make the new version active.

    Returns
    -------
    EncoderVersion
        The registered row.
    """
    version_id = version_id or new_version_id()
    root = encoders_dir(db)
    remove_leftover_encoder_folders(db)
    tmp = root / f"{version_id}.tmp-{uuid.uuid4().hex[:8]}"
    final = root / version_id
    encoder_id = ""
    try:
        write_encoder_folder(tmp, config, parent_dir, write_weights, weights_sha)
        os.replace(tmp, final)
        encoder_id = BertEncoder(final).encoder_id
        metrics = before_register(final, encoder_id) if before_register is not None else {}
        make_active = bool(activate_if(metrics)) if activate_if is not None else False
        row = {"version_id": version_id, "name": name or version_id, "created": _now(), "encoder_id": encoder_id,
               "parent_encoder_id": parent_encoder_id, "parent_spec": parent_spec, "path": version_id,
               "config": json.dumps(train_config, default=str), "metrics": json.dumps(metrics, default=float),
               "data_snapshot": json.dumps(data_snapshot, default=str), "n_pairs": int(n_pairs),
               "train_seconds": float(train_seconds), "active": 1 if make_active else 0}
        with db.conn:
            if not db.conn.in_transaction:
                begin_write(db)  # a long import in another program: wait for it, do not lose the fine-tuning
            pause_point("encoders.register")  # kill tests: the folder is in place, its row not written
            if make_active:
                db.execute("UPDATE encoder_versions SET active = 0")
            db.insert_rows("encoder_versions", [row])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        if encoder_id:
            with db.conn:
                db.execute("DELETE FROM embeddings WHERE encoder_id LIKE ? ESCAPE '\\'",
                           [_like_prefix(f"{version_id}@")])
        raise
    return get_encoder_version(db, version_id)

"""Forget a user: a logged, resumable removal of everything the workspace holds about them.

:func:`forget_user` puts the user on the forget list (:mod:`merch_app.data.forget_list`,
keyed digests, never the id) in the same transaction that deletes their
events, cached query vectors and rejected lines, then scrubs every saved model
version, removes leftover model folders holding them, clears deleted pages
out of the workspace file and its write-ahead log, and refreshes the active
model (:func:`merch_app.services.training.update_with_new_events`).  Each
step is marked done in the list as it finishes: a forget stopped half-way (a
kill, a full disk) is finished by running it again for the same user, or by
:func:`resume_forgets` for every stopped one.  Every writer honours the list
(imports drop the user's rows, the registry scrubs them from a version before
registering it), so nothing brings the user back.
"""
from __future__ import annotations

import mmap
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from merch_app.data.forget_list import (
    ForgetEntry, ForgetMatcher, add_entry, add_forms, find_entry, forget_matcher, id_forms, mark_step, stored_form,
    unfinished_entries,
)
from merch_app.data.export_log import exports_holding, scrub_exports
from merch_app.data.privacy import PrivacyError
from merch_app.data.spell_vocab import build_log_words
from merch_app.data.workspace import models_dir, require_writable, workspace_path
from merch_app.jobs import CancelToken, ProgressCallback
from merch_app.model.hybrid_files import ModelLoadError
from merch_app.model.item_vectors import text_hash
from merch_app.model.registry import RegistryError, list_versions, version_folder
from merch_app.model.scrub import SCRUB_MARK, listed_positions, read_user_ids, scrub_folder
from merch_app.services.training import update_with_new_events

# Parts of folder names inside the models folder that no registered version has:
# a save (``.tmp-``), a forget (``.scrub-``) or a delete (``.deleted-``) that was stopped.
_LEFTOVER_MARKS = (".tmp-", ".scrub-", ".deleted-")
_MODEL_FILES = ("config.json", "ids.json", "arrays.safetensors")
_MESSAGE_WITHHELD = "(message withheld: it named a user who was forgotten)"


@dataclass
class ForgetResult:
    user_id: str  # as stored (pseudonym in a pseudonymised workspace)
    events_removed: int
    rejected_rows_removed: int
    cached_vectors_removed: int
    model_id: Optional[str]  # model refreshed after the removal, if any
    message: str
    models_scrubbed: int = 0  # saved model versions the user was removed from
    folders_removed: int = 0  # leftover model folders (killed saves, scrubs, deletes) holding the user
    resumed: list[str] = field(default_factory=list)  # steps a stopped earlier forget had left undone
    unfinished: list[str] = field(default_factory=list)  # steps still to do (run forget again)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _query_hashes_only_of(db, user_ids: list[str]) -> list[str]:
    """Text hashes of the users' search queries that no other user's event carries."""
    marks = ",".join("?" * len(user_ids))
    rows = db.execute(
        f"SELECT DISTINCT query FROM events e WHERE user_id IN ({marks}) AND query IS NOT NULL AND query != '' "
        f"AND NOT EXISTS (SELECT 1 FROM events o WHERE o.query = e.query AND (o.user_id IS NULL OR "
        f"o.user_id NOT IN ({marks})))",
        [*user_ids, *user_ids],
    ).fetchall()
    hashes = set()
    for (query,) in rows:
        for text in {query, query.strip(), " ".join(query.split()), query.strip().lower()}:
            hashes.add(text_hash(text))
    return sorted(hashes)


def _chunks(values: list, size: int = 500) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _delete_events(db, user_ids: list[str]) -> tuple[int, int]:
    """Delete the events of ``user_ids`` (stored forms) and their own cached query vectors."""
    if not user_ids:
        return 0, 0
    conn = db.conn
    n_vectors = n_events = 0
    for chunk in _chunks(_query_hashes_only_of(db, user_ids)):
        n_vectors += conn.execute(
            f"DELETE FROM embeddings WHERE text_hash IN ({','.join('?' * len(chunk))})", chunk).rowcount
    for chunk in _chunks(user_ids):
        n_events += conn.execute(f"DELETE FROM events WHERE user_id IN ({','.join('?' * len(chunk))})",
                                 chunk).rowcount
    return n_events, n_vectors


def _listed_event_users(db, matcher: ForgetMatcher) -> list[str]:
    """Stored user ids in ``events`` that are on the list (one digest per distinct user)."""
    rows = db.execute("SELECT DISTINCT user_id FROM events WHERE user_id IS NOT NULL")
    return [u for (u,) in rows if matcher.stored(u)]


def _delete_rejected(db, matcher: ForgetMatcher) -> int:
    """Delete rejected lines holding a listed id as a cell (any delimiter, swallowed lines, ``99887.0``);
    withhold import messages naming one."""
    ids = [row_id for row_id, raw in db.execute("SELECT id, raw FROM rejected_rows") if raw and matcher.in_text(raw)]
    for chunk in _chunks(ids):
        db.execute(f"DELETE FROM rejected_rows WHERE id IN ({','.join('?' * len(chunk))})", chunk)
    n = len(ids)
    named = [i for i, msg in db.execute("SELECT id, message FROM imports WHERE message IS NOT NULL")
             if matcher.in_text(msg)]
    for import_id in named:
        db.execute("UPDATE imports SET message = ? WHERE id = ?", [_MESSAGE_WITHHELD, import_id])
    return n


@contextmanager
def _write_lock(db) -> Iterator[None]:
    """One write transaction, begun at once: no save or scrub of another process runs meanwhile."""
    with db.conn:
        db.execute("BEGIN IMMEDIATE")
        yield


@contextmanager
def _secure_delete(db) -> Iterator[None]:
    """Deleted rows are overwritten with zeros (not left in free space) while the block runs."""
    before = db.execute("PRAGMA secure_delete").fetchone()[0]
    db.execute("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        db.execute("PRAGMA secure_delete = 1" if before else "PRAGMA secure_delete = 0")


def _holds_listed(folder: Path, matcher: ForgetMatcher) -> bool:
    ids = read_user_ids(folder)
    return ids is not None and bool(listed_positions(ids, matcher))


def _leftovers_holding(db, matcher: ForgetMatcher, scrubs: bool = True) -> list[Path]:
    """Model folders no version owns that hold a listed user, or whose ids cannot be read (a killed write
    may have left half an ``ids.json``), and every leftover ``.scrub-*`` copy.  Call it under the write lock."""
    root = models_dir(db)
    owned = {r[0] for r in db.execute("SELECT path FROM models")}
    out = []
    for folder in sorted(root.iterdir()):
        if folder.is_symlink() or not folder.is_dir() or folder.name in owned:
            continue  # a symbolic link may lead anywhere: never followed, never removed
        if scrubs and SCRUB_MARK in folder.name:  # a forget's copy: scrubs run under the write lock, so it died
            out.append(folder)
            continue
        ours = any(m in folder.name for m in _LEFTOVER_MARKS) or any((folder / f).exists() for f in _MODEL_FILES)
        if ours and (read_user_ids(folder) is None or _holds_listed(folder, matcher)):
            out.append(folder)
    return out


def _registered_holding(db, matcher: ForgetMatcher) -> int:
    if workspace_path(db) is None:
        return 0
    n = 0
    for version in list_versions(db):
        try:
            if _holds_listed(version_folder(db, version), matcher):
                n += 1
        except RegistryError:
            continue
    return n


def _scrub_versions(db, matcher: ForgetMatcher, cancel: Optional[CancelToken]) -> tuple[int, list[str]]:
    """Scrub every registered version holding a listed user, each under the write lock."""
    if workspace_path(db) is None or db.execute("SELECT 1 FROM models LIMIT 1").fetchone() is None:
        return 0, []
    done, unreadable = 0, []
    for version in list_versions(db):
        if cancel is not None:
            cancel.check()
        try:
            folder = version_folder(db, version)
        except RegistryError:
            continue  # its path leads out of the models folder: nothing there is ours to write
        with _write_lock(db):
            try:
                done += bool(scrub_folder(folder, matcher))
            except ModelLoadError:
                unreadable.append(version.model_id)
    return done, unreadable


def _remove_leftovers(db, matcher: ForgetMatcher) -> int:
    """Remove leftover model folders holding a listed user (under the write lock: no save is running)."""
    if workspace_path(db) is None:
        return 0
    with _write_lock(db):
        folders = _leftovers_holding(db, matcher)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    return len(folders)


def _file_holds(path: Optional[Path], needles: list[bytes]) -> bool:
    if path is None or not needles or not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return any(data.find(n) >= 0 for n in needles)


def _clear_storage(db, forms: Optional[set[str]]) -> bool:
    """Move the write-ahead log into the file and empty it; rebuild the file when old copies of an id remain.

    Deleted rows are zeroed (``secure_delete``), but a B-tree page that was
    rebuilt earlier can still hold stale bytes of a row moved elsewhere.  When
    the file still holds one of ``forms`` (or the forms are unknown: a resumed
    forget), ``VACUUM`` writes a fresh file; a match left after that is another
    record's live text.  Returns False when another program's open read kept
    the log from being emptied (the step stays to do).
    """
    path = workspace_path(db)
    if path is None:
        return True
    needles = sorted({f.encode("utf-8") for f in forms}) if forms is not None else None
    if db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] != 0:
        return False
    if needles is None or _file_holds(path, needles):
        db.execute("VACUUM")
        if db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] != 0:
            return False
    return True


def _refresh_model(db, progress, cancel, retrainer) -> Optional[str]:
    """Update the active model without the removed events; the new model id or None."""
    retrainer = retrainer or update_with_new_events
    if db.execute("SELECT 1 FROM models WHERE active = 1 LIMIT 1").fetchone() is None:
        return None
    result = retrainer(db, progress=progress, cancel=cancel)
    return getattr(result, "model_id", None) or (result if isinstance(result, str) else None)


def forget_user(
    db,
    user_id: str,
    *,
    retrain: bool = True,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    retrainer: Optional[Callable[..., Any]] = None,
) -> ForgetResult:
    """Remove everything the workspace holds about one user, log it, then refresh the model.

    Running it again for a user whose earlier forget was stopped finishes the
    steps left undone.  A user with no events is still forgotten when a
    rejected line or a saved model holds them.

    Parameters
    ----------
    db
        Open workspace owned by the calling thread.
    user_id
        The original id (``99887`` also matches the spreadsheet form
        ``99887.0``; pseudonymised by the workspace key when needed) or the
        stored id / pseudonym.
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
        Nothing in the workspace belongs to the user (and no forget of them
        is left unfinished); nothing is written.
    """
    require_writable(db)  # "the workspace PATH is read-only (why)": before any id form is looked up
    forms = id_forms(db, user_id)
    if not forms:
        raise PrivacyError("give the id of the user to forget (it is empty)")
    stored = stored_form(db, user_id)
    with _secure_delete(db):
        with _write_lock(db):  # the list entry and the deletions: one transaction
            entry = find_entry(db, forms)
            was_finished = entry is not None and not entry.missing
            resumed = [] if entry is None or was_finished else entry.missing
            if entry is None:
                entry = add_entry(db, forms)
            else:
                add_forms(db, entry, forms)  # e.g. its pseudonym, once the workspace has a key
            matcher = forget_matcher(db)
            n_events, n_vectors = _delete_events(db, sorted(forms))
            if n_events:
                build_log_words(db)  # the spelling corrector's search-log counts, without the user's searches
            n_rejected = _delete_rejected(db, matcher)
            own = ForgetMatcher.for_ids(forms)
            held = _registered_holding(db, own) + len(_leftovers_holding_safe(db, own)) + \
                len(exports_holding(db, own))
            if (was_finished or not resumed) and not (n_events or n_rejected or held):
                if was_finished:
                    raise PrivacyError(f"user {user_id!r} has no events in this workspace and was already "
                                       f"forgotten ({entry.requested}): nothing to forget")
                raise PrivacyError(f"user {user_id!r} has no events in this workspace (nothing to forget)")
            mark_step(db, entry, "events", events=n_events, cached_vectors=n_vectors)
            mark_step(db, entry, "rejected", rejected_rows=n_rejected)
        return _finish(db, entry, stored, forms, retrain, progress, cancel, retrainer,
                       n_events, n_rejected, n_vectors, resumed)


def _leftovers_holding_safe(db, matcher: ForgetMatcher) -> list[Path]:
    return _leftovers_holding(db, matcher, scrubs=False) if workspace_path(db) is not None else []


def _finish(db, entry: ForgetEntry, stored: str, forms: Optional[set[str]], retrain, progress, cancel, retrainer,
            n_events: int, n_rejected: int, n_vectors: int, resumed: list[str]) -> ForgetResult:
    """The file steps of a forget (models, leftover folders, storage, refresh), each marked when done."""
    matcher = forget_matcher(db)
    scrubbed, unreadable = _scrub_versions(db, matcher, cancel)
    if not unreadable:
        with db.conn:
            mark_step(db, entry, "models", versions=scrubbed)
    removed = _remove_leftovers(db, matcher)
    with db.conn:
        mark_step(db, entry, "folders", removed=removed)
    exported = scrub_exports(db, matcher)
    if not exported.untouched:
        with db.conn:
            mark_step(db, entry, "exports", cleaned=len(exported.cleaned), deleted=len(exported.deleted))
    if _clear_storage(db, forms):
        with db.conn:
            mark_step(db, entry, "storage")
    model_id, refresh_note = None, "; no trained model to refresh"
    if retrain:
        try:
            model_id = _refresh_model(db, progress, cancel, retrainer)
            with db.conn:
                mark_step(db, entry, "refresh", model_id=model_id)
        except Exception as exc:  # noqa: BLE001 - the data is already gone; say what is left to do
            refresh_note = f"; the model refresh failed ({exc}): run `merch-app update` later"
    else:
        with db.conn:
            mark_step(db, entry, "refresh", skipped=True)
        refresh_note = ""
    message = (f"forgot user {stored}: {n_events:,} events, {n_rejected:,} rejected lines, "
               f"{n_vectors:,} cached query vectors removed, {scrubbed} saved model version(s) scrubbed")
    if removed:
        message += f", {removed} leftover model folder(s) removed"
    if exported.sentence():
        message += f"; {exported.sentence()}"
    if resumed:
        message += f" (finished an earlier forget that had stopped before: {', '.join(resumed)})"
    message += f"; model refreshed as {model_id}" if model_id else refresh_note
    if unreadable:
        message += (f"; model version(s) {', '.join(unreadable)} cannot be read and still hold the user: "
                    "repair or delete them (merch-app models delete), then run forget again")
    if "storage" in entry.missing:
        message += ("; another program is reading the workspace, so its write-ahead log still holds deleted "
                    "data: close it and run forget again")
    return ForgetResult(stored, n_events, n_rejected, n_vectors, model_id, message, scrubbed, removed,
                        resumed, entry.missing)


def resume_forgets(db, *, retrain: bool = True, progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelToken] = None) -> list[ForgetResult]:
    """Finish every forget that was stopped (the ids are not needed: entries are matched by digest)."""
    require_writable(db)
    results = []
    for entry in unfinished_entries(db):
        resumed = entry.missing
        with _secure_delete(db):
            with _write_lock(db):
                matcher = forget_matcher(db)
                n_events, n_vectors = _delete_events(db, _listed_event_users(db, matcher))
                n_rejected = _delete_rejected(db, matcher)
                mark_step(db, entry, "events", events=n_events, cached_vectors=n_vectors)
                mark_step(db, entry, "rejected", rejected_rows=n_rejected)
            results.append(_finish(db, entry, f"#{entry.entry_id}", None, retrain, progress, cancel, None,
                                   n_events, n_rejected, n_vectors, resumed))
    return results


def scrub_user_from_models(db, user_id: str) -> int:
    """Remove ``user_id`` (as stored) from every saved model version that holds it; returns how many.

    The models step of a forget for one id (:func:`merch_app.model.scrub.scrub_folder`): a version that
    cannot be read is skipped (its own error shows on load), and so is one whose registered folder is
    not inside the workspace's model folder (nothing outside it is written).
    """
    return _scrub_versions(db, ForgetMatcher.for_ids([user_id]), None)[0]

"""The open workspace as seen by the GUI: path, a GUI-thread connection, change signals.

The GUI-thread connection is for quick reads only (model list, user profile,
settings); anything that may take more than a few milliseconds runs in a
:class:`~merch_app.ui.workers.JobRunner` with the worker's own connection.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import QObject, QTimer, Signal

from merch_app.data.workspace import WorkspaceError, change_marks, data_version, open_workspace
from merch_app.model.registry import active_version, version_folder

log = logging.getLogger(__name__)

MODEL_FILES = ("config.json", "ids.json", "arrays.safetensors")  # checked cheaply at start-up
POLL_MS = 2000  # how often the window looks for commits of other connections (one PRAGMA when nothing changed)
EXTERNAL = {"models": "a model version was trained, activated, renamed or deleted",
            "data": "data was imported or removed", "rules": "merchandising rules were changed",
            "suites": "judged suites were changed or run"}
OWN_PARTS = ("rules", "suites")  # parts no screen announces: a job of this window that ended changed them


class WorkspaceContext(QObject):
    """Holds the current workspace and tells screens when it changes.

    Signals
    -------
    workspace_changed(Path)
        Another workspace was opened; screens reload everything.
    data_changed()
        Items/events changed (an import finished).
    models_changed()
        A model version was trained, renamed, activated or deleted.
    rules_changed(), suites_changed()
        Another window or program changed the rules, or the suites (judgments, kept runs).
    external_change(str)
        Another window or program changed the workspace (found by :meth:`poll_changes`, which
        then also emits ``data_changed`` / ``models_changed``); the text says what, as a sentence.

    Another connection's commits are noticed through SQLite's ``PRAGMA data_version``, polled
    every :data:`POLL_MS`; :func:`~merch_app.data.workspace.change_marks` then tells which part
    changed.  This window's own jobs write through their own connections too, so the poll waits
    while ``busy()`` is true and for one tick after a job ended (the screen that ran it emits the
    signal), and each signal re-reads its own mark, so a change is announced once.
    """

    workspace_changed = Signal(object)
    data_changed = Signal()
    models_changed = Signal()
    rules_changed = Signal()
    suites_changed = Signal()
    external_change = Signal(str)

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.path: Optional[Path] = None
        self.db = None
        self.busy = lambda: False  # the window's "a job of mine runs" (its writes are not another program's)
        self._version: Optional[int] = None
        self._marks: dict[str, tuple] = {}
        self._settle = False
        # connected first, so the marks are current before any screen reacts
        self.models_changed.connect(lambda: self._remember("models"))
        self.data_changed.connect(lambda: self._remember("data"))
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self.poll_changes)

    @property
    def name(self) -> str:
        if self.path is None:
            return "(no workspace)"
        name = self.path.name
        for suffix in (".merch.sqlite", ".sqlite", ".db"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return name

    def open(self, path: Path | str) -> None:
        """Open ``path`` (created if missing) and announce it.

        Raises
        ------
        WorkspaceError
            The file is not a usable workspace; the previous one stays open.
        """
        path = Path(path).expanduser().resolve()
        db = open_workspace(path)
        if self.db is not None:
            self.db.close()
        self.path, self.db = path, db
        self._version, self._marks = data_version(db), change_marks(db)
        self._poll.start()
        self.workspace_changed.emit(path)

    def close(self) -> None:
        self._poll.stop()
        if self.db is not None:
            self.db.close()
        self.db = None

    # ------------------------------------------------------- other connections
    def job_ended(self, *_args) -> None:
        """A job of this window ended: the next poll waits (its screen announces what the job changed).

        Rule and suite edits are not announced by their screens, so their marks are taken now: the
        job's own commits are not another program's.
        """
        self._settle = True
        for part in OWN_PARTS:
            self._remember(part)

    def _remember(self, part: str) -> None:
        if self.db is not None:
            try:
                self._marks[part] = change_marks(self.db)[part]
            except Exception as exc:  # noqa: BLE001 - a locked or damaged file must not break a signal
                log.warning("cannot read the workspace's change marks: %s", exc)

    def poll_changes(self) -> list[str]:
        """Look for commits of other connections; emit the signals of the parts they changed.

        Returns
        -------
        list of str
            The parts changed (``models``, ``data``), empty when nothing (or this window's job) did.
        """
        if self.db is None or self.busy():
            return []
        if self._settle:
            self._settle = False
            return []
        try:
            version = data_version(self.db)
            if version == self._version:
                return []
            self._version = version
            marks = change_marks(self.db)
        except Exception as exc:  # noqa: BLE001 - e.g. locked for a moment by another writer: try next tick
            log.warning("cannot poll the workspace for changes: %s", exc)
            return []
        changed = [part for part in EXTERNAL if marks[part] != self._marks.get(part)]
        self._marks.update(marks)
        if not changed:
            return []
        self.external_change.emit("Another window or program changed this workspace: "
                                  + " and ".join(EXTERNAL[p] for p in changed) + ". The screens show it now.")
        if "data" in changed:
            self.data_changed.emit()
        if "models" in changed:
            self.models_changed.emit()
        if "rules" in changed:
            self.rules_changed.emit()
        if "suites" in changed:
            self.suites_changed.emit()
        return changed

    def active_model(self) -> tuple[Optional[Any], Optional[str]]:
        """(active ModelVersion or None, warning text or None); never raises."""
        if self.db is None:
            return None, None
        try:
            version = active_version(self.db)
            if version is None:
                return None, None
            folder = version_folder(self.db, version)
        except Exception as exc:  # noqa: BLE001 - a broken registry must not stop start-up
            log.warning("cannot read the active model: %s", exc)
            return None, f"The model registry cannot be read ({exc}). Train a new model on the Train screen."
        missing = [f for f in MODEL_FILES if not (folder / f).is_file()]
        if missing:
            return version, (f"The active model “{version.name}” is damaged (missing {', '.join(missing)} in "
                             f"{folder}); ranking falls back to text only. Train or activate another version.")
        return version, None


__all__ = ["WorkspaceContext", "WorkspaceError"]

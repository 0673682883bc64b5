"""The open workspace as seen by the GUI: path, a GUI-thread connection, change signals.

The GUI-thread connection is for quick reads only (model list, user profile,
settings); anything that may take more than a few milliseconds runs in a
:class:`~merch_app.ui.workers.JobRunner` with the worker's own connection.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import QObject, Signal

from merch_app.data.workspace import WorkspaceError, open_workspace
from merch_app.model.registry import active_version, version_folder

log = logging.getLogger(__name__)

MODEL_FILES = ("config.json", "ids.json", "arrays.safetensors")  # checked cheaply at start-up


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
    """

    workspace_changed = Signal(object)
    data_changed = Signal()
    models_changed = Signal()

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.path: Optional[Path] = None
        self.db = None

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
        self.workspace_changed.emit(path)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
        self.db = None

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

"""Deleting a version folder together with its registry rows, all or nothing."""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Callable


def delete_folder_and_rows(folder: Path, delete_rows: Callable[[], None]) -> None:
    """Remove ``folder`` and run ``delete_rows`` (one transaction) so that neither survives alone.

    The folder is first renamed aside; when ``delete_rows`` fails it is put
    back and the error propagates, so a failed delete leaves the version
    usable.  Only after the rows are gone is the renamed folder removed.
    """
    trash = folder.with_name(f"{folder.name}.deleted-{uuid.uuid4().hex[:8]}")
    if folder.exists():
        os.replace(folder, trash)
    try:
        delete_rows()
    except BaseException:
        if trash.exists():
            os.replace(trash, folder)
        raise
    shutil.rmtree(trash, ignore_errors=True)

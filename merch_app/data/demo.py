"""The demo workspace: bundled demo files imported on first run (GUI and CLI)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from merch_app.data.importer import ImportResult, import_file
from merch_app.data.workspace import open_workspace
from merch_app.jobs import CancelToken, Progress, ProgressCallback
from merch_app.paths import demo_files, demo_workspace


def ensure_demo_workspace(
    path: Union[str, Path, None] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> Path:
    """Create the demo workspace at ``path`` and import the demo files into it.

    Files already imported (same sha256) are skipped, so calling it again is
    cheap.  Progress covers all files (bytes of every file together).
    Later steps (training a first model) are added by their own modules on
    top of this function.

    Returns
    -------
    Path
        The workspace file.
    """
    path = Path(path) if path is not None else demo_workspace()
    import_demo_files(path, progress=progress, cancel=cancel)
    return path


def import_demo_files(
    path: Union[str, Path],
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> list[ImportResult]:
    """Import every file of :func:`merch_app.paths.demo_files` into ``path`` (skip duplicates)."""
    files = demo_files()
    sizes = [f.stat().st_size for f in files]
    total = float(sum(sizes)) or 1.0
    results = []
    db = open_workspace(path)
    try:
        offset = 0.0
        for f, size in zip(files, sizes):
            def scaled(p: Progress, _offset: float = offset, _name: str = f.name) -> None:
                if progress is not None:
                    progress(Progress(done=_offset + p.done, total=total, message=f"{_name}: {p.message}",
                                      eta_seconds=p.eta_seconds, data=dict(p.data, file=_name)))

            results.append(import_file(db, f, on_duplicate="skip", progress=scaled, cancel=cancel))
            offset += size
    finally:
        db.close()
    return results

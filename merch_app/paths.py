"""Where things live on disk: default workspace, bundled resources, encoder."""
from __future__ import annotations

import os
import sys
from importlib import resources
from importlib.util import find_spec
from pathlib import Path

APP_NAME = "merch_app"


def user_data_dir() -> Path:
    """Per-user data folder following platform conventions.

    Mirrors Qt's ``QStandardPaths.AppDataLocation`` without importing Qt:
    ``$XDG_DATA_HOME/merch_app`` on Linux, ``~/Library/Application Support``
    on macOS and ``%APPDATA%`` on Windows.  ``MERCH_APP_HOME`` overrides it.
    """
    override = os.environ.get("MERCH_APP_HOME")
    if override:
        return Path(override)
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / APP_NAME


def default_workspace() -> Path:
    """The workspace used when no ``--workspace`` is given."""
    return user_data_dir() / "default.merch.sqlite"


def demo_workspace() -> Path:
    """The workspace the demo data is imported into on first run."""
    return user_data_dir() / "demo.merch.sqlite"


def resource_path(*parts: str) -> Path:
    """Path of a bundled resource file (package data ``merch_app.resources``)."""
    if find_spec("merch_app.resources") is not None:  # installed: the package-dir mapping of pyproject.toml
        root = Path(str(resources.files("merch_app.resources")))
    else:  # a source checkout on sys.path (e.g. `python -m pytest` in the repo) bypasses that mapping
        root = Path(__file__).resolve().parent.parent / "resources"
    return root.joinpath(*parts)


def demo_files() -> list[Path]:
    """Demo CSV files shipped in ``resources/demo`` in import order."""
    folder = resource_path("demo")
    return sorted(p for p in folder.iterdir() if (p.suffix in {".csv", ".gz"} or p.name.endswith(".csv.gz"))
                  and not p.name.endswith("_suite.csv"))  # judged query suites are not shop data

"""Removing forgotten users from hybrid models: in memory before a save, and in saved folders.

A scrubbed user keeps their row (every array keeps its shape) but the row is
zero, their purchase history leaves the history state and their id becomes a
tombstone (``forgotten-<random>``).  Who is forgotten comes from the forget
list (:mod:`merch_app.data.forget_list`), matched by keyed digest.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import numpy as np

from merch_app.data.forget_list import ForgetMatcher
from merch_app.jobs import pause_point
from merch_app.model.hybrid import HybridModel

_USER_ROWS = ("P", "T_u", "b_user", "base_user", "base_taste")
SCRUB_MARK = ".scrub-"  # folder name part of a scrub in progress (``<model_id>.scrub-<hex>``)


def scrub_positions(model, positions: list[int], derive: bool = True) -> int:
    """Remove the users at ``positions`` from a loaded model in place; returns how many.

    ``derive``: recompute the model's derived vectors afterwards (False before
    a save, which needs the arrays only).
    """
    positions = sorted({int(u) for u in positions if 0 <= int(u) < len(model.user_ids)})
    if not positions:
        return 0
    for name in _USER_ROWS:
        arr = model.arrays.get(name)
        if arr is not None and len(arr) > positions[-1]:
            arr = np.array(arr, copy=True)
            arr[positions] = 0
            model.arrays[name] = arr
    ids = np.array(model.user_ids, dtype=object, copy=True)
    for u in positions:
        model.state = model.state.without_user(u)
        ids[u] = f"forgotten-{secrets.token_hex(6)}"
    model.user_ids = ids
    if derive:
        model._derive(ids=True)  # same number of users, new ids
    else:
        model.user_pos = None  # rebuilt from the new ids at the next use
    return len(positions)


def scrub_user(model, user_id: str) -> bool:
    """Remove one user (by stored id) from a loaded model in place; False if the model does not know them."""
    u = model.user_pos.get(str(user_id))
    return u is not None and scrub_positions(model, [u]) == 1


def listed_positions(user_ids, matcher: ForgetMatcher) -> list[int]:
    """Rows of ``user_ids`` whose id is on the forget list."""
    return [n for n, u in enumerate(user_ids) if matcher.stored(u)]


def scrub_listed(model, matcher: ForgetMatcher, derive: bool = True) -> int:
    """Remove every listed user from a loaded model in place; returns how many."""
    return scrub_positions(model, listed_positions(model.user_ids, matcher), derive=derive)


def read_user_ids(folder: Path):
    """The user ids of a saved version (``ids.json``), or None when the file cannot be read."""
    try:
        ids = json.loads((Path(folder) / "ids.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(ids, dict) or not isinstance(ids.get("user_ids"), list):
        return None
    return ids["user_ids"]


def scrub_folder(folder: Path, matcher: ForgetMatcher) -> int:
    """Remove every listed user from the model saved in ``folder``; returns how many (0: nothing to do).

    The version is rewritten into ``<folder>.scrub-<hex>`` and its
    ``arrays.safetensors`` and ``ids.json`` moved over the old ones one by one
    (each move is atomic, each file carries its own checksum, and both states
    load), so a crash never leaves a broken version; the caller holds the
    workspace's write lock, so no other writer touches model folders meanwhile.

    Raises
    ------
    merch_app.model.hybrid_files.ModelLoadError
        The folder lists a forgotten user but cannot be loaded.
    """
    folder = Path(folder)
    user_ids = read_user_ids(folder)
    if user_ids is None or not listed_positions(user_ids, matcher):
        return 0
    model = HybridModel.load(folder)
    n = scrub_listed(model, matcher, derive=False)
    if not n:
        return 0
    tmp = folder.with_name(f"{folder.name}{SCRUB_MARK}{secrets.token_hex(4)}")
    try:
        model.save(tmp)
        pause_point("forget.scrub")
        for name in ("arrays.safetensors", "ids.json"):
            os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return n


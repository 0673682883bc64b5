"""Settings that change what the search index holds, applied with the index rebuilt.

Two of them: how the catalogue text is tokenised, and whether item ids that
differ only by case are merged (:mod:`merch_app.data.id_case`).

The search index reads segmented text (:mod:`merch_app.data.text_tokens`);
the workspace setting ``search_tokens`` chooses ``auto`` (Han text segmented
into words and characters, plus pinyin) or ``plain`` (FTS5's ``unicode61``
alone).  Changing it rebuilds the index and the common-term top lists in one
transaction, so a failure or a cancel leaves the previous index in place.
"""
from __future__ import annotations

import json
from typing import Callable, Optional

from merch_app.data import id_case, text_tokens
from merch_app.data.id_case import CaseMerge
from merch_app.data.term_tops import build_search_tops
from merch_app.data.workspace import WorkspaceError, get_setting, rebuild_fts


def set_search_tokens(db, mode: str, cancel: Optional[Callable[[], None]] = None) -> dict:
    """Set the tokenizer mode of ``db`` and rebuild its search index.

    Parameters
    ----------
    db
        The open workspace (writable).
    mode
        One of :data:`merch_app.data.text_tokens.MODES`.
    cancel
        Called between batches; raises to stop (nothing is changed then).

    Returns
    -------
    dict
        ``{"mode", "previous", "segmented_items"}``.

    Raises
    ------
    WorkspaceError
        Unknown mode.
    """
    if mode not in text_tokens.MODES:
        raise WorkspaceError(f"search_tokens must be one of {', '.join(text_tokens.MODES)}, not {mode!r}")
    previous = get_setting(db, text_tokens.SETTING, text_tokens.DEFAULT_MODE)
    with db.conn:
        db.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)",
                   [text_tokens.SETTING, json.dumps(mode)])
        segmented = rebuild_fts(db, cancel)
        build_search_tops(db, cancel=cancel)
    return {"mode": mode, "previous": previous, "segmented_items": segmented}


def set_merge_id_case(db, on: bool) -> list[CaseMerge]:
    """Turn merging of case-clash item ids on or off; turning it on merges the current ones now.

    Merging, the search index and the top lists are one transaction (all or nothing).

    Returns
    -------
    list of CaseMerge
        The groups merged now (empty when turned off or nothing clashed).
    """
    with db.conn:
        db.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", [id_case.SETTING, json.dumps(bool(on))])
        merges = id_case.merge_case_clashes(db) if on else []
        if merges:
            rebuild_fts(db)
            build_search_tops(db)
    return merges

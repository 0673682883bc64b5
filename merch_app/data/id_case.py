"""Item ids that differ only by case: one product typed two ways (85123A / 85123a).

The workspace keeps ids exact, so such codes are two products unless the
workspace setting :data:`SETTING` is on; then every import ends by merging
each group into one id, inside the import's transaction, and says so in the
import summary.  The catalogue doctor lists the groups either way
(:func:`case_groups`, the catalogue doctor's ``id_case_clashes`` finding).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from merch_app.data.workspace import get_setting

SETTING = "merge_id_case"
MERGE_HINT = f"merge them with: merch-app settings set {SETTING} on (every later import merges too)"


@dataclass(frozen=True)
class CaseMerge:
    """One merged group: the id kept and the spellings folded into it."""

    kept: str
    merged: tuple[str, ...]

    def __str__(self) -> str:
        return f"{', '.join(self.merged)} → {self.kept}"


def case_key(item_id: str) -> str:
    """The form under which ids compare when case is ignored."""
    return str(item_id).strip().casefold()


def case_groups(db) -> list[list[str]]:
    """Groups of item ids that differ only by case or surrounding spaces, each sorted, groups by first id."""
    groups: dict[str, list[str]] = defaultdict(list)
    for (item_id,) in db.execute("SELECT item_id FROM items ORDER BY item_id"):
        groups[case_key(item_id)].append(str(item_id))
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def merging_enabled(db) -> bool:
    return bool(get_setting(db, SETTING, False))


def merge_case_clashes(db) -> list[CaseMerge]:
    """Fold every case-clash group into one id (call inside the caller's transaction).

    The id kept is the spelling with the most events (ties: the upper-case
    one, then the first in sort order).  Its events take the id; its empty
    catalogue fields are filled from the others; the other item rows go.

    Returns
    -------
    list of CaseMerge
        What was merged, in group order.
    """
    merges: list[CaseMerge] = []
    for group in case_groups(db):
        marks = ",".join("?" * len(group))
        counts = dict(db.execute(f"SELECT item_id, count(*) FROM events WHERE item_id IN ({marks}) "
                                 f"GROUP BY item_id", group).fetchall())
        kept = min(group, key=lambda i: (-counts.get(i, 0), i != i.upper(), i))
        others = [i for i in group if i != kept]
        rows = {r[0]: r[1:] for r in db.execute(
            f"SELECT item_id, title, description, tags, category, price, attrs FROM items WHERE item_id IN ({marks})",
            group)}
        merged = list(rows[kept])
        for other in sorted(others):
            merged = [v if v not in (None, "") else o for v, o in zip(merged, rows[other])]
        db.execute("UPDATE items SET title = ?, description = ?, tags = ?, category = ?, price = ?, attrs = ? "
                   "WHERE item_id = ?", [*merged, kept])
        marks = ",".join("?" * len(others))
        db.execute(f"UPDATE events SET item_id = ? WHERE item_id IN ({marks})", [kept, *others])
        db.execute(f"DELETE FROM items WHERE item_id IN ({marks})", others)
        merges.append(CaseMerge(kept, tuple(others)))
    return merges


def merge_note(merges: list[CaseMerge], shown: int = 3) -> str:
    """The import summary's sentence about merged ids ("" when nothing was merged)."""
    if not merges:
        return ""
    n = sum(len(m.merged) for m in merges)
    examples = "; ".join(str(m) for m in merges[:shown]) + ("; …" if len(merges) > shown else "")
    return (f" Merged {n:,} item id(s) that differ only by case into {len(merges):,} "
            f"(setting {SETTING}): {examples}.")

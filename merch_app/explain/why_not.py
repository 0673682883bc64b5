""""Why not X?": where an item ended up and what it lacks against the last shown result."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from merch_app.errors import MerchAppError
from merch_app.explain.score_split import largest_loss
from merch_app.ranking.types import RankRequest


class ItemNotFound(MerchAppError, LookupError):
    """An item reference matched neither an item id nor a title."""


@dataclass
class WhyNot:
    """Rank of an item and its comparison with the last shown result (rank k).

    Attributes
    ----------
    status
        ``shown``, ``below cut-off``, ``filtered``, ``hidden``, ``not a candidate``.
    resolved_by
        ``id`` or ``title search`` (how ``item_ref`` was matched).
    deltas
        Per component: this item's weighted value minus the last shown one's.
    loses_most_on
        The component with the most negative delta (None if it loses on none).
    gap
        Score of the last shown result minus this item's score.
    """

    item_ref: str
    item_id: str
    title: str
    resolved_by: str
    rank: Optional[int]
    status: str
    reason: Optional[str]
    score: Optional[float]
    components: dict[str, float]
    last_shown: Optional[dict[str, Any]]
    deltas: dict[str, float] = field(default_factory=dict)
    loses_most_on: Optional[str] = None
    gap: Optional[float] = None
    would_rank: Optional[int] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One sentence for humans."""
        head = f"{self.item_id} ({self.title})"
        if self.status == "shown":
            return f"{head} is shown at rank {self.rank}."
        text = f"{head}: {self.reason}."
        if self.loses_most_on and self.last_shown:
            text += (f" Against #{self.last_shown['rank']} {self.last_shown['item_id']} it trails by "
                     f"{self.gap:.4f}, most on {self.loses_most_on} "
                     f"({self.deltas[self.loses_most_on]:+.4f}).")
        return text


def resolve_item(ranker, item_ref: str) -> tuple[str, str]:
    """Item id for ``item_ref``: an id (exact, then case-insensitive) or a title search.

    Raises
    ------
    ItemNotFound
        Nothing matched.
    """
    ref = (item_ref or "").strip()
    pos = ranker.bundle.item_pos
    if ref in pos:
        return ref, "id"
    for candidate in (ref.upper(), ref.lower()):
        if candidate in pos:
            return candidate, "id"
    folded = ref.casefold()
    for p, title in enumerate(ranker.catalog.titles):
        if title.casefold() == folded and folded:
            return ranker.catalog.item_ids[p], "title"
    rowids, _, _ = ranker.lexical.search(ranker.lexical.analyse(ref, prefix=False, correct=False).terms, 5)
    for p in ranker.catalog.positions_of_rowids(rowids):
        if p >= 0:
            return ranker.catalog.item_ids[int(p)], "title search"
    raise ItemNotFound(f"no item with id or title matching {item_ref!r}")


def why_not(ranker, request: RankRequest, item_ref: str) -> WhyNot:
    """Explain where ``item_ref`` ranks for ``request`` and why it is not higher.

    Parameters
    ----------
    ranker
        :class:`merch_app.ranking.ranker.Ranker`.
    request
        The request whose top ``k`` the item is compared with.
    item_ref
        Item id or (part of) a title.
    """
    item_id, how = resolve_item(ranker, item_ref)
    rank, info = ranker.position_of(request, item_id)
    sc = ranker.score_candidates(request)
    last = None
    shown = sc.order[: max(int(request.k), 0)]
    if len(shown):
        c = int(shown[-1])
        p = int(sc.positions[c])
        last = {"rank": len(shown), "item_id": ranker.catalog.item_ids[p],
                "title": ranker.catalog.titles[p], "score": float(sc.scores[c]),
                "components": {k: float(v[c]) for k, v in sc.comps.items()}}
    result = WhyNot(item_ref=item_ref, item_id=item_id, title=info["title"], resolved_by=how, rank=rank,
                    status=info["status"], reason=info["reason"], score=info["score"],
                    components=info["components"], last_shown=last, would_rank=info["would_rank"])
    if last is not None and info["components"]:
        result.loses_most_on, result.deltas = largest_loss(info["components"], last["components"])
        result.gap = last["score"] - info["score"]
        if info["status"] == "shown":
            result.loses_most_on = None
    return result

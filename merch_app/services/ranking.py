"""Open the ranker of a workspace: the one path from a workspace to ranked results.

The Query screen, the insight screens, suite runs, ``merch-app query`` /
``explain`` and the Evaluate screen all rank through :func:`open_ranker`: the
bundle from :func:`merch_app.model.bundle.load_bundle` (through the process's
:data:`merch_app.services.bundles.SHARED` cache when asked) and the workspace's
enabled rules (:meth:`merch_app.ranking.ranker.Ranker.for_workspace`).
"""
from __future__ import annotations

from typing import Optional, Union

from merch_app.data.workspace import require_items
from merch_app.model.bundle import Encoder, ModelBundle, load_bundle
from merch_app.ranking.ranker import Ranker
from merch_app.services.bundles import BundleCache


def ranking_bundle(db, model_id: Optional[str] = None, encoder: Union[None, str, Encoder] = None, *,
                   fallback: bool = False, cache: Optional[BundleCache] = None, progress=None,
                   cancel=None) -> ModelBundle:
    """The bundle that ranks in this workspace (see :func:`merch_app.model.bundle.load_bundle`).

    Parameters
    ----------
    cache
        A :class:`BundleCache` to take it from (the GUI passes the shared one);
        None loads it afresh (one-shot commands).

    Raises
    ------
    NoItemsError
        The workspace has no items.
    """
    require_items(db)
    if cache is not None:
        return cache.get(db, model_id, encoder, fallback=fallback, progress=progress, cancel=cancel)
    return load_bundle(db, model_id, encoder, fallback=fallback, progress=progress, cancel=cancel)


def open_ranker(db, model_id: Optional[str] = None, encoder: Union[None, str, Encoder] = None, *,
                rules="workspace", fallback: bool = False, cache: Optional[BundleCache] = None,
                progress=None, cancel=None) -> Ranker:
    """A :class:`Ranker` over :func:`ranking_bundle` with the workspace's rules.

    Parameters
    ----------
    rules
        ``"workspace"`` (the enabled rules), None (no rules) or a list of rules.
    Other parameters
        As for :func:`ranking_bundle`.
    """
    bundle = ranking_bundle(db, model_id, encoder, fallback=fallback, cache=cache, progress=progress, cancel=cancel)
    return Ranker.for_workspace(db, bundle, rules=rules)

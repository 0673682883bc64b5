"""The process-wide cache of ranking bundles (one per workspace state, shared by every screen).

A bundle at a million items holds ~1.5 GB of vectors and a vector index, so
the GUI keeps one copy for all screens and worker threads instead of one per
screen.  Entries are keyed by :func:`merch_app.model.bundle.bundle_key`: a new
active model, another encoder, changed settings, new items or new events make
the next request load a fresh bundle.  Bundles are read-only once built, so
threads share them; each thread keeps its own SQLite connection.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Optional, Union

from merch_app.model.bundle import Encoder, ModelBundle, bundle_key, load_bundle

MAX_BUNDLES = 2  # two systems side by side (Evaluate's comparison) without reloading


class BundleCache:
    """Bundles by :func:`bundle_key`, least recently used dropped first.

    Parameters
    ----------
    max_bundles
        How many bundles to keep.
    """

    def __init__(self, max_bundles: int = MAX_BUNDLES) -> None:
        self.max_bundles = max_bundles
        self._bundles: OrderedDict[tuple, ModelBundle] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # bundles built so far (tests and the status line read it)

    def get(self, db, model_id: Optional[str] = None, encoder: Union[None, str, Encoder] = None, *,
            fallback: bool = False, progress=None, cancel=None) -> ModelBundle:
        """:func:`load_bundle` for these arguments, built once per workspace state.

        Parameters are those of :func:`merch_app.model.bundle.load_bundle`.
        """
        key = (bundle_key(db, model_id, encoder), fallback)
        with self._lock:  # one load at a time: two screens asking at once share the result
            hit = self._bundles.get(key)
            if hit is not None:
                self._bundles.move_to_end(key)
                return hit
            bundle = load_bundle(db, model_id, encoder, fallback=fallback, progress=progress, cancel=cancel)
            self._bundles[key] = bundle
            self.loads += 1
            while len(self._bundles) > self.max_bundles:
                self._bundles.popitem(last=False)
            return bundle

    def clear(self) -> None:
        """Forget every bundle (a workspace was closed)."""
        with self._lock:
            self._bundles.clear()


SHARED = BundleCache()
"""The cache every screen of the GUI process uses."""

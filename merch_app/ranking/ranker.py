"""The ranker: hybrid search, recommendations and related items.

``score = w_lex·bm25/max + w_text·cos + w_cf·cf + w_pop·popularity + rules``
on the union of the candidate sources of the mode:

* search    lexical (FTS5 BM25 top ``candidates``) ∪ semantic (index top
            ``candidates``); an empty query (no letters/digits) browses:
            CF (when a user is given) ∪ popularity;
* recommend CF top ``candidates`` for the user ∪ popularity top ``candidates``;
* related   ``text``: nearest item vectors; ``cf``: the model's similar
            items, similarity divided by the best one.

One :class:`Ranker` per thread (it holds that thread's connection); it caches
the item metadata, query vectors, per-user CF scores and the last requests,
so calling it on every keystroke is cheap.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import replace
from typing import Any, Optional

import numpy as np

from merch_app.model import text_matrix
from merch_app.model.query_vectors import QueryVectorStore
from merch_app.ranking.candidates import ScoredCandidates, top_positions, union_positions
from merch_app.ranking.catalog import ItemCatalog
from merch_app.ranking.fusion import apply_pins, lexical_score, normalise_by_max, order_by_score, squash_cf, weigh
from merch_app.ranking.lexical import LexicalSearcher
from merch_app.ranking.rules import load_rules, pinned_item_ids, rewrite_query
from merch_app.ranking.rule_hook import RuleContext, apply_rules, describe_rule, effect_label, rule_label
from merch_app.ranking.semantic import QueryVectorCache, search_index
from merch_app.ranking.types import COMPONENTS, MODES, RankedList, RankRequest

_CACHE_REQUESTS = 8
_CACHE_USERS = 16
# A query whose word pieces are mostly unknown to the encoder (e.g. Chinese through the
# English MiniLM: every character [UNK]) gets the same vector as any other such text.
UNKNOWN_TEXT_LIMIT = 0.5
# Lexical candidates (best BM25 first) whose query-term coverage caps their keyword score;
# the ones below already score under them (scoring a row's terms costs ~6 us in Python).
COVERAGE_CANDIDATES = 100


class Ranker:
    """Rank items of one model bundle.

    Parameters
    ----------
    db
        Open workspace owned by the calling thread.
    bundle
        :class:`merch_app.model.bundle.ModelBundle`.
    rules
        Merchandising rules (objects with ``name`` and ``apply(ctx)``); none by default.
    field_weights
        BM25 field weights (see :data:`merch_app.data.term_tops.DEFAULT_FIELD_WEIGHTS`).
    """

    def __init__(self, db, bundle, rules=None, field_weights: dict[str, float] | None = None) -> None:
        self.db = db
        self.bundle = bundle
        self.rules = list(rules or [])
        self.catalog = ItemCatalog.from_db(db, bundle.item_ids, bundle.item_pos)
        self.lexical = LexicalSearcher(db, field_weights, known_word=getattr(bundle.encoder, "knows_word", None))
        self.queries = QueryVectorCache(bundle.encoder, store=QueryVectorStore(db, bundle.encoder))
        self.item_vectors = text_matrix.as_text_matrix(bundle.item_vectors)
        self.popularity = np.asarray(bundle.popularity, dtype=np.float64)
        self._requests: OrderedDict[tuple, ScoredCandidates] = OrderedDict()
        self._users: OrderedDict[str, np.ndarray] = OrderedDict()
        self._masks: dict[Any, np.ndarray] = {}
        self._known_users: Optional[set[str]] = None

    @classmethod
    def for_workspace(cls, db, bundle, rules="workspace", field_weights: dict[str, float] | None = None) -> "Ranker":
        """The ranker every face of the app uses: ``bundle`` with the workspace's rules.

        Parameters
        ----------
        rules
            ``"workspace"`` = the live rules stored in the workspace (each applies only inside
            its validity window as of the request's ``as_of`` day), None = no rules, or a list
            of rules (e.g. a drafted rule plus the live ones).
        """
        if isinstance(rules, str) and rules == "workspace":
            rules = load_rules(db, enabled_only=True)
        return cls(db, bundle, rules=rules, field_weights=field_weights)

    # ------------------------------------------------------------------ public
    def rank(self, request: RankRequest) -> RankedList:
        """Rank for ``request`` and return the top ``k`` with their score split."""
        t0 = time.perf_counter()
        sc = self.score_candidates(request)
        top = sc.order[: max(int(request.k), 0)]
        pos = sc.positions[top]
        cat = self.catalog
        effects = {cat.item_ids[sc.positions[c]]: sc.effects[c] for c in top.tolist() if c in sc.effects}
        return RankedList(
            request=request,
            item_ids=[cat.item_ids[p] for p in pos.tolist()],
            scores=sc.scores[top].copy(),
            components={c: sc.comps[c][top].copy() for c in COMPONENTS},
            raw_components={c: sc.raw[c][top].copy() for c in COMPONENTS},
            titles=[cat.titles[p] for p in pos.tolist()],
            categories=[cat.category(p) for p in pos.tolist()],
            prices=[float(cat.prices[p]) for p in pos.tolist()],
            all_candidate_scores=sc.scores[sc.order].copy(),
            n_candidates=len(sc.positions),
            seconds=sc.seconds + (time.perf_counter() - t0),
            notes=list(sc.notes),
            rule_effects=effects,
            corrected_query=sc.analysis.corrected_text if sc.analysis else None,
            corrections=[c.to_dict() for c in sc.analysis.corrections] if sc.analysis else [],
            item_terms=self._matched_terms(sc, top),
        )

    def _matched_terms(self, sc: ScoredCandidates, top: np.ndarray) -> list[list[str]]:
        """Per shown candidate (indices ``top``), the query terms (as labelled) it matched."""
        if sc.terms is None or not sc.terms.terms:
            return [[] for _ in range(len(top))]
        labels = sc.terms.labels()
        missing = [int(c) for c in top if int(c) not in sc.term_hits and self.catalog.rowids[sc.positions[c]] >= 0]
        if missing:
            matrix = self.lexical.term_matrix(sc.terms, self.catalog.rowids[sc.positions[missing]])
            sc.term_hits.update(zip(missing, matrix > 0))
        return [[labels[j] for j in np.flatnonzero(sc.term_hits[int(c)])] if int(c) in sc.term_hits else []
                for c in top]

    def set_rules(self, rules) -> None:
        """Replace the rules (e.g. after they were edited); cached results are dropped if they changed."""
        rules = list(rules or [])
        if rules != self.rules:
            self.rules = rules
            self._requests.clear()

    def related_lists(self, item_id: str, k: int = 10, **kwargs) -> dict[str, RankedList]:
        """Both related lists of ``item_id``: ``{"text": ..., "cf": ...}``."""
        return {by: self.rank(RankRequest(mode="related", item_id=item_id, k=k, related_by=by, **kwargs))
                for by in ("text", "cf")}

    def position_of(self, request: RankRequest, item_id: str) -> tuple[Optional[int], dict[str, Any]]:
        """Full rank of any item for ``request`` and its components.

        Returns
        -------
        rank, info
            ``rank`` is the 1-based position among all visible candidates, or
            None when the item is not ranked; ``info`` has ``status``
            (``shown``, ``below cut-off``, ``filtered``, ``hidden``,
            ``not a candidate``, ``unknown item``), ``reason``, ``score``,
            ``components``, ``raw_components`` and ``would_rank`` (where its
            score would place it among the candidates).
        """
        sc = self.score_candidates(request)
        p = self.bundle.item_pos.get(str(item_id))
        info: dict[str, Any] = {"item_id": str(item_id), "title": "", "status": "unknown item",
                                "reason": f"{item_id!r} is not in the model's catalogue",
                                "score": None, "components": {}, "raw_components": {},
                                "would_rank": None, "sources": [], "bm25": None}
        if p is None:
            return None, info
        info["title"] = self.catalog.titles[p]
        cand = sc.index_of(p)
        if cand is not None:
            raw = {c: float(sc.raw[c][cand]) for c in COMPONENTS}
            comps = {c: float(sc.comps[c][cand]) for c in COMPONENTS}
            score = float(sc.scores[cand])
            info["sources"] = sorted(sc.sources.get(cand, ()))
            if sc.raw_bm25 is not None:
                info["bm25"] = float(sc.raw_bm25[cand])
        else:
            raw, comps, score = self._components_of(sc, p)
            info["bm25"] = raw.pop("_bm25", None)
            raw.pop("_coverage", None)
        info.update(score=score, components=comps, raw_components=raw)
        visible = sc.scores[sc.order]
        info["would_rank"] = int(np.sum(visible > score + 1e-12)) + 1
        if cand is not None and cand in sc.hidden_by:
            info.update(status="hidden", reason=f"hidden by rule {sc.hidden_by[cand]!r}")
            return None, info
        if cand is not None:
            rank = sc.rank_of(cand)
            shown = rank is not None and rank <= request.k
            info.update(status="shown" if shown else "below cut-off",
                        reason=None if shown else f"ranked {rank}, below the top {request.k}")
            return rank, info
        failed = self.catalog.failed_filters(request.filters, p) if request.filters.active else []
        if failed:
            info.update(status="filtered", reason="filtered out by " + ", ".join(failed))
        else:
            info.update(status="not a candidate", reason=sc.why_not_candidate(raw["text"], info["bm25"]))
        return None, info

    def score_candidates(self, request: RankRequest) -> ScoredCandidates:
        """Score every candidate of ``request`` (cached for the last few requests)."""
        if request.mode not in MODES:
            raise ValueError(f"unknown mode {request.mode!r}; expected one of {', '.join(MODES)}")
        key = request.key()
        hit = self._requests.get(key)
        if hit is not None:
            self._requests.move_to_end(key)
            return hit
        t0 = time.perf_counter()
        query, rewrites = (rewrite_query(self.rules, request.query, request.as_of) if request.mode == "search"
                           else ("", []))
        sc = getattr(self, f"_candidates_{request.mode}")(replace(request, query=query) if rewrites else request)
        sc.request = request  # rules match the query as typed; candidates came from the rewritten one
        sc.notes.extend(rewrites)
        self._add_pinned(sc)
        self._finish(sc)
        sc.seconds = time.perf_counter() - t0
        self._requests[key] = sc
        while len(self._requests) > _CACHE_REQUESTS:
            self._requests.popitem(last=False)
        return sc

    def user_cf(self, user_id: Optional[str]) -> Optional[np.ndarray]:
        """Squashed CF score of every item for ``user_id`` (None: anonymous/unknown)."""
        model = self.bundle.model
        if user_id is None or model is None or not self._is_known_user(user_id):
            return None
        hit = self._users.get(user_id)
        if hit is None:
            hit = squash_cf(np.asarray(model.score(user_id), dtype=np.float64))
            hit.setflags(write=False)
            self._users[user_id] = hit
            while len(self._users) > _CACHE_USERS:
                self._users.popitem(last=False)
        return hit

    def query_vector(self, text: str) -> np.ndarray:
        return self.queries.get(text)

    # --------------------------------------------------------------- internals
    def _mask(self, request: RankRequest) -> Optional[np.ndarray]:
        if not request.filters.active:
            return None
        mask = self._masks.get(request.filters)
        if mask is None:
            if len(self._masks) > 8:
                self._masks.clear()
            mask = self._masks[request.filters] = self.catalog.filter_mask(request.filters)
        return mask

    def _is_known_user(self, user_id: str) -> bool:
        if self._known_users is None:
            ids = getattr(self.bundle.model, "user_ids", None)
            self._known_users = None if ids is None else {str(u) for u in ids}
        return self._known_users is None or str(user_id) in self._known_users

    def _new(self, request, positions, raw, sources, **extra) -> ScoredCandidates:
        n = len(positions)
        full = {c: np.asarray(raw.get(c, np.zeros(n)), dtype=np.float64) for c in COMPONENTS}
        return ScoredCandidates(request, positions, full, {}, np.zeros(n), np.zeros(0, np.int64),
                                sources=sources, **extra)

    def _candidates_search(self, request: RankRequest) -> ScoredCandidates:
        analysis = self.lexical.analyse(request.query, request.prefix, correct=not request.literal)
        terms = analysis.terms
        if not terms.terms:
            sc = self._candidates_recommend(request)
            sc.terms = terms
            if (request.query or "").strip():
                sc.notes.append("query has no letters or digits: showing a browse list")
            return sc
        mask = self._mask(request)
        n_cand = max(int(request.candidates), 1)
        rowids, bm25, lex_truncated = self.lexical.search(terms, n_cand, request.filters)
        lex_pos = self.catalog.positions_of_rowids(rowids)
        keep = lex_pos >= 0
        if mask is not None:
            keep &= mask[np.clip(lex_pos, 0, None)]
        lex_pos, bm25 = lex_pos[keep], bm25[keep]
        qvec = self.queries.get((analysis.corrected_text or request.query).strip())
        sem_pos, sem_cos = search_index(self.bundle.index, self.item_vectors, qvec, n_cand, mask)
        sem_truncated = len(sem_pos) >= n_cand
        positions = union_positions(lex_pos, sem_pos)
        sources: dict[int, set[str]] = {}
        lex_set, sem_set = set(lex_pos.tolist()), set(sem_pos.tolist())
        for i, p in enumerate(positions.tolist()):
            sources[i] = ({"lexical"} if p in lex_set else set()) | ({"semantic"} if p in sem_set else set())
        raw_bm25 = np.zeros(len(positions))
        raw_bm25[: len(lex_pos)] = bm25  # union keeps lexical ones first, in order
        n_lex = len(lex_pos)
        coverage = (raw_bm25 > 0).astype(np.float64)  # uncapped unless computed below
        hits: dict[int, np.ndarray] = {}  # candidate index -> matched term flags, where computed
        if lex_truncated and len(positions) > n_lex:
            # semantic-only candidates the truncated lexical list did not score
            matrix = self.lexical.term_matrix(terms, self.catalog.rowids[positions[n_lex:]])
            raw_bm25[n_lex:] = matrix.sum(axis=1)
            coverage[n_lex:] = self.lexical.coverage(terms, matrix)
            hits.update(zip(range(n_lex, len(positions)), matrix > 0))
        if len(terms.terms) > 1:
            # which query words the best keyword matches have (the cap matters where BM25 is high)
            top = min(n_lex, COVERAGE_CANDIDATES)
            matrix = self.lexical.term_matrix(terms, self.catalog.rowids[positions[:top]])
            coverage[:top] = self.lexical.coverage(terms, matrix)
            hits.update(zip(range(top), matrix > 0))
        bm25_max = float(raw_bm25.max()) if len(raw_bm25) else 0.0
        text = self.item_vectors[positions] @ qvec
        unknown = self._unknown_share(analysis.corrected_text or request.query)
        if unknown >= UNKNOWN_TEXT_LIMIT:
            text = np.zeros(len(positions))
        raw = {"lexical": lexical_score(raw_bm25, coverage),
               "text": text,
               "popularity": self.popularity[positions]}
        cf = self.user_cf(request.user_id)
        if cf is not None:
            raw["cf"] = cf[positions]
        sc = self._new(request, positions, raw, sources, terms=terms, qvec=qvec, bm25_max=bm25_max,
                       analysis=analysis, coverage=coverage, term_hits=hits,
                       lexical_cutoff=float(bm25[-1]) if lex_truncated and len(bm25) else None,
                       semantic_cutoff=float(sem_cos[-1]) if sem_truncated else None,
                       filter_mask=mask, raw_bm25=raw_bm25)
        sc.notes.extend(analysis.notes())
        if unknown >= UNKNOWN_TEXT_LIMIT:
            name = getattr(self.bundle.encoder, "encoder_id", "the encoder").split("@")[0]
            sc.notes.append(f"{name} does not know {unknown:.0%} of this query's word pieces: meaning match off "
                            "(a multilingual or Chinese model folder can be used, see README)")
        if request.user_id is not None and cf is None:
            sc.notes.append(self._no_cf_reason(request.user_id) + ": no CF component")
        return sc

    def _unknown_share(self, text: str) -> float:
        """Share of the query the encoder's vocabulary does not know (0 for encoders that cannot tell)."""
        share = getattr(self.bundle.encoder, "unknown_share", None)
        return float(share(text)) if share is not None else 0.0

    def _no_cf_reason(self, user_id) -> str:
        if self.bundle.model is None:
            return "no CF model in this bundle"
        return f"user {user_id!r} is unknown to the model"

    def _candidates_recommend(self, request: RankRequest) -> ScoredCandidates:
        mask = self._mask(request)
        n_cand = max(int(request.candidates), 1)
        cf = self.user_cf(request.user_id)
        pop_pos = top_positions(self.popularity, n_cand, mask)
        cf_pos = top_positions(cf, n_cand, mask) if cf is not None else np.zeros(0, np.int64)
        positions = union_positions(cf_pos, pop_pos)
        cf_set, pop_set = set(cf_pos.tolist()), set(pop_pos.tolist())
        sources = {i: ({"cf"} if p in cf_set else set()) | ({"popularity"} if p in pop_set else set())
                   for i, p in enumerate(positions.tolist())}
        raw = {"popularity": self.popularity[positions]}
        if cf is not None:
            raw["cf"] = cf[positions]
        sc = self._new(request, positions, raw, sources, filter_mask=mask)
        if request.user_id is not None and cf is None:
            sc.notes.append(self._no_cf_reason(request.user_id) + ": ranked by popularity")
        return sc

    def _candidates_related(self, request: RankRequest) -> ScoredCandidates:
        p = self.bundle.item_pos.get(str(request.item_id))
        if p is None:
            raise KeyError(f"item {request.item_id!r} is not in the model's catalogue")
        mask = self._mask(request)
        n_cand = max(int(request.candidates), 1)
        notes: list[str] = []
        related_by = request.related_by
        model = self.bundle.model
        if related_by == "cf" and model is not None and hasattr(model, "has_behaviour") \
                and not model.has_behaviour(request.item_id):
            notes.append(f"{request.item_id} had no behaviour when the model was trained (never sold by then): "
                         "its related items are by text")
            related_by = "text"
        if related_by == "cf":
            positions, sims = self._cf_neighbours(request.item_id, p, n_cand, mask, notes)
            raw = {"cf": normalise_by_max(sims), "popularity": self.popularity[positions]}
            src = "cf"
        elif related_by == "text":
            positions, cos = search_index(self.bundle.index, self.item_vectors, text_matrix.rows(self.item_vectors, p),
                                          n_cand, mask, exclude=p)
            raw = {"text": cos, "popularity": self.popularity[positions]}
            src = "related"
        else:
            raise ValueError(f"related_by must be 'text' or 'cf', not {request.related_by!r}")
        sources = {i: {src} for i in range(len(positions))}
        sc = self._new(request, positions, raw, sources, filter_mask=mask,
                       qvec=text_matrix.rows(self.item_vectors, p) if src == "related" else None)
        sc.notes.extend(notes)
        return sc

    def _cf_neighbours(self, item_id, p, n_cand, mask, notes) -> tuple[np.ndarray, np.ndarray]:
        model = self.bundle.model
        if model is None or not hasattr(model, "similar_items"):
            notes.append("no CF model in this bundle: no co-behaviour neighbours")
            return np.zeros(0, np.int64), np.zeros(0)
        want = n_cand if mask is None else min(self.catalog.n, n_cand * 4)
        ids, sims = model.similar_items(str(item_id), want + 1)
        pos = np.array([self.bundle.item_pos.get(str(i), -1) for i in ids], dtype=np.int64)
        sims = np.asarray(sims, dtype=np.float64)
        keep = (pos >= 0) & (pos != p)
        if mask is not None:
            keep &= mask[np.clip(pos, 0, None)]
        return pos[keep][:n_cand], sims[keep][:n_cand]

    def _add_pinned(self, sc: ScoredCandidates) -> None:
        """Items pinned by a rule join the candidates even when no source proposed them."""
        if not self.rules:
            return
        wanted = (self.bundle.item_pos.get(i)
                  for i in pinned_item_ids(self.rules, sc.request.query or "", sc.request.as_of))
        new = [p for p in dict.fromkeys(wanted) if p is not None and sc.index_of(p) is None
               and (sc.filter_mask is None or sc.filter_mask[p])]
        for p in new:
            raw, _comps, _score = self._components_of(sc, p)
            bm25 = raw.pop("_bm25", 0.0)
            cover = raw.pop("_coverage", 0.0)
            raw["rules"] = 0.0  # rule effects are added in _finish
            sc.sources[len(sc.positions)] = {"rule"}
            sc.positions = np.append(sc.positions, p)
            for c in COMPONENTS:
                sc.raw[c] = np.append(sc.raw[c], raw[c])
            if sc.raw_bm25 is not None:
                sc.raw_bm25 = np.append(sc.raw_bm25, bm25)
            if sc.coverage is not None:
                sc.coverage = np.append(sc.coverage, cover)
            sc._index = {}

    def _finish(self, sc: ScoredCandidates) -> None:
        """Weigh components, apply rules (boost, hide, pins) and order."""
        comps, scores = weigh(sc.raw, sc.request.weights)
        applied = apply_rules(self.rules, RuleContext(sc.request, sc.positions, scores, self.catalog))
        comps["rules"] = comps["rules"] + applied.boost
        sc.raw["rules"] = comps["rules"].copy()
        scores = scores + applied.boost
        order = order_by_score(scores, sc.positions)
        order = order[~applied.hidden[order]]
        unpinned = order
        order, delta = apply_pins(scores, order, applied.pins)
        if delta.any():
            comps["rules"] = comps["rules"] + delta
            sc.raw["rules"] = comps["rules"].copy()
            scores = scores + delta
        for i in sorted(applied.pins):
            if not delta[i] and not applied.pin_rules[i]["precedence"]:
                continue
            where, name = applied.pins[i]
            rule = applied.pin_rules[i]["rule"]
            entry = {"rule": name, "effect": float(delta[i]), "pinned_to": where + 1, **describe_rule(rule)}
            for text in applied.pin_rules[i]["precedence"]:
                entry.setdefault("precedence", []).append(text)
            sc.effects.setdefault(int(i), []).append(entry)
            self._pin_beat_boost(unpinned, where, int(i), rule, entry, applied)
        for i, effs in applied.effects.items():
            sc.effects.setdefault(i, []).extend(effs)
        moved = [e for effs in sc.effects.values() for e in effs if "kind" in e or "pinned_to" in e]
        if moved:  # how far a merchandising rule moved an item: rank without rules -> with rules
            before = {int(c): r + 1 for r, c in enumerate(order_by_score(scores - comps["rules"], sc.positions))}
            after = {int(c): r + 1 for r, c in enumerate(order)}
            for i, effs in sc.effects.items():
                for e in effs:
                    if "kind" in e or "pinned_to" in e:
                        e.update(from_rank=before.get(i), to_rank=after.get(i))
        sc.comps, sc.scores, sc.order = comps, scores, order
        sc.hidden_by = applied.hidden_by
        sc.notes.extend(n for n in applied.notes if n not in sc.notes)

    @staticmethod
    def _pin_beat_boost(unpinned: np.ndarray, where: int, i: int, rule, entry: dict, applied) -> None:
        """A pin that took the position a boosted item held: "pin #12 beat boost #7" on both."""
        if not 0 <= where < len(unpinned) or int(unpinned[where]) == i or int(unpinned[where]) in applied.pins:
            return
        for e in applied.effects.get(int(unpinned[where]), []):
            if e.get("kind") == "boost" and e.get("effect", 0) > 0 and not e.get("overruled"):
                text = f"{rule_label(rule)} beat {effect_label(e)}"
                for target in (e, entry):
                    target.setdefault("precedence", [])
                    if text not in target["precedence"]:
                        target["precedence"].append(text)

    def _components_of(self, sc: ScoredCandidates, p: int) -> tuple[dict, dict, float]:
        """Components of an item that was not a candidate (same normalisers)."""
        req = sc.request
        raw = {c: 0.0 for c in COMPONENTS}
        if req.mode == "search" and sc.terms is not None and sc.terms.terms:
            rowid = int(self.catalog.rowids[p])
            matrix = self.lexical.term_matrix(sc.terms, [rowid] if rowid >= 0 else [])
            bm25 = float(matrix.sum()) if rowid >= 0 else 0.0
            cover = float(self.lexical.coverage(sc.terms, matrix)[0]) if rowid >= 0 else 0.0
            raw["lexical"] = min(bm25 / sc.bm25_max, cover) if sc.bm25_max > 0 else 0.0
            raw["_bm25"] = bm25
            raw["_coverage"] = cover
        if sc.qvec is not None:
            raw["text"] = float(self.item_vectors[p] @ sc.qvec)
        cf = self.user_cf(req.user_id)
        if cf is not None and req.mode != "related":
            raw["cf"] = float(cf[p])
        raw["popularity"] = float(self.popularity[p])
        ctx = RuleContext(req, np.array([p]), np.zeros(1), self.catalog)
        raw["rules"] = float(apply_rules(self.rules, ctx).boost[0])
        comps = {c: raw[c] * req.weights.for_component(c) for c in COMPONENTS}
        return raw, comps, float(sum(comps.values()))

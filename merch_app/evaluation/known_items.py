"""Known-item judged queries built from purchases, and their graded relevance.

A shop without a search log still has purchases.  Each query here is made
from the title of a purchased item, the way a shopper half-remembers a
product, in four kinds:

* ``drop``      the key noun plus one or two other title words;
* ``reorder``   the title words shuffled, one non-key word dropped;
* ``misspell``  a ``drop`` query with one word misspelt (delete/swap/replace
                a letter), which breaks the exact keyword match;
* ``synonym``   title words with one replaced by a related word
                (holder → stand, bag → tote, christmas → xmas, ...).

Relevance is graded: the source item is :data:`TARGET_GAIN` (3), every other
item sharing its key noun (the last content word of the title, e.g. HOLDER)
is :data:`SAME_NOUN_GAIN` (1).  Queries are split in two halves by a hash of
their id (:func:`query_half`): tune on one, report on the other.

Two query sets:

* :func:`make_known_item_queries`: anonymous queries over purchased items,
  sampled in proportion to the square root of their purchase count;
* :func:`make_personal_queries`: one query per distinct test-period
  ``(user, item)`` purchase of users who bought something before a time
  split, searched as that user.

:func:`score_ranking` measures one ranking against a judged query with
:mod:`merch_app.evaluation.metrics`.  Everything is deterministic for a
given seed and workspace.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

from merch_app.evaluation.metrics import hit_rate_at_k, ndcg_at_k, reciprocal_rank

RELATED_WORDS = {
    "holder": "stand", "lantern": "lamp", "bag": "tote", "bags": "totes", "mug": "cup", "mugs": "cups",
    "cushion": "pillow", "bottle": "flask", "hanger": "hook", "box": "container", "boxes": "containers",
    "christmas": "xmas", "sign": "plaque", "card": "greeting", "cards": "greetings", "cake": "dessert",
    "tin": "can", "tins": "cans", "jar": "pot", "frame": "picture", "ornament": "decoration",
    "decoration": "ornament", "necklace": "pendant", "bracelet": "bangle", "bowl": "dish",
    "plate": "dish", "napkins": "serviettes", "clock": "timepiece", "doormat": "mat", "lights": "lamps",
    "candle": "candlelight", "jumbo": "large", "large": "big", "small": "little", "mini": "tiny",
    "pink": "rose", "red": "crimson", "heart": "love", "hearts": "love", "vintage": "retro",
    "retro": "vintage", "baking": "cooking", "garden": "outdoor", "childrens": "kids",
    "wooden": "wood", "glass": "crystal", "t-light": "tealight", "notebook": "journal",
    "pencils": "crayons", "purse": "wallet", "umbrella": "parasol", "teapot": "kettle",
    "apron": "pinafore", "trinket": "jewellery", "wall": "hanging", "party": "celebration",
    "dolly": "doll", "birthday": "party", "spaceboy": "astronaut", "union": "british",
}
NOT_KEY = {"design", "designs", "set", "assorted", "colour", "colours", "of", "and", "in", "with",
           "the", "a", "small", "large", "jumbo", "mini", "s", "m", "l"}
_FILLER = {"of", "and", "in", "with", "the", "a", "set", "pack", "s"}
KINDS = ("drop", "reorder", "misspell", "synonym")
TARGET_GAIN = 3.0
SAME_NOUN_GAIN = 1.0


def query_half(qid: str) -> str:
    """The half a query belongs to, from a hash of its id.

    Parameters
    ----------
    qid
        Query id.

    Returns
    -------
    str
        ``"tune"`` or ``"test"`` (stable across runs and machines: SHA-1).
    """
    return "tune" if int(hashlib.sha1(qid.encode()).hexdigest(), 16) % 2 == 0 else "test"


@dataclass
class JudgedQuery:
    """One known-item query with graded relevance.

    Attributes
    ----------
    qid
        Unique id (its hash decides :attr:`half`).
    text
        The query text.
    kind
        One of :data:`KINDS`.
    target
        The item the query was made from.
    gains
        ``item_id -> gain``: the target :data:`TARGET_GAIN`, items with the
        same key noun :data:`SAME_NOUN_GAIN`.
    """

    qid: str
    text: str
    kind: str
    target: str
    gains: dict[str, float]

    @property
    def half(self) -> str:
        """``"tune"`` or ``"test"`` (see :func:`query_half`)."""
        return query_half(self.qid)


@dataclass
class PersonalQuery(JudgedQuery):
    """A known-item query searched as ``user``.

    Attributes
    ----------
    user
        The user who bought :attr:`target` after the split.
    repeat
        True when the user had bought the item before the split too.
    """

    user: str = ""
    repeat: bool = False


def title_words(title: str) -> list[str]:
    """Lower-cased whitespace words of a title without surrounding punctuation.

    Parameters
    ----------
    title
        Item title (None counts as empty).

    Returns
    -------
    list of str
        Words holding at least one letter a-z.
    """
    words = [w.strip(".,;:!?()'\"").lower() for w in (title or "").split()]
    return [w for w in words if w and re.search(r"[a-z]", w)]


def key_noun(title: str) -> Optional[str]:
    """The last content word of a title (HOLDER in WHITE HANGING HEART T-LIGHT HOLDER).

    Parameters
    ----------
    title
        Item title.

    Returns
    -------
    str or None
        Lower-cased; None when no word qualifies (words in :data:`NOT_KEY`,
        numbers and words of up to two letters are skipped).
    """
    words = [w for w in title_words(title) if w not in NOT_KEY and not w.isdigit() and len(w) > 2]
    return words[-1] if words else None


def misspell(word: str, rng: np.random.Generator) -> str:
    """``word`` with one letter dropped, two neighbours swapped or one replaced (never the first letter);
    words under four letters are kept."""
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 1))
    op = int(rng.integers(0, 3))
    if op == 0:
        return word[:i] + word[i + 1:]
    if op == 1:
        return word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]
    letters = "aeioustrnl"
    return word[:i] + letters[int(rng.integers(0, len(letters)))] + word[i + 1:]


def _keep_some(words: list[str], key: str, rng: np.random.Generator) -> list[str]:
    others = [w for w in words if w != key and w not in _FILLER and not w.isdigit()] or \
        [w for w in words if w != key]
    n = min(len(others), int(rng.integers(1, 3)))
    keep = set(rng.choice(len(others), size=n, replace=False).tolist()) if n else set()
    return [w for i, w in enumerate(others) if i in keep] + [key]


def make_query(title: str, kind: str, rng: np.random.Generator) -> Optional[str]:
    """A query of ``kind`` for an item title.

    Parameters
    ----------
    title
        Item title.
    kind
        One of :data:`KINDS`.
    rng
        Random generator; the query depends only on the title, the kind and
        the generator's state (which this call advances).

    Returns
    -------
    str or None
        The query, or None when the title does not allow this kind (no key
        noun, a single word, no word to misspell or to replace).

    Raises
    ------
    ValueError
        ``kind`` is not one of :data:`KINDS`.
    """
    words, key = title_words(title), key_noun(title)
    if key is None or len(words) < 2:
        return None
    if kind == "drop":
        q = _keep_some(words, key, rng)
    elif kind == "reorder":
        q = list(words)
        if len(q) >= 3:
            drop = [i for i, w in enumerate(q) if w != key]
            q.pop(int(rng.choice(drop)))
        rng.shuffle(q)
    elif kind == "misspell":
        q = _keep_some(words, key, rng)
        long = [i for i, w in enumerate(q) if len(w) >= 4]
        if not long:
            return None
        i = int(rng.choice(long))
        q[i] = misspell(q[i], rng)
    elif kind == "synonym":
        mappable = [w for w in words if w in RELATED_WORDS]
        if not mappable:
            return None
        swap = key if key in RELATED_WORDS else str(rng.choice(mappable))
        q = [RELATED_WORDS[w] if w == swap else w for w in words]
        if len(q) > 3:
            q = [w for w in q if w == RELATED_WORDS[swap] or rng.random() < 0.6]
    else:
        raise ValueError(kind)
    return " ".join(q) or None


def _titles_by_noun(db) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``(item_id -> title, key noun -> item ids in catalogue order)``."""
    titles: dict[str, str] = {}
    by_noun: dict[str, list[str]] = {}
    for item_id, title in db.execute("SELECT item_id, title FROM items"):
        titles[str(item_id)] = title or ""
        k = key_noun(title or "")
        if k:
            by_noun.setdefault(k, []).append(str(item_id))
    return titles, by_noun


def graded_gains(item_id: str, titles: dict[str, str], by_noun: dict[str, list[str]]) -> dict[str, float]:
    """Graded relevance of a known-item query made from ``item_id``.

    Parameters
    ----------
    item_id
        The target item.
    titles
        ``item_id -> title`` of the catalogue.
    by_noun
        ``key noun -> item ids`` of the catalogue.

    Returns
    -------
    dict
        ``item_id -> gain``: :data:`SAME_NOUN_GAIN` for every item with the
        target's key noun, :data:`TARGET_GAIN` for the target.
    """
    gains = {other: SAME_NOUN_GAIN for other in by_noun.get(key_noun(titles[item_id]), [])}
    gains[item_id] = TARGET_GAIN
    return gains


def make_known_item_queries(db, n: int = 800, seed: int = 7) -> list[JudgedQuery]:
    """Anonymous known-item queries over purchased items.

    Items with a key noun are sampled without replacement in proportion to
    the square root of their purchase count (``2 n`` draws); each draw makes
    one query, the kinds taking turns, until ``n`` queries exist.

    Parameters
    ----------
    db
        Workspace with items and purchase events.
    n
        Number of queries wanted (fewer when the catalogue runs out).
    seed
        Seed of the only random generator used.

    Returns
    -------
    list of JudgedQuery
        Ids ``q<draw:04d>-<item_id>``.
    """
    rng = np.random.default_rng(seed)
    rows = db.execute(
        "SELECT i.item_id, i.title, count(e.id) FROM items i JOIN events e ON e.item_id = i.item_id "
        "WHERE e.event_type = 'purchase' GROUP BY i.item_id").fetchall()
    titles, by_noun = _titles_by_noun(db)
    sampled = [r for r in rows if key_noun(r[1] or "")]
    ids = [str(r[0]) for r in sampled]
    weight = np.sqrt(np.array([r[2] for r in sampled], dtype=np.float64))
    order = rng.choice(len(ids), size=min(len(ids), n * 2), replace=False, p=weight / weight.sum())
    out: list[JudgedQuery] = []
    for j, idx in enumerate(order.tolist()):
        if len(out) >= n:
            break
        item_id = ids[idx]
        kind = KINDS[len(out) % len(KINDS)]
        text = make_query(titles[item_id], kind, rng)
        if not text:
            continue
        out.append(JudgedQuery(f"q{j:04d}-{item_id}", text, kind, item_id, graded_gains(item_id, titles, by_noun)))
    return out


def make_personal_queries(db, user_ids: Iterable[str], split_ts: str, n: int = 600, seed: int = 7,
                          per_user: int = 2, item_ids: Optional[Iterable[str]] = None) -> list[PersonalQuery]:
    """Personalised known-item queries from test-period purchases.

    The pairs are the distinct ``(user, item)`` purchases at or after
    ``split_ts`` of users in ``user_ids`` who bought something before it,
    drawn in a random order (uniform) with at most ``per_user`` queries per
    user; the kinds take turns as in :func:`make_known_item_queries`.

    Parameters
    ----------
    db
        Workspace with items and purchase events.
    user_ids
        Users the ranker knows (others are skipped).
    split_ts
        ISO time of the split (``2011-09-01T00:00:00Z``).
    n
        Number of queries wanted.
    seed
        Seed of the only random generator used.
    per_user
        Most queries per user.
    item_ids
        Only items of this catalogue become targets (None: every item).

    Returns
    -------
    list of PersonalQuery
        Ids ``p<pair:06d>-<user>-<item>``; ``repeat`` is True when the user
        had bought the item before the split.
    """
    rng = np.random.default_rng(seed)
    known = {str(u) for u in user_ids}
    catalogue = None if item_ids is None else {str(i) for i in item_ids}
    before: dict[str, set[str]] = {}
    for u, i in db.execute("SELECT DISTINCT user_id, item_id FROM events WHERE event_type = 'purchase' "
                           "AND ts < ? AND user_id IS NOT NULL", (split_ts,)):
        if str(u) in known:
            before.setdefault(str(u), set()).add(str(i))
    titles, by_noun = _titles_by_noun(db)
    pairs = sorted({(str(u), str(i)) for u, i in db.execute(
        "SELECT DISTINCT user_id, item_id FROM events WHERE event_type = 'purchase' AND ts >= ? "
        "AND user_id IS NOT NULL", (split_ts,))
        if str(u) in before and key_noun(titles.get(str(i), "")) and (catalogue is None or str(i) in catalogue)})
    order = rng.permutation(len(pairs)).tolist()
    used: dict[str, int] = {}
    out: list[PersonalQuery] = []
    for j in order:
        if len(out) >= n:
            break
        user, item = pairs[j]
        if used.get(user, 0) >= per_user:
            continue
        kind = KINDS[len(out) % len(KINDS)]
        text = make_query(titles[item], kind, rng)
        if not text:
            continue
        used[user] = used.get(user, 0) + 1
        out.append(PersonalQuery(f"p{j:06d}-{user}-{item}", text, kind, item, graded_gains(item, titles, by_noun),
                                 user=user, repeat=item in before[user]))
    return out


def score_ranking(query: JudgedQuery, ranked: Sequence[str], k: int = 10) -> dict[str, float]:
    """nDCG, reciprocal rank and hit of one ranking for a judged query.

    Parameters
    ----------
    query
        The judged query.
    ranked
        Item ids, best first.
    k
        Cut-off.

    Returns
    -------
    dict
        ``ndcg`` (graded, :func:`~merch_app.evaluation.metrics.ndcg_at_k`),
        ``rr`` and ``hit`` of the target alone within the top ``k``.
    """
    target = {query.target}
    return {"ndcg": ndcg_at_k(ranked, query.gains, k), "rr": reciprocal_rank(ranked, target, k),
            "hit": hit_rate_at_k(ranked, target, k)}

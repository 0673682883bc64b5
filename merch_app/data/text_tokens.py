"""Search tokens that fit the language: Han text segmented into words, pinyin, Latin as it is.

SQLite FTS5's ``unicode61`` tokenizer keeps a run of Han characters as one
token, so ``烛台`` never matches ``红色心形烛台``.  The search index therefore
reads pre-segmented text (table ``items_tokens``, see
:mod:`merch_app.data.workspace`): every Han run is replaced by

* its words in jieba's search mode (``红色 心形 烛台``; long words also give
  their dictionary sub-words: ``马克杯`` → ``马克 马克杯``), and
* every single character, the fallback that never misses (a query word the
  segmenter cut differently still matches character by character),

while Latin text, digits and mixed text (``iPhone 15 手机壳``) keep their
own tokens.  A ``pinyin`` column holds, per Han word of the title, tags and
category, its toneless pinyin and its initials (``红色`` → ``hongse hs``),
because shoppers type pinyin.

Query text goes through :func:`query_words` (jieba's accurate mode: whole
words, no sub-words); the lexical searcher backs an unknown word off to its
sub-words and characters (:func:`backoff_words`).

The segmenter is rjieba (jieba's dictionary and algorithm in Rust: the same
cuts as jieba, ~0.1 s to import instead of ~0.5 s) and pinyin comes from
pypinyin; both ship their dictionaries, nothing is downloaded.
"""
from __future__ import annotations

import re
from typing import Iterable, Optional

# Tokenizer modes of a workspace (setting ``search_tokens``): ``auto`` segments
# Han text wherever the catalogue has some, ``plain`` indexes text as FTS5's
# unicode61 alone does (a Han run is one token).
MODES = ("auto", "plain")
SETTING = "search_tokens"
DEFAULT_MODE = "auto"
# Columns of items_tokens that hold segmented text (item_id is never segmented).
SEGMENTED_FIELDS = ("title", "description", "tags", "category")
PINYIN_SOURCES = ("title", "tags", "category")

_HAN_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
_HAN = re.compile(f"[{_HAN_CLASS}]")
_HAN_RUN = re.compile(f"[{_HAN_CLASS}]+")
# GLOB pattern (code-point ranges) that finds rows with Han text inside SQLite.
HAN_GLOB = f"*[{_HAN_CLASS}]*"
# Noun suffixes dropped when an unknown word backs off to characters
# (杯子 → 杯: the suffix alone would match every 鞋子, 裙子, 包子 ...).
_SUFFIXES = frozenset("子儿们")
# Han runs up to this length also get the pinyin of the whole run (a product name typed in one go).
MAX_RUN_PINYIN = 6


def has_han(text: Optional[str]) -> bool:
    """True when ``text`` contains a Han (CJK ideograph) character."""
    return bool(text) and _HAN.search(text) is not None


def is_han(token: str) -> bool:
    """True when ``token`` is made of Han characters only."""
    return bool(token) and _HAN_RUN.fullmatch(token) is not None


def _jieba():
    # rjieba is imported on the first Han text: it adds ~0.1 s to start-up, which a
    # Latin-only workspace (and `merch-app --help`) never needs.
    import rjieba

    return rjieba


def _split_runs(text: str) -> Iterable[tuple[bool, str]]:
    """``(is_han, piece)`` pieces of ``text`` in order."""
    pos = 0
    for m in _HAN_RUN.finditer(text):
        if m.start() > pos:
            yield False, text[pos:m.start()]
        yield True, m.group()
        pos = m.end()
    if pos < len(text):
        yield False, text[pos:]


def index_text(text: Optional[str]) -> Optional[str]:
    """Text as the search index stores it: Han runs as words + characters, the rest unchanged.

    Returns ``text`` itself when it has no Han character.

    Examples
    --------
    >>> index_text("红色心形烛台")
    '红色 心形 烛台 红 色 心 形 烛 台'
    """
    if not has_han(text):
        return text
    jieba = _jieba()
    out = []
    for han, piece in _split_runs(text):
        if not han:
            out.append(piece)
            continue
        words = [w for w in jieba.cut_for_search(piece) if w.strip()]
        chars = [c for c in piece if not any(w == c for w in words)]
        out.append(" " + " ".join(words + chars) + " ")
    return " ".join("".join(out).split())


def query_words(text: Optional[str]) -> list[str]:
    """Words of query text: Han runs cut into whole words, other text left for the caller's tokenizer.

    Returns the pieces in order; Latin pieces come back unsplit (``"iPhone 15 "``),
    Han words one by one.
    """
    if not text:
        return []
    if not has_han(text):
        return [text]
    jieba = _jieba()
    out: list[str] = []
    for han, piece in _split_runs(text):
        if han:
            out.extend(w for w in jieba.cut(piece) if w.strip())
        else:
            out.append(piece)
    return out


def backoff_words(word: str) -> list[str]:
    """What an unknown Han word is searched as: its dictionary sub-words, then its characters.

    The lexical searcher keeps the first of these lists whose terms the index
    knows; noun suffixes (子, 儿, 们) are left out of the characters when
    another character remains.

    Returns
    -------
    list of str
        Sub-words (jieba search mode, the word itself excluded) followed by
        the characters, in order, without repeats.
    """
    subs = [w for w in _jieba().cut_for_search(word) if w != word and len(w) > 1]
    chars = [c for c in word if c not in _SUFFIXES] or list(word)
    return list(dict.fromkeys(subs + chars))


def pinyin_text(*texts: Optional[str]) -> Optional[str]:
    """Toneless pinyin and initials of the Han words in ``texts`` (None without Han).

    Examples
    --------
    >>> pinyin_text("红色心形烛台")
    'hongse hs xinxing xx zhutai zt hongsexinxingzhutai hsxxzt'
    """
    words = [w for t in texts if has_han(t) for w in query_words(t) if is_han(w)]
    if not words:
        return None
    # a short run as a whole too: jieba cuts 充电宝 into 充电 + 宝, shoppers type cdb
    words += [run for t in texts if t for run in _HAN_RUN.findall(t) if 2 < len(run) <= MAX_RUN_PINYIN]
    # pypinyin is imported on the first Han text (~0.13 s, see _jieba).
    from pypinyin import Style, lazy_pinyin

    out: list[str] = []
    for w in dict.fromkeys(words):
        full = "".join(lazy_pinyin(w))
        initials = "".join(s[:1] for s in lazy_pinyin(w, style=Style.FIRST_LETTER))
        out.append(full)
        if len(w) > 1 and initials != full:
            out.append(initials)
    return " ".join(dict.fromkeys(out))


def token_row(title, description, tags, category) -> Optional[tuple]:
    """The segmented ``(title, description, tags, category, pinyin)`` of one item, None without Han."""
    values = (title, description, tags, category)
    if not any(has_han(v) for v in values):
        return None
    return (*(index_text(v) for v in values), pinyin_text(title, tags, category))

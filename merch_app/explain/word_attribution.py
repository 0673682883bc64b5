"""Which query words drive the semantic match, and which item words they meet.

* Leave-one-word-out: for each query word, the cosine between the item and
  the query without that word; ``drop = cos(full) - cos(without)``.  A large
  positive drop means the word pulls the item up.  (With a one-word query
  the remainder is empty, whose similarity is taken as 0.)
* Word matrix: query words and item words are encoded individually;
  ``matrix[i][j] = cos(query word i, item word j)``; each item word carries
  the field it came from (title, tags, category, description).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from merch_app.ranking.lexical import tokenize

MAX_ITEM_WORDS = 40
MAX_DESCRIPTION_WORDS = 20


def item_words(catalog, pos: int) -> list[tuple[str, str]]:
    """Distinct ``(word, field)`` pairs of an item, title first, at most :data:`MAX_ITEM_WORDS`."""
    out: dict[str, str] = {}
    fields = (("title", catalog.titles[pos], None), ("tags", catalog.tags[pos], None),
              ("category", catalog.category(pos), None),
              ("description", catalog.descriptions[pos], MAX_DESCRIPTION_WORDS))
    for field, text, cap in fields:
        words = tokenize(text)
        for w in words[:cap] if cap else words:
            out.setdefault(w, field)
    return list(out.items())[:MAX_ITEM_WORDS]


def word_attribution(encoder, query: str, item_vector: np.ndarray, words: list[tuple[str, str]],
                     query_vector: np.ndarray | None = None) -> dict[str, Any]:
    """Leave-one-word-out drops and the query-word × item-word similarity matrix.

    Parameters
    ----------
    encoder
        Text encoder (``encode(texts) -> unit vectors``).
    query
        The query text.
    item_vector
        The item's unit text vector.
    words
        ``(word, field)`` pairs of the item (see :func:`item_words`).
    query_vector
        Vector of the full query if already known (keeps ``cosine`` identical
        to the ranked ``text`` component).

    Returns
    -------
    dict
        ``{"cosine", "query_words", "drops": [{"word", "drop", "cosine_without"}],
        "item_words": [{"word", "field"}], "matrix", "best_matches": [{"query_word",
        "item_word", "field", "similarity"}]}``.
    """
    qwords = list(dict.fromkeys(tokenize(query)))
    item_vector = np.asarray(item_vector, dtype=np.float32)
    if query_vector is None:
        query_vector = encoder.encode([query])[0]
    full = float(np.asarray(query_vector, dtype=np.float32) @ item_vector)
    result: dict[str, Any] = {"cosine": full, "query_words": qwords, "drops": [],
                              "item_words": [{"word": w, "field": f} for w, f in words],
                              "matrix": [], "best_matches": []}
    if not qwords:
        return result
    rests = [" ".join(w for w in qwords if w != drop) for drop in qwords]
    to_encode = [r for r in rests if r] + qwords + [w for w, _ in words]
    vecs = np.asarray(encoder.encode(to_encode), dtype=np.float32) if to_encode else np.zeros((0, 1))
    n_rest = sum(1 for r in rests if r)
    rest_vecs, qvecs, ivecs = vecs[:n_rest], vecs[n_rest:n_rest + len(qwords)], vecs[n_rest + len(qwords):]
    k = 0
    for word, rest in zip(qwords, rests):
        without = float(rest_vecs[k] @ item_vector) if rest else 0.0
        k += 1 if rest else 0
        result["drops"].append({"word": word, "drop": full - without, "cosine_without": without})
    if len(words):
        matrix = qvecs @ ivecs.T
        result["matrix"] = matrix.astype(float).round(6).tolist()
        for i, word in enumerate(qwords):
            j = int(np.argmax(matrix[i]))
            result["best_matches"].append({"query_word": word, "item_word": words[j][0],
                                           "field": words[j][1], "similarity": float(matrix[i, j])})
    return result

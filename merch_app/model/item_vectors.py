"""Item text vectors t_i with a persistent embedding cache.

Each item is rendered to one text (``DEFAULT_TEMPLATE``) and encoded.  Vectors
are cached in the workspace table ``embeddings`` keyed by
``(encoder_id, sha1(text))``, so re-encoding an unchanged catalogue costs
nothing and editing one title re-encodes one text.
"""
from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import string
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from merch_app.jobs import EtaClock, Progress, Throttle
from merch_app.model import text_matrix

DEFAULT_TEMPLATE = "{title}. {category}. {tags}. {description}"
TEMPLATE_FIELDS = ("item_id", "title", "description", "tags", "category", "price")

# Texts encoded between two cache writes: a cancel keeps every finished chunk.
CHUNK_TEXTS = 512
_SQL_VARS = 500  # hashes per IN (...) lookup, below SQLite's variable limit

_EMPTY_SEGMENTS = re.compile(r"(?:\s*[.,;:|]\s*){2,}")  # ". . " or ".. " left by empty fields
_SPACES = re.compile(r"\s+")


@dataclass
class VectorStats:
    """What one cached encoding run did."""

    texts: int = 0  # texts asked for (after de-duplication)
    encoded: int = 0  # texts run through the encoder
    cached: int = 0  # texts found in the cache
    seconds: float = 0.0

    @property
    def texts_per_s(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ItemVectors:
    """Item ids (row order) and their text vectors, plus the run's statistics."""

    item_ids: np.ndarray  # object array of str
    vectors: np.ndarray  # (n_items, dim) unit norm, float32 (float16 from 100k items: text_matrix)
    stats: VectorStats
    encoder_id: str


def text_hash(text: str) -> str:
    """Cache key of a text: sha1 of its UTF-8 bytes (hex)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _tags_text(raw) -> str:
    if raw is None:
        return ""
    raw = str(raw).strip()
    if raw.startswith("["):
        try:
            tags = json.loads(raw)
            if isinstance(tags, list):
                return ", ".join(str(t).strip() for t in tags if str(t).strip())
        except ValueError:
            pass
    return raw


def _check_template(template: str) -> None:
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"bad item text template {template!r}: {exc}") from exc
    unknown = fields - set(TEMPLATE_FIELDS)
    if unknown:
        raise ValueError(
            f"item text template uses unknown field(s) {', '.join(sorted(unknown))}; "
            f"available: {', '.join(TEMPLATE_FIELDS)}"
        )


def render_item_text(row: dict, template: str = DEFAULT_TEMPLATE) -> str:
    """Fill ``template`` with one item's fields, dropping separators of empty fields.

    The literal text between two fields is kept only when both sides have a
    value, so a missing category does not leave ". ." behind.

    >>> render_item_text({"title": "Red mug", "category": None, "tags": "", "description": "Tea."})
    'Red mug. Tea.'
    """
    values = {k: "" for k in TEMPLATE_FIELDS}
    for k in TEMPLATE_FIELDS:
        v = row.get(k)
        if v is None:
            continue
        if k == "price":
            values[k] = f"{v:g}" if isinstance(v, (int, float)) else str(v)
        elif k == "tags":
            values[k] = _tags_text(v)
        else:
            values[k] = _SPACES.sub(" ", str(v)).strip()
    parts: list[str] = []
    have_content = False
    after_field = False
    for literal, name, spec, conv in string.Formatter().parse(template):
        if not after_field or name is None:
            parts.append(literal)  # prefix before the first field / suffix after the last
        if name is None:
            continue
        value = format(values[name], spec or "") if conv is None else values[name]
        after_field = True
        if value:
            if have_content:
                parts.append(literal)  # separator between two non-empty fields
            parts.append(value)
            have_content = True
    text = _EMPTY_SEGMENTS.sub(lambda m: m.group(0).strip()[0] + " ", "".join(parts))
    return _SPACES.sub(" ", text).strip()


def item_texts(db, template: str = DEFAULT_TEMPLATE) -> tuple[list[str], list[str]]:
    """Render every item of the catalogue to the text that gets encoded.

    Returns
    -------
    (item_ids, texts)
        Two lists in ``item_id`` order.
    """
    _check_template(template)
    rows = db.execute(  # iterated, not fetched: a million row tuples would add ~0.5 GB
        "SELECT item_id, title, description, tags, category, price FROM items ORDER BY item_id"
    )
    ids, texts = [], []
    for r in rows:
        row = dict(zip(TEMPLATE_FIELDS, r))
        ids.append(str(r[0]))
        texts.append(render_item_text(row, template))
    return ids, texts


def _cached_rows(db, encoder_id: str, dim: int, hashes: list[str]):
    """(text hash, vector) of every usable cache row for ``hashes``; a row of the
    wrong size (other dim, damaged) counts as missing."""
    for start in range(0, len(hashes), _SQL_VARS):
        chunk = hashes[start : start + _SQL_VARS]
        marks = ",".join("?" * len(chunk))
        for h, d, blob in db.execute(
            f"SELECT text_hash, dim, vector FROM embeddings "
            f"WHERE encoder_id = ? AND text_hash IN ({marks})",
            [encoder_id, *chunk],
        ):
            if d == dim and blob is not None and len(blob) == 4 * dim:
                yield h, np.frombuffer(blob, dtype=np.float32)


def _lookup_cache(db, encoder_id: str, dim: int, hashes: list[str]) -> dict[str, np.ndarray]:
    return dict(_cached_rows(db, encoder_id, dim, hashes))


def _fill_from_cache(db, encoder_id: str, dim: int, first: dict[str, int], out: np.ndarray) -> set[str]:
    """Copy cached vectors into ``out[first[hash]]``; returns the hashes found.

    Filling the result in place keeps one copy of the vectors (a dict of a
    million small arrays added ~1.5 GB at 1M items)."""
    have: set[str] = set()
    for h, vector in _cached_rows(db, encoder_id, dim, list(first)):
        out[first[h]] = vector
        have.add(h)
    return have


def _write_cache(db, encoder_id: str, dim: int, hashes: list[str], vectors: np.ndarray) -> None:
    rows = [
        (encoder_id, h, dim, np.ascontiguousarray(v, dtype=np.float32).tobytes())
        for h, v in zip(hashes, vectors)
    ]
    conn = db.conn
    wait_ms = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute("PRAGMA busy_timeout = 200")  # a cache write must not wait behind a running import
    try:
        with conn:  # one short transaction per chunk; rolled back on any error
            conn.executemany(
                "INSERT OR REPLACE INTO embeddings (encoder_id, text_hash, dim, vector) VALUES (?, ?, ?, ?)",
                rows,
            )
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")


def encode_texts_cached(
    db, encoder, texts: list[str], *, batch_size: int = 64, progress=None, cancel=None
) -> tuple[np.ndarray, VectorStats]:
    """Encode ``texts`` through the workspace embedding cache.

    Only distinct texts missing from the cache are encoded; they are written
    back in chunks of :data:`CHUNK_TEXTS`, each in its own short transaction,
    so a cancel keeps whole chunks and never leaves a partial row.  On a
    read-only workspace, or while another connection holds the write lock
    (an import), the vectors are returned without being cached.

    Returns
    -------
    (vectors, stats)
        ``vectors`` has shape ``(len(texts), encoder.dim)`` in input order.
    """
    t0 = time.perf_counter()
    dim = int(encoder.dim)
    hashes = [text_hash(t) for t in texts]
    first: dict[str, int] = {}  # distinct text -> its first row; vectors go straight into ``out``
    for row, h in enumerate(hashes):
        first.setdefault(h, row)
    out = text_matrix.empty(len(texts), dim)  # float16 for large catalogues (see text_matrix)
    have = _fill_from_cache(db, encoder.encoder_id, dim, first, out)
    missing = [h for h in first if h not in have]
    stats = VectorStats(texts=len(first), cached=len(first) - len(missing))

    clock, throttle = EtaClock(), Throttle(0.1)
    total = len(first)

    def report(done_missing: int, final: bool = False) -> None:
        if progress is None or not (final or throttle.ready()):
            return
        done = stats.cached + done_missing
        rate = done_missing / max(clock.elapsed(), 1e-9)
        progress(
            Progress(
                done,
                total,
                f"encoded {done_missing}/{len(missing)} new texts ({stats.cached} cached)",
                clock.eta(done_missing, len(missing)) if missing else 0.0,
                data={"encoded": done_missing, "cached": stats.cached, "texts_per_s": rate},
            )
        )

    report(0)
    writable = True
    for start in range(0, len(missing), CHUNK_TEXTS):
        if cancel is not None:
            cancel.check()
        chunk = missing[start : start + CHUNK_TEXTS]

        def chunk_progress(p: Progress, _start=start) -> None:
            report(_start + int(p.done))

        vecs = encoder.encode(
            [texts[first[h]] for h in chunk], batch_size=batch_size, progress=chunk_progress, cancel=cancel
        )
        vecs = np.asarray(vecs, dtype=np.float32)
        if vecs.shape != (len(chunk), dim):
            raise ValueError(f"encoder {encoder.encoder_id} returned shape {vecs.shape}, expected ({len(chunk)}, {dim})")
        if cancel is not None:
            cancel.check()  # cancelled during the last batch: drop the unfinished chunk
        if writable:
            try:
                _write_cache(db, encoder.encoder_id, dim, chunk, vecs)
            except sqlite3.OperationalError as exc:
                text = str(exc).replace(" ", "").lower()
                if "readonly" not in text and "locked" not in text:
                    raise
                writable = False  # read-only workspace or another job writing: vectors are still returned
        out[[first[h] for h in chunk]] = vecs
        stats.encoded += len(chunk)
    report(len(missing), final=True)
    for row, h in enumerate(hashes):
        if first[h] != row:  # repeated text
            out[row] = out[first[h]]
    stats.seconds = time.perf_counter() - t0
    return out, stats


def encode_items(
    db,
    encoder,
    template: str = DEFAULT_TEMPLATE,
    *,
    batch_size: int = 64,
    progress=None,
    cancel=None,
) -> ItemVectors:
    """Encode the whole catalogue (through the cache) and keep the run's statistics."""
    ids, texts = item_texts(db, template)
    vectors, stats = encode_texts_cached(
        db, encoder, texts, batch_size=batch_size, progress=progress, cancel=cancel
    )
    return ItemVectors(np.array(ids, dtype=object), vectors, stats, encoder.encoder_id)


def item_text_vectors(
    db,
    encoder,
    template: str = DEFAULT_TEMPLATE,
    progress=None,
    cancel=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Item ids and text vectors t_i for the whole catalogue.

    Parameters
    ----------
    db
        Open workspace of the calling thread.
    encoder
        Any :class:`~merch_app.model.bundle.Encoder`.
    template
        Item text template over ``TEMPLATE_FIELDS``.

    Returns
    -------
    (item_ids, vectors)
        Object array of ids in ``item_id`` order and a ``(n_items, dim)``
        array of unit-norm rows (float16 from 100k items, see :mod:`~merch_app.model.text_matrix`).
        Use :func:`encode_items` for the
        encoded/cached counts.
    """
    result = encode_items(db, encoder, template, progress=progress, cancel=cancel)
    return result.item_ids, result.vectors


def cache_size(db, encoder_id: Optional[str] = None) -> int:
    """Number of cached vectors (for one encoder, or all)."""
    if encoder_id is None:
        return db.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    return db.execute("SELECT count(*) FROM embeddings WHERE encoder_id = ?", [encoder_id]).fetchone()[0]


def cached_vectors(db, encoder_id: str, dim: int, hashes: list[str]) -> dict[str, np.ndarray]:
    """Cached vectors of ``encoder_id`` for the text hashes found in the cache.

    The lookup that :func:`encode_texts_cached` does, for engines that encode
    elsewhere (e.g. on a Ray cluster) and share this workspace's cache.
    """
    return _lookup_cache(db, encoder_id, int(dim), list(hashes))


def store_vectors(db, encoder_id: str, dim: int, hashes: list[str], vectors: np.ndarray) -> bool:
    """Write vectors to the cache in one transaction; False on a read-only workspace."""
    try:
        _write_cache(db, encoder_id, int(dim), list(hashes), vectors)
    except sqlite3.OperationalError as exc:
        if "readonly" not in str(exc).replace(" ", "").lower():
            raise
        return False
    return True

"""Encoding the catalogue on Ray Data, into the same workspace embedding cache.

The driver renders the item texts, looks them up in the workspace cache
(table ``embeddings``) and sends only the missing distinct texts to Ray Data:
blocks of texts are streamed through ``map_batches`` to a pool of actors, each
of which loads the encoder once (:class:`EncodeActor`).  Vectors stream back
in batches and are written to the cache in chunks of
:data:`~merch_app.model.item_vectors.CHUNK_TEXTS`, one short transaction each,
exactly like local encoding: a cancel keeps the finished chunks, and local and
Ray vectors are interchangeable (same ``encoder_id``, same cache keys).

Ray is imported only inside the functions here, never by the local engine.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Optional, Union

import numpy as np
import torch

from merch_app.engines.ray_runtime import RayJobFailed, cluster_cpus, ray_errors, ray_session
from merch_app.jobs import CancelToken, EtaClock, Progress, ProgressCallback, Throttle
from merch_app.model import text_matrix
from merch_app.model.encoder import load_encoder
from merch_app.model.hashing_encoder import HashingEncoder
from merch_app.model.bert_encoder import BertEncoder, default_model_dir
from merch_app.model.item_vectors import (
    CHUNK_TEXTS, DEFAULT_TEMPLATE, ItemVectors, VectorStats, cached_vectors, item_texts, store_vectors,
    text_hash,
)

# Texts per Ray batch handed to one actor call; the encoder sorts them by
# length and runs them in its own batches of ``batch_size``.
TEXTS_PER_CALL = 512


def encoder_spec(encoder) -> tuple[str, Optional[str]]:
    """(spec, quantize) that :func:`~merch_app.model.encoder.load_encoder` turns back into ``encoder``.

    Actors rebuild the encoder from this spec instead of receiving the loaded
    object, so nothing but a short string travels to the cluster.
    """
    if isinstance(encoder, HashingEncoder):
        return f"hashing:{encoder.dim}", None
    if isinstance(encoder, BertEncoder):
        try:
            is_default = encoder.model_dir == default_model_dir().resolve()
        except Exception:  # the default package missing: it cannot be the default either
            is_default = False
        return ("minilm" if is_default else str(encoder.model_dir)), encoder.quantize
    raise TypeError(f"the ray engine cannot rebuild encoder {encoder!r} on its workers; pass a spec")


class EncodeActor:
    """Ray Data callable class: loads the encoder once per actor, encodes batches of texts.

    Parameters
    ----------
    spec, quantize
        Encoder spec as for :func:`~merch_app.model.encoder.load_encoder`.
    encoder_id
        The id the driver expects; a node with other weights fails loudly
        instead of mixing vectors in the cache.
    batch_size
        Encoder batch size inside one call.
    threads
        torch threads of this actor (its CPU share).
    """

    def __init__(self, spec: str, quantize: Optional[str], encoder_id: str, batch_size: int,
                 threads: int = 1) -> None:
        torch.set_num_threads(max(1, int(threads)))
        self.encoder = load_encoder(spec, quantize=quantize)
        if self.encoder.encoder_id != encoder_id:
            raise RuntimeError(f"worker encoder {self.encoder.encoder_id!r} differs from the driver's "
                               f"{encoder_id!r}: install the same model files on every node")
        self.batch_size = int(batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vectors = self.encoder.encode(texts, batch_size=self.batch_size)
        return {"key": np.asarray(batch["key"]), "vector": np.asarray(vectors, dtype=np.float32)}


def _text_blocks(keys: list[str], texts: list[str], workers: int):
    """Arrow tables (one Ray Data block each) sized so every actor gets several blocks."""
    import pyarrow as pa  # comes with the optional ray[data] extra

    n = len(keys)
    per_block = max(1, min(4 * TEXTS_PER_CALL, math.ceil(n / max(1, 4 * workers))))
    return [pa.table({"key": keys[lo:lo + per_block], "text": texts[lo:lo + per_block]})
            for lo in range(0, n, per_block)]


def encode_texts_ray(db, encoder_spec_: str, texts: list[str], *, quantize: Optional[str] = None,
                     batch_size: int = 64, workers: int = 2, address: Optional[str] = None,
                     num_cpus: Optional[int] = None, progress: Optional[ProgressCallback] = None,
                     cancel: Optional[CancelToken] = None) -> tuple[np.ndarray, VectorStats, str]:
    """Encode ``texts`` through the workspace cache, running the missing ones on Ray Data.

    Parameters
    ----------
    db
        Open workspace of the calling thread (cache reads and writes happen here).
    encoder_spec_
        ``minilm``, ``hashing[:dim]`` or a local BERT folder (present on every node).
    workers
        Actors in the pool (each loads the encoder once and uses one CPU).
    address
        Ray cluster address; None starts Ray on this machine with ``num_cpus``.

    Returns
    -------
    (vectors, stats, encoder_id)
        ``vectors`` has shape ``(len(texts), dim)`` in input order.
    """
    t0 = time.perf_counter()
    # The driver loads the encoder too: its id and dim key the cache (and it is
    # the same object local encoding would use, cached per process).
    encoder = load_encoder(encoder_spec_, quantize=quantize)
    dim, encoder_id = int(encoder.dim), encoder.encoder_id
    hashes = [text_hash(t) for t in texts]
    unique: dict[str, str] = {}
    for h, t in zip(hashes, texts):
        unique.setdefault(h, t)
    found = cached_vectors(db, encoder_id, dim, list(unique))
    missing = [h for h in unique if h not in found]
    stats = VectorStats(texts=len(unique), cached=len(unique) - len(missing))
    if missing:
        with ray_errors("encoding"):
            _encode_missing(db, encoder_spec_, quantize, encoder_id, dim, missing, unique, found, stats,
                            batch_size=batch_size, workers=workers, address=address, num_cpus=num_cpus,
                            progress=progress, cancel=cancel)
    elif progress is not None:
        progress(Progress(len(unique), len(unique), f"all {len(unique)} texts cached", 0.0,
                          data={"encoded": 0, "cached": stats.cached, "texts_per_s": 0.0}))
    out = text_matrix.empty(len(texts), dim)
    for row, h in enumerate(hashes):
        out[row] = found[h]
    stats.seconds = time.perf_counter() - t0
    return out, stats, encoder_id


def _encode_missing(db, spec, quantize, encoder_id, dim, missing, unique, found, stats, *, batch_size,
                    workers, address, num_cpus, progress, cancel) -> None:
    """Run the Ray Data pipeline over ``missing`` hashes, filling ``found`` and the cache."""
    total = len(unique)
    clock, throttle = EtaClock(), Throttle(0.1)
    with ray_session(address, num_cpus) as ray:
        import ray.data  # Ray is an optional extra

        workers = max(1, min(int(workers), cluster_cpus(ray)))
        blocks = _text_blocks(missing, [unique[h] for h in missing], workers)
        with warnings.catch_warnings():
            # max_restarts=0 goes through the deprecated **ray_remote_args; without it every
            # actor logs an error about restarts (a failed actor is an error to report anyway).
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ray.data.from_arrow(blocks).map_batches(
                EncodeActor,
                fn_constructor_kwargs={"spec": spec, "quantize": quantize, "encoder_id": encoder_id,
                                       "batch_size": batch_size},
                batch_size=TEXTS_PER_CALL,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=1,
                max_restarts=0,
            )
        pending_keys: list[str] = []
        pending_vecs: list[np.ndarray] = []
        writable, done = True, 0

        def flush() -> None:
            nonlocal writable
            if not pending_keys:
                return
            vecs = np.concatenate(pending_vecs)
            if writable:
                writable = store_vectors(db, encoder_id, dim, pending_keys, vecs)
            found.update(zip(pending_keys, vecs))
            stats.encoded += len(pending_keys)
            pending_keys.clear()
            pending_vecs.clear()

        batches = ds.iter_batches(batch_size=None, batch_format="numpy")
        try:
            for batch in batches:
                if cancel is not None:
                    cancel.check()
                vecs = np.asarray(batch["vector"], dtype=np.float32).reshape(-1, dim)
                pending_keys.extend(str(k) for k in batch["key"])
                pending_vecs.append(vecs)
                done += len(vecs)
                if len(pending_keys) >= CHUNK_TEXTS:
                    flush()
                if progress is not None and (throttle.ready() or done == len(missing)):
                    rate = done / max(clock.elapsed(), 1e-9)
                    progress(Progress(stats.cached + done, total,
                                      f"encoded {done}/{len(missing)} new texts on Ray ({stats.cached} cached)",
                                      clock.eta(done, len(missing)),
                                      data={"encoded": done, "cached": stats.cached, "texts_per_s": rate,
                                            "workers": workers, "engine": "ray"}))
            if cancel is not None:
                cancel.check()  # cancelled on the last batch: drop the unfinished chunk
            flush()
        finally:
            del batches  # stops the streaming execution when leaving early
    if stats.encoded != len(missing):
        raise RayJobFailed(f"Ray returned {stats.encoded} vectors for {len(missing)} texts")


def encode_items_ray(db, encoder: Union[str, object] = "minilm", template: str = DEFAULT_TEMPLATE, *,
                     quantize: Optional[str] = None, batch_size: int = 64, workers: int = 2,
                     address: Optional[str] = None, num_cpus: Optional[int] = None,
                     progress: Optional[ProgressCallback] = None,
                     cancel: Optional[CancelToken] = None) -> ItemVectors:
    """Encode the whole catalogue on Ray Data (through the workspace cache).

    Parameters
    ----------
    encoder
        An encoder spec (``minilm``, ``hashing:64``, a folder) or a loaded
        ``BertEncoder`` / ``HashingEncoder`` (its spec is sent to the actors).
    template
        Item text template, as for local encoding.

    Returns
    -------
    ItemVectors
        Same content as :func:`merch_app.model.item_vectors.encode_items`.
    """
    if not isinstance(encoder, str):
        encoder, quantize = encoder_spec(encoder)
    ids, texts = item_texts(db, template)
    vectors, stats, encoder_id = encode_texts_ray(
        db, encoder, texts, quantize=quantize, batch_size=batch_size, workers=workers, address=address,
        num_cpus=num_cpus, progress=progress, cancel=cancel)
    return ItemVectors(np.array(ids, dtype=object), vectors, stats, encoder_id)

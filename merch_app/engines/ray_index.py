"""Building an IVF index (IVF-PQ by default) on Ray and shipping it to the app.

The index is the one the app would build itself (:func:`untrained_index`:
same list count for ``n`` vectors, same PQ layout, same ``nprobe``), made in
three steps:

1. one Ray task trains the coarse quantiser (and PQ codebooks) on the usual
   training sample (:func:`training_sample`, at most 40 vectors per list);
2. the trained empty index goes to the object store once; one task per shard
   of rows adds its vectors with their global row numbers as ids;
3. the driver merges the shards (``merge_from``) into one index.

:func:`ship_index` writes it into a registered model version's folder as
``index.faiss`` (checksummed, atomic), where the app's ``load_bundle`` finds it.
"""
from __future__ import annotations

from typing import Optional

import faiss
import numpy as np

from merch_app.engines.errors import EngineError
from merch_app.engines.ray_runtime import ray_errors, ray_session
from merch_app.jobs import CancelToken, EtaClock, Progress, ProgressCallback
from merch_app.model.vector_index import VectorIndex, training_sample, untrained_index

IVF_KINDS = ("ivf", "ivfsq8", "ivfpq")
DEFAULT_SHARD_ROWS = 250_000


def _serialise(index) -> np.ndarray:
    return faiss.serialize_index(index)


def _deserialise(data: np.ndarray):
    return faiss.deserialize_index(np.asarray(data, dtype=np.uint8))


def _train(empty: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """Ray task: train the empty index on ``sample``; returns it serialised."""
    index = _deserialise(empty)
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return _serialise(index)


def _fill(trained: np.ndarray, vectors: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Ray task: add rows ``lo:hi`` (ids = row numbers) to a copy of the trained index."""
    index = _deserialise(trained)
    index.add_with_ids(np.ascontiguousarray(vectors[lo:hi], dtype=np.float32), np.arange(lo, hi, dtype=np.int64))
    return _serialise(index)


def build_index_on_ray(vectors: np.ndarray, kind: str = "ivfpq", *, shard_rows: int = DEFAULT_SHARD_ROWS,
                       address: Optional[str] = None, num_cpus: Optional[int] = None,
                       progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None):
    """Build a :class:`~merch_app.model.vector_index.VectorIndex` of ``kind`` over ``vectors`` on Ray.

    Parameters
    ----------
    vectors
        ``(n, dim)`` unit-norm float32 rows; row ``i`` is item ``i`` of the model.
    kind
        ``ivfpq`` (default), ``ivfsq8`` or ``ivf``.
    shard_rows
        Vectors per filling task.

    Returns
    -------
    VectorIndex
        Searchable like an index the app built; rows are addressed 0..n-1.

    Raises
    ------
    EngineError
        Not an IVF kind, or too few vectors to train one.
    Cancelled
        ``cancel`` was set (between shards).
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise EngineError(f"expected a non-empty (n, dim) array of vectors, got shape {x.shape}")
    if kind not in IVF_KINDS:
        raise EngineError(f"only IVF indexes are built on Ray ({', '.join(IVF_KINDS)}), not {kind!r}")
    empty, kind, nlist = untrained_index(len(x), x.shape[1], kind)
    if kind not in IVF_KINDS:
        raise EngineError(f"{len(x)} vectors are too few for an IVF index; the app builds a flat one")
    clock = EtaClock()
    shards = [(lo, min(lo + max(1, int(shard_rows)), len(x))) for lo in range(0, len(x), max(1, int(shard_rows)))]
    with ray_session(address, num_cpus) as ray, ray_errors("building the vector index"):
        train_task, fill_task = ray.remote(num_cpus=1)(_train), ray.remote(num_cpus=1)(_fill)
        trained = train_task.remote(_serialise(empty), training_sample(x, nlist))
        x_ref = ray.put(x)
        pending = {fill_task.remote(trained, x_ref, lo, hi): hi - lo for lo, hi in shards}
        merged, done = _deserialise(ray.get(trained)), 0
        while pending:
            if cancel is not None and cancel.cancelled:
                for ref in pending:
                    ray.cancel(ref)
                cancel.check()
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                merged.merge_from(_deserialise(ray.get(ref)), 0)
                done += pending.pop(ref)
                if progress is not None:
                    progress(Progress(done, len(x), f"indexed {done}/{len(x)} vectors on Ray",
                                      clock.eta(done, len(x)), data={"phase": "index", "kind": kind}))
    if merged.ntotal != len(x):
        raise EngineError(f"the merged index holds {merged.ntotal} vectors, expected {len(x)}")
    return VectorIndex().adopt(merged, kind)


def ship_index(db, model_id: str, index) -> str:
    """Write ``index`` as ``index.faiss`` of a registered version (replacing the app-built one).

    Returns the file's path. The row count must match the model's items.
    """
    # on the driver only: the registry loads torch, +1 s and +180 MB in each Ray worker running _train/_fill
    from merch_app.model.registry import INDEX_FILE, get_version, load_model, version_folder

    version = get_version(db, model_id)
    n_items = load_model(db, model_id).n_items
    if index.ntotal != n_items:
        raise EngineError(f"index has {index.ntotal} vectors but model {model_id!r} has {n_items} items")
    return str(index.save(version_folder(db, version) / INDEX_FILE))


__all__ = ["build_index_on_ray", "ship_index"]

"""Nearest-neighbour search over unit-norm text vectors (FAISS, inner product).

Kinds
-----
``flat``   exact IndexFlatIP; the default below ``threshold`` items (50k).
``ivf``    IVF-Flat with nlist ~ sqrt(n) and nprobe = max(32, nlist/16):
           trains in seconds (k-means on a sample), keeps exact vectors and
           supports id-filtered search.  HNSW builds much slower on 2 cores
           and uses ~2x the memory for its graph.
``ivfsq8`` IVF over 8-bit scalar-quantised vectors, the ``auto`` choice from
           the threshold on: a quarter of the memory (384 bytes per 384-d item
           instead of 1,536; 1M items: 0.4 GB instead of 1.5 GB) and the same
           candidates — the exact top 10 is in its top 300 for 99.8-100% of
           queries at 100k and 1M items, and the ranker scores candidates with
           the exact vectors (docs/benchmarks.md, index and int8 sections).  A
           flat scan of 100k vectors already takes ~40 ms on two busy cores.
``hnsw``   HNSW32 (efSearch 128); fastest queries once built.
``ivfpq``  IVF (4*sqrt(n) lists) + product quantisation (d/8 sub-vectors, 8 bits): smallest.
``sq8``    exhaustive scan over 8-bit scalar-quantised vectors (4x smaller).

File format: an 8-byte magic, the payload length and its SHA-256, then the
FAISS serialisation; written to a temp file and renamed, so a crash never
leaves a half-written index and a damaged file is detected before FAISS reads it.
"""
from __future__ import annotations

import hashlib
import math
import os
import struct
import tempfile
from pathlib import Path
from typing import Optional, Union

import numpy as np

from merch_app.errors import MerchAppError

KINDS = ("auto", "flat", "ivf", "ivfsq8", "hnsw", "ivfpq", "sq8")
_IVF_KINDS = ("ivf", "ivfsq8", "ivfpq")
DEFAULT_THRESHOLD = 50_000
# Filtered search on approximate kinds: subsets up to this size are scored
# exactly with numpy (HNSW/IVF filtering can miss results in tiny subsets).
EXACT_SUBSET_MAX = 50_000
_MAGIC = b"MAVIDX01"
_HEADER = struct.Struct("<8sQ32s")


class VectorIndexError(MerchAppError):
    """An index file is missing or damaged, or a search is malformed."""


class _HybridMethod:
    """``VectorIndex.load(p)`` returns a new index; ``idx.load(p)`` loads into ``idx``."""

    def __init__(self, func) -> None:
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj, cls):
        def bound(*args, **kwargs):
            return self.func(cls, obj, *args, **kwargs)

        bound.__doc__ = self.func.__doc__
        return bound


def _faiss():
    # imported on first use: faiss adds 0.14-0.23 s to the registry's and the GUI's start-up, which never search
    import faiss

    return faiss


def _as_matrix(x, name: str, keep_half: bool = False) -> np.ndarray:
    x = np.asarray(x)
    if not (keep_half and x.dtype == np.float16):  # float16 catalogue matrices are widened per block
        x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise VectorIndexError(f"{name} must be a 2-d array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise VectorIndexError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(x)


def _kind_of(index) -> str:
    faiss = _faiss()
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivfpq"
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return "ivfsq8"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    if isinstance(index, faiss.IndexScalarQuantizer):
        return "sq8"
    return "flat"


_ADD_ROWS = 65_536  # rows widened to float32 and added at once (a float16 matrix stays half size)


def _training_sample(x: np.ndarray, nlist: int) -> np.ndarray:
    """At most 40 points per list (fixed seed): k-means on all of 1M rows is slow."""
    cap = 40 * nlist
    if len(x) <= cap:
        return x
    rows = np.sort(np.random.default_rng(0).choice(len(x), cap, replace=False))
    return np.ascontiguousarray(x[rows], dtype=np.float32)


def untrained_index(n: int, dim: int, kind: str = "auto", threshold: int = DEFAULT_THRESHOLD):
    """The empty FAISS index :meth:`VectorIndex.build` uses for ``n`` vectors of ``dim``; (index, kind, nlist).

    IVF kinds still need ``index.train`` (on :func:`training_sample`); their
    list count follows ``n``, so an index trained here and filled elsewhere
    (e.g. in shards on a Ray cluster) is the one the app would build.
    """
    faiss = _faiss()
    if kind not in KINDS:
        raise VectorIndexError(f"unknown index kind {kind!r}; use one of {', '.join(KINDS)}")
    if dim == 0:
        raise VectorIndexError("vectors have zero dimensions")
    if kind == "auto":
        kind = "flat" if n < threshold else "ivfsq8"
    # IVF-Flat/SQ8: sqrt(n) lists; at 1M items k-means trains in ~10 s (4*sqrt(n): ~75 s) at the same
    # recall.  PQ codes residuals to the list centre, so IVF-PQ keeps 4*sqrt(n) smaller lists.
    per = 4.0 if kind == "ivfpq" else 1.0
    nlist = max(1, min(int(round(per * math.sqrt(n))), n // 39))
    if n == 0 or kind == "flat":
        kind = "flat"
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
    elif kind == "sq8":
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    else:
        # k-means wants >= 39 points per centroid, so small catalogues get fewer lists.
        if kind == "ivf":
            spec = f"IVF{nlist},Flat"
        elif kind == "ivfsq8":
            spec = f"IVF{nlist},SQ8"
        else:
            m = next(m for m in (dim // 8, dim // 4, dim // 2, dim, 1) if m >= 1 and dim % m == 0)
            nbits = 8 if n >= 256 * 39 else max(1, min(8, int(math.log2(max(n // 39, 2)))))
            spec = f"IVF{nlist},PQ{m}x{nbits}"
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
        if kind == "ivfpq":
            index.do_polysemous_training = False  # only helps Hamming filtering; 4x slower training
        faiss.extract_index_ivf(index).nprobe = min(nlist, max(32, nlist // 16))
    return index, kind, nlist


def training_sample(x: np.ndarray, nlist: int) -> np.ndarray:
    """The rows IVF training uses (at most 40 per list, fixed seed)."""
    return _training_sample(x, nlist)


class VectorIndex:
    """Inner-product (cosine on unit vectors) index over item vectors.

    Rows are addressed by their position ``0..n-1`` in the built array.
    """

    def __init__(self) -> None:
        self.index = None
        self.kind: Optional[str] = None

    # -- building ---------------------------------------------------------
    @classmethod
    def from_vectors(cls, vectors, kind: str = "auto", threshold: int = DEFAULT_THRESHOLD) -> "VectorIndex":
        """Shortcut for ``VectorIndex().build(vectors, kind, threshold)``."""
        return cls().build(vectors, kind=kind, threshold=threshold)

    def build(self, vectors, kind: str = "auto", threshold: int = DEFAULT_THRESHOLD) -> "VectorIndex":
        """Index ``vectors`` (n, dim) float32; returns ``self``.

        Parameters
        ----------
        kind
            One of :data:`KINDS`; ``auto`` = ``flat`` for ``n < threshold``,
            else ``ivf`` (see the module docstring for why).
        """
        x = _as_matrix(vectors, "vectors", keep_half=True)
        n = x.shape[0]
        index, kind, nlist = untrained_index(n, x.shape[1], kind, threshold)
        if n and not index.is_trained:
            index.train(_training_sample(x, nlist))
        for lo in range(0, n, _ADD_ROWS):
            index.add(np.ascontiguousarray(x[lo:lo + _ADD_ROWS], dtype=np.float32))
        self.index, self.kind = index, kind
        return self

    def adopt(self, index, kind: Optional[str] = None) -> "VectorIndex":
        """Use a FAISS index built elsewhere (e.g. on a Ray cluster) as this index's contents."""
        self.index, self.kind = index, kind or _kind_of(index)
        return self

    # -- querying ---------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return 0 if self.index is None else int(self.index.d)

    def __len__(self) -> int:
        return self.ntotal

    def search(self, queries, k: int, subset: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows by inner product for each query.

        Parameters
        ----------
        queries
            ``(m, dim)`` (or ``(dim,)``) float32.
        k
            Results per query; missing slots have index -1 and score -inf.
        subset
            Optional row numbers allowed in the result (filters).

        Returns
        -------
        (scores, idx)
            Both ``(m, k)``: float32 scores (descending) and int64 row numbers.
        """
        if self.index is None:
            raise VectorIndexError("the vector index is not built or loaded")
        q = _as_matrix(queries, "queries")
        if q.shape[1] != self.dim:
            raise VectorIndexError(f"queries are {q.shape[1]}-d but the index holds {self.dim}-d vectors")
        k = int(k)
        m = q.shape[0]
        scores = np.full((m, max(k, 0)), -np.inf, dtype=np.float32)
        idx = np.full((m, max(k, 0)), -1, dtype=np.int64)
        if k <= 0 or m == 0 or self.ntotal == 0:
            return scores, idx
        if subset is not None:
            allowed = np.unique(np.asarray(subset, dtype=np.int64).reshape(-1))
            allowed = allowed[(allowed >= 0) & (allowed < self.ntotal)]
            if len(allowed) == 0:
                return scores, idx
            if self.kind != "flat" and len(allowed) <= EXACT_SUBSET_MAX:
                return self._exact_subset(q, k, allowed, scores, idx)
            s, i = self._faiss_search(q, min(k, len(allowed)), allowed)
        else:
            s, i = self._faiss_search(q, min(k, self.ntotal), None)
        found = i >= 0
        scores[:, : s.shape[1]] = np.where(found, s, -np.inf)
        idx[:, : i.shape[1]] = i
        return scores, idx

    def _faiss_search(self, q: np.ndarray, k: int, allowed: Optional[np.ndarray]):
        faiss = _faiss()
        if allowed is None:
            return self.index.search(q, k)
        sel = faiss.IDSelectorBatch(allowed)
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(128, 2 * k))
        elif self.kind in _IVF_KINDS:
            ivf = faiss.extract_index_ivf(self.index)
            params = faiss.SearchParametersIVF(sel=sel, nprobe=ivf.nprobe)
        else:
            params = faiss.SearchParameters(sel=sel)
        return self.index.search(q, k, params=params)

    def _exact_subset(self, q, k, allowed, scores, idx):
        vecs = self._reconstruct(allowed)
        sims = q @ vecs.T
        kk = min(k, len(allowed))
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        top_s = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_s, axis=1, kind="stable")
        scores[:, :kk] = np.take_along_axis(top_s, order, axis=1)
        idx[:, :kk] = allowed[np.take_along_axis(top, order, axis=1)]
        return scores, idx

    def _reconstruct(self, rows: np.ndarray) -> np.ndarray:
        faiss = _faiss()
        if self.kind in _IVF_KINDS:
            ivf = faiss.extract_index_ivf(self.index)
            if not ivf.direct_map.type:  # NoMap
                ivf.make_direct_map()
        return self.index.reconstruct_batch(rows)

    # -- persistence ------------------------------------------------------
    def save(self, path: Union[str, Path]) -> Path:
        """Write the index atomically (temp file in the same folder, fsync, rename)."""
        if self.index is None:
            raise VectorIndexError("nothing to save: the vector index is not built")
        faiss = _faiss()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                # streamed through the checksum into the file: serialising to bytes first held
                # the index three times (0.4 GB each at 1M items)
                f.write(_HEADER.pack(_MAGIC, 0, bytes(32)))
                digest, length = hashlib.sha256(), [0]

                def write(block: bytes) -> int:
                    digest.update(block)
                    length[0] += len(block)
                    return f.write(block)

                faiss.write_index(self.index, faiss.PyCallbackIOWriter(write))
                f.seek(0)
                f.write(_HEADER.pack(_MAGIC, length[0], digest.digest()))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return path

    @_HybridMethod
    def load(cls, self, path: Union[str, Path]) -> "VectorIndex":
        """Read an index written by :meth:`save` (or a plain FAISS file).

        ``VectorIndex.load(path)`` returns a new index; ``index.load(path)``
        replaces the contents of ``index`` and returns it.

        Raises
        ------
        VectorIndexError
            The file is missing, truncated or damaged.
        """
        target = cls() if self is None else self
        path = Path(path)
        try:
            with open(path, "rb") as f:
                index = _read_checked(f, path)
        except FileNotFoundError:
            raise VectorIndexError(f"{path}: vector index file does not exist") from None
        except OSError as exc:
            raise VectorIndexError(f"{path}: cannot read vector index ({exc})") from exc
        target.index, target.kind = index, _kind_of(index)
        return target

    def __repr__(self) -> str:
        return f"VectorIndex(kind={self.kind!r}, ntotal={self.ntotal}, dim={self.dim})"


def _read_checked(f, path: Path):
    """Verify the checksum in a first pass, then let FAISS read straight from the file.

    Streaming keeps one copy of the index in memory (reading the file into
    bytes first held three at load: 0.4 GB each for 1M items).
    """
    head = f.read(_HEADER.size)
    if head[:8] != _MAGIC:  # a plain FAISS file
        f.seek(0)
        return _deserialize(f, path)
    if len(head) < _HEADER.size:
        raise VectorIndexError(f"{path}: vector index file is truncated")
    _, length, digest = _HEADER.unpack_from(head)
    h, seen = hashlib.sha256(), 0
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
        seen += len(block)
    if seen != length:
        raise VectorIndexError(f"{path}: vector index file is truncated ({seen} of {length} bytes)")
    if h.digest() != digest:
        raise VectorIndexError(f"{path}: vector index file is damaged (checksum mismatch)")
    f.seek(_HEADER.size)
    return _deserialize(f, path)


def _deserialize(f, path: Path):
    faiss = _faiss()
    try:
        return faiss.read_index(faiss.PyCallbackIOReader(f.read))
    except Exception as exc:  # faiss raises RuntimeError with a C++ trace
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VectorIndexError(f"{path}: not a readable vector index ({first[:200]})") from exc

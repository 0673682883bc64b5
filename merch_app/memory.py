"""Give freed heap memory back to the operating system between the phases of a large job.

glibc keeps memory freed by small and medium allocations (a million Python
strings, 50k-row blocks) in its heap for reuse; after the encode and
user-vector phases of a 1M-item training that was ~0.5 GB of resident memory
the later phases did not reuse.  ``malloc_trim(0)`` returns it.  No-op where
glibc is not the allocator.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

@functools.cache
def _libc():
    """glibc through ctypes (None off Linux or when it cannot be loaded); looked up once."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def trim_heap() -> bool:
    """Return free heap pages to the OS (glibc ``malloc_trim``); True if memory was released.

    The call runs without the GIL (ctypes releases it), so a GUI thread keeps
    running while a worker trims.
    """
    fn = getattr(_libc(), "malloc_trim", None)
    return bool(fn(ctypes.c_size_t(0))) if fn is not None else False


_M_MMAP_THRESHOLD = -3  # mallopt parameter (glibc malloc.h)
MMAP_THRESHOLD = 128 * 1024


def configure_allocator() -> bool:
    """Serve every allocation of 128 KiB or more from its own memory map (glibc); True if set.

    glibc raises this threshold each time such a block is freed (up to 32 MiB),
    after which numpy arrays of a few MiB come from the heap and freed ones
    stay resident between them: at 1M items / 10M events training held
    ~1 GB more than it used.  A fixed threshold returns every large array to
    the OS when it is freed.  Called once at start-up by the entry points.
    """
    fn = getattr(_libc(), "mallopt", None)
    return bool(fn(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(MMAP_THRESHOLD))) if fn is not None else False


def one_blas_thread():
    """Context manager: numpy's OpenBLAS on one thread inside the block (torch keeps its threads).

    Tall, thin products (the combiner's Newton sums: 64k rows x 17 columns)
    on OpenBLAS's two threads spun against the job's other threads on a
    2-core machine: ``fit_logistic`` on 200k rows took 13-25 s instead of
    0.15 s.
    """
    # imported on first use: every `merch-app` start imports this module, and threadpoolctl adds ~4 ms (of ~45)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(internal_api="openblas").limit(limits=1)

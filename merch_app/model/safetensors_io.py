"""Read safetensors files with plain reads, one tensor at a time.

``safetensors.numpy.load_file`` memory-maps the file and copies every tensor
out of the map: while it runs the process holds the file twice (mapped pages
count in the resident set), 4.9 GB peak for a 2.4 GB model at 1M items.
Reading each tensor straight into its array holds it once; likewise
:func:`write_arrays` writes each array's buffer straight to the file
(``save_file`` builds a bytes copy of every tensor first).  The format is
small: an 8-byte little-endian header length, a JSON header of
``{name: {"dtype", "shape", "data_offsets": [begin, end]}}`` (padded with
spaces to a multiple of 8) and the data.

Checksums: :func:`write_arrays` records the sha256 of every tensor's bytes in the header's
``__metadata__`` (``"sha256:<name>": hex``, strings as the format wants; other readers ignore
them); :func:`read_arrays_checked` verifies each tensor right after reading it.  A file
without them (written by an older merch_app or another program) still reads, unverified.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Union

import numpy as np

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
           "BOOL": np.bool_}
_MAX_HEADER = 100 * 2**20
_SHA = "sha256:"  # metadata key prefix of a tensor's checksum
_HASH_APART = 4 << 20  # tensors this large are hashed in a second thread while the next one is read


def _sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).reshape(-1).view(np.uint8)).hexdigest()


def read_arrays(path: Union[str, Path]) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as numpy arrays (checksums verified when the file has them).

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        The file is truncated, damaged (checksum mismatch) or not a valid safetensors file (message says what).
    """
    return read_arrays_checked(path)[0]


def read_arrays_checked(path: Union[str, Path]) -> tuple[dict[str, np.ndarray], bool]:
    """``(arrays, verified)``: as :func:`read_arrays`; ``verified`` says whether every tensor had a checksum.

    Raises
    ------
    OSError, ValueError
        As :func:`read_arrays`; a tensor whose bytes do not match its recorded checksum is a ValueError.
    """
    arrays, verify = read_arrays_deferred(path)
    return arrays, verify()


def read_arrays_deferred(path: Union[str, Path]) -> tuple[dict[str, np.ndarray], Callable[[], bool]]:
    """``(arrays, verify)``: the tensors, and a function that waits for their checksums.

    Large tensors are hashed in a second thread while the next ones are read, and go on being
    hashed after this returns, so the caller can work on the arrays meanwhile (the model derives
    its vectors); it must call ``verify()`` before trusting them: it returns whether every tensor
    had a checksum and raises ValueError for one whose bytes do not match.

    Raises
    ------
    OSError, ValueError
        As :func:`read_arrays` (everything but the checksums of the large tensors).
    """
    size = os.path.getsize(path)
    hasher = ThreadPoolExecutor(1)  # its thread starts at the first submit
    try:
        with open(path, "rb") as f:
            out, sums, pending = _read_tensors(f, size, hasher)
    except BaseException:
        hasher.shutdown(wait=False, cancel_futures=True)
        raise

    def verify() -> bool:
        try:
            for name, digest in pending:
                if (digest if isinstance(digest, str) else digest.result()) != sums[name]:
                    raise ValueError(f"tensor {name!r} is damaged (checksum mismatch)")
        finally:
            hasher.shutdown(wait=False, cancel_futures=True)
        return bool(sums)

    return out, verify


def _read_tensors(f, size: int, hasher: ThreadPoolExecutor) -> tuple[dict, dict, list]:
    raw = f.read(8)
    if len(raw) < 8:
        raise ValueError("file is truncated (no header)")
    n = struct.unpack("<Q", raw)[0]
    if n > min(size - 8, _MAX_HEADER):
        raise ValueError(f"header length {n} does not fit the file ({size} bytes)")
    try:
        header = json.loads(f.read(n).decode("utf-8"))
    except RecursionError:
        raise ValueError("header is nested too deeply") from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    meta = header.get("__metadata__")
    sums = {k[len(_SHA):]: v for k, v in meta.items() if str(k).startswith(_SHA)} if isinstance(meta, dict) else {}
    base, out, pending = 8 + n, {}, []
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        if sums and name not in sums:
            raise ValueError(f"tensor {name!r} has no checksum while the others have one (file was altered)")
        try:
            dtype = np.dtype(_DTYPES[spec["dtype"]])
            shape = [int(d) for d in spec["shape"]]
            begin, end = (int(x) for x in spec["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"tensor {name!r}: bad header entry ({exc})") from None
        count = math.prod(shape)
        if begin < 0 or end - begin != count * dtype.itemsize or base + end > size:
            raise ValueError(f"tensor {name!r}: data offsets {begin}..{end} do not fit its shape or the file")
        arr = np.empty(count, dtype)
        if count:
            f.seek(base + begin)
            if f.readinto(arr.view(np.uint8)) != end - begin:
                raise ValueError(f"tensor {name!r}: file is truncated")
        if sums:  # a large tensor is hashed while the next one is read (both release the GIL)
            pending.append((name, hasher.submit(_sha256, arr) if arr.nbytes >= _HASH_APART else _sha256(arr)))
        out[name] = arr.reshape(shape)
    return out, sums, pending


_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}


def write_arrays(arrays: dict[str, np.ndarray], path: Union[str, Path]) -> None:
    """Write ``arrays`` as a safetensors file (readable by ``safetensors`` and :func:`read_arrays`),
    with the sha256 of every tensor in its metadata.

    Raises
    ------
    ValueError
        An array has a dtype safetensors cannot store.
    """
    names = sorted(arrays)
    header, sums, offset = {}, {}, 0
    for name in names:
        a = arrays[name]
        if a.dtype not in _CODES:
            raise ValueError(f"tensor {name!r}: dtype {a.dtype} cannot be stored")
        header[name] = {"dtype": _CODES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        sums[_SHA + name] = _sha256(a)
        offset += a.nbytes
    header = {"__metadata__": sums, **header}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in names:
            f.write(np.ascontiguousarray(arrays[name]).reshape(-1).view(np.uint8))

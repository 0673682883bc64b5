"""Work-arounds for bugs of specific Qt binding versions."""
from __future__ import annotations

import ctypes
import sys

import PySide6

_SHIELDED = False


def shield_pyside_612_refcount() -> bool:
    """Keep ``None``/``True``/``False`` alive under PySide6 6.12.0 on Python < 3.12.

    PySide6 6.12.0 drops one reference to ``None`` on every call of a C++
    method returning void; on Python 3.11 (where ``None`` is not immortal) a
    long session eventually frees ``None`` and aborts with
    "Fatal Python error: none_dealloc".  pyproject.toml pins ``<6.12``; this
    guard protects environments that still have 6.12.0 installed by adding a
    large reference count once per process.  Returns True when applied.
    """
    global _SHIELDED
    if _SHIELDED or sys.version_info >= (3, 12):
        return False
    if not PySide6.__version__.startswith("6.12."):
        return False
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += 10**9
    _SHIELDED = True
    return True

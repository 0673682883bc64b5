"""The error every engine module raises (kept apart so the package ``__init__`` can import the engines)."""
from __future__ import annotations

from merch_app.errors import MerchAppError


class EngineError(MerchAppError, ValueError):
    """Unknown engine, bad engine option, or the engine cannot run (message is user-facing)."""

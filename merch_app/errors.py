"""The one base class of the errors a user may see.

Every error the app raises on purpose (a bad file, an unknown model, a job
that cannot start) derives from :class:`MerchAppError`; its message is a
complete sentence that the GUI and the CLI show as it is.  Anything else
that reaches the GUI or the CLI is a bug and is reported as one.
"""
from __future__ import annotations


class MerchAppError(Exception):
    """An error whose message is meant for the user, shown as it is by the GUI and the CLI."""

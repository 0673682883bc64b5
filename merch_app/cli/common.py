"""Shared CLI helpers: workspace option, user errors, JSON output, terminal progress."""
from __future__ import annotations

import json
import sqlite3
import sys
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import click

from merch_app.data.job_marks import others_warning
from merch_app.data.workspace import NoItemsError, WorkspaceError, open_workspace, storage_problem
from merch_app.errors import MerchAppError
from merch_app.jobs import Progress
from merch_app.paths import default_workspace

workspace_option = click.option(
    "--workspace",
    "-w",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Workspace file (default: the per-user default workspace).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


def resolve_workspace(path: Path | None) -> Path:
    return Path(path) if path else default_workspace()


def open_ws(path: Path | None, create: bool = True):
    """Open the workspace or exit with a clear message."""
    try:
        return open_workspace(resolve_workspace(path), create=create)
    except WorkspaceError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def user_errors(*errors: type[BaseException]) -> Iterator[None]:
    """Turn the user errors raised in a block into one-line CLI errors.

    A :class:`~merch_app.errors.MerchAppError` (and any of ``errors``) becomes a
    :class:`click.ClickException` with the error's message as it is; anything
    else passes unchanged.  Works as a ``with`` block and as a decorator
    (``@user_errors()`` right above the command function).

    Parameters
    ----------
    errors
        Further exception types whose message is fit for the user in this
        block (e.g. ``OSError`` around a file the user named).

    Yields
    ------
    None

    Raises
    ------
    click.ClickException
        For a :class:`~merch_app.errors.MerchAppError` or one of ``errors``.
    """
    try:
        yield
    except (MerchAppError, *errors) as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def model_loading(model_id: Optional[str] = None) -> Iterator[None]:
    """Turn a failure to load a ranking bundle into one CLI error line.

    A workspace without items says so as it is; any other error while the
    bundle loads (unknown model, damaged files, an unusable encoder) becomes
    "cannot load <the model>: <why>".

    Raises
    ------
    click.ClickException
    """
    try:
        yield
    except NoItemsError as exc:
        raise click.ClickException(str(exc)) from exc
    except (MerchAppError, LookupError, ValueError, OSError) as exc:
        which = f"model {model_id!r}" if model_id else "the model"
        raise click.ClickException(f"cannot load {which}: {exc}") from exc


@contextmanager
def workspace_db(path: Path | None, errors: Union[type, tuple[type, ...]] = ()) -> Iterator[Any]:
    """The workspace connection for one command, closed when the block ends.

    Parameters
    ----------
    path
        ``--workspace`` value (None: the default workspace); opened as by :func:`open_ws`.
    errors
        Further exception types raised in the block that are user errors (a
        :class:`~merch_app.errors.MerchAppError` always is, see :func:`user_errors`):
        they become a :class:`click.ClickException` with their message.

    Yields
    ------
    sqlite3.Connection
        The open workspace.
    """
    db = open_ws(path)
    extra = errors if isinstance(errors, tuple) else (errors,)
    try:
        with user_errors(*extra):
            yield db
    except (sqlite3.DatabaseError, OSError) as exc:
        problem = storage_problem(exc, db)  # names the workspace and why it is read-only
        if problem is None:
            raise
        raise click.ClickException(f"workspace: {problem}") from exc
    finally:
        db.close()


def warn_alongside(db, kind: str) -> None:
    """Say on stderr when another process runs a job of ``kind`` on the workspace (both will save)."""
    warning = others_warning(db, kind)
    if warning:
        click.echo(f"warning: {warning}.", err=True)


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


class TerminalProgress:
    """Progress sink drawing a one-line bar on a terminal (silent when piped)."""

    def __init__(self, label: str, enabled: bool | None = None) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._last = ""

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        frac = p.overall  # a job with phases: the whole job's, else the step's
        bar = ""
        if frac is not None:
            n = int(frac * 30)
            bar = "[" + "#" * n + "-" * (30 - n) + f"] {frac * 100:5.1f}%"
        eta = f" ETA {p.overall_eta:.0f}s" if p.overall_eta is not None else ""
        line = f"\r{self.label} {bar} {p.message}{eta}"
        if line != self._last:
            sys.stderr.write(line[:120].ljust(len(self._last)))
            sys.stderr.flush()
            self._last = line

    def close(self) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\n")


def display_width(text: str) -> int:
    """Terminal columns of ``text``: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def pad(text: str, width: int) -> str:
    """``text`` cut with "…" and padded to ``width`` terminal columns (CJK-aware)."""
    text = text or ""
    if display_width(text) > width:
        out, used = [], 0
        for ch in text:
            w = display_width(ch)
            if used + w > width - 1:
                break
            out.append(ch)
            used += w
        text = "".join(out) + "…"
    return text + " " * (width - display_width(text))

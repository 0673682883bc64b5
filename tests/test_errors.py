"""One error hierarchy: every error a user can see is a MerchAppError, shown as it is (issue 17).

* every exception class defined in ``merch_app`` derives from
  :class:`merch_app.errors.MerchAppError` — except the control-flow signals in
  :data:`CONTROL_FLOW` — and keeps the builtin base its callers catch;
* the GUI's :func:`merch_app.ui.workers.error_text` shows a MerchAppError's
  message unchanged, storage problems as sentences, and anything else as
  "Unexpected error ... (see the log)" — never "LookupError: ...";
* the CLI's :func:`merch_app.cli.common.user_errors` / ``workspace_db`` turn a
  MerchAppError into one ``Error: <message>`` line.
"""
from __future__ import annotations

import ast
import errno
import importlib
import inspect
import pkgutil
import re
import sqlite3
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

pytest.importorskip("PySide6")

import merch_app  # noqa: E402
from merch_app.cli.common import user_errors, workspace_db  # noqa: E402
from merch_app.errors import MerchAppError  # noqa: E402
from merch_app.jobs import Cancelled  # noqa: E402
from merch_app.ui.workers import error_text  # noqa: E402

# Control-flow signals, not errors shown to the user: they stay out of MerchAppError.
CONTROL_FLOW = {"merch_app.jobs.Cancelled"}
# Modules not imported by the walk: the entry point (importing it configures the process).
SKIP_MODULES = {"merch_app.__main__"}

# (module it is imported from, name) -> the builtin base its callers catch.
KNOWN = {
    ("merch_app.data.workspace", "WorkspaceError"): Exception,
    ("merch_app.data.importer", "ImportFailed"): Exception,
    ("merch_app.data.csv_source", "SourceError"): Exception,
    ("merch_app.data.privacy", "PrivacyError"): ValueError,
    ("merch_app.engines", "EngineError"): ValueError,
    ("merch_app.engines.ray_runtime", "RayUnavailable"): ValueError,
    ("merch_app.engines.ray_runtime", "RayJobFailed"): ValueError,
    ("merch_app.evaluation.split", "SplitError"): ValueError,
    ("merch_app.evaluation.suite_data", "SuiteError"): ValueError,
    ("merch_app.explain.why_not", "ItemNotFound"): LookupError,
    ("merch_app.insights.common", "InsightError"): ValueError,
    ("merch_app.model.encoder_base", "EncoderError"): Exception,
    ("merch_app.model.hybrid_files", "ModelLoadError"): ValueError,
    ("merch_app.model.registry", "RegistryError"): LookupError,
    ("merch_app.model.vector_index", "VectorIndexError"): Exception,
    ("merch_app.ranking.rules", "RuleError"): ValueError,
    ("merch_app.safety", "UnsafeIdentifier"): ValueError,
    ("merch_app.data.workspace", "NoItemsError"): LookupError,
    ("merch_app.services.training", "TrainingError"): ValueError,
}
_CLASS_NAME_LEAD = re.compile(r"^[A-Z]\w*(Error|Exception|Failed|Interrupt|Exit)\b")


def _modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(merch_app.__path__, "merch_app.")]
    return sorted(n for n in names if n not in SKIP_MODULES)


def _defined_exceptions() -> dict[str, type]:
    """``{"module.Class": class}`` of every exception class defined in a merch_app module."""
    found: dict[str, type] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == name:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_every_exception_class_is_a_merch_app_error():
    found = _defined_exceptions()
    assert "merch_app.errors.MerchAppError" in found and "merch_app.jobs.Cancelled" in found  # the walk works
    outside = sorted(n for n, cls in found.items() if not issubclass(cls, MerchAppError) and n not in CONTROL_FLOW)
    assert outside == [], f"exception classes a user can see that are not MerchAppError: {outside}"
    assert len(found) >= len(KNOWN) + 2


def test_known_errors_keep_their_builtin_base():
    for (module, name), builtin in KNOWN.items():
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, MerchAppError) and issubclass(cls, builtin), (module, name)
    # existing ``except LookupError`` / ``except ValueError`` keep working
    from merch_app.model.registry import RegistryError
    from merch_app.evaluation.suite_data import SuiteError

    with pytest.raises(LookupError):
        raise RegistryError("unknown model 'x'")
    with pytest.raises(ValueError):
        raise SuiteError("bad suite")


def test_cancelled_is_a_control_flow_signal_not_an_error():
    assert not issubclass(Cancelled, MerchAppError)
    assert error_text(Cancelled("cancelled by user")) == "Cancelled."


def test_no_exception_class_hides_from_the_walk():
    """Every ``class ...Error/Failed(...)`` in the sources is one the walk checked (none inside functions)."""
    root = Path(merch_app.__file__).parent
    found = {n.rsplit(".", 1)[1] for n in _defined_exceptions()}
    in_source = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                    re.search(r"(Error|Exception|Failed|Unavailable|NotFound|Cancelled|Identifier)$",
                              ast.unparse(b)) for b in node.bases):
                in_source.add(node.name)
    assert in_source - found == set()


# ------------------------------------------------------------------- GUI text
@pytest.mark.parametrize("message", [
    "unknown model 'v9'; see merch-app models list",
    "suite.csv line 3: grade 'x' is not a number (0..3)",
    "  keeps its spaces and its case: Nothing Changed  ",
])
def test_error_text_shows_a_merch_app_error_as_it_is(message):
    from merch_app.model.registry import RegistryError
    from merch_app.evaluation.suite_data import SuiteError

    for exc in (MerchAppError(message), RegistryError(message), SuiteError(message)):
        assert error_text(exc) == message
        assert error_text(exc, "Catalogue") == message


@pytest.mark.parametrize("exc, message", [
    (LookupError("no such thing"), "no such thing"),
    (KeyError("missing"), "'missing'"),
    (ValueError("bad value"), "bad value"),
    (ZeroDivisionError("division by zero"), "division by zero"),
    (AttributeError("'NoneType' object has no attribute 'V'"), "'NoneType' object has no attribute 'V'"),
])
def test_error_text_reports_other_exceptions_as_unexpected(exc, message):
    assert error_text(exc) == f"Unexpected error: {message} (see the log)"
    text = error_text(exc, "Catalogue")
    assert text == f"Unexpected error in Catalogue: {message} (see the log)"
    assert not _CLASS_NAME_LEAD.match(text) and type(exc).__name__ not in text


def test_error_text_without_a_message_never_shows_a_class_name():
    assert error_text(RuntimeError()) == "Unexpected error (see the log)"
    assert error_text(MerchAppError(), "Query") == "Unexpected error in Query (see the log)"


@pytest.mark.parametrize("exc, words", [
    (sqlite3.OperationalError("database or disk is full"), "The disk is full (database or disk is full): nothing was changed"),
    (sqlite3.OperationalError("attempt to write a readonly database"), "The workspace is read-only"),
    (sqlite3.DatabaseError("database disk image is malformed"), "The workspace file is damaged"),
    (sqlite3.OperationalError("database is locked"), "The workspace is locked by another program"),
    (OSError(errno.ENOSPC, "No space left on device", "/data/ws.merch.sqlite"), "The disk is full"),
    (OSError(errno.EROFS, "Read-only file system", "/media/ws.merch.sqlite"), "The workspace is read-only"),
])
def test_error_text_turns_storage_problems_into_sentences(exc, words):
    text = error_text(exc, "Importing items.csv")
    assert text.startswith(words) and text.endswith(".")
    assert "Unexpected" not in text and "Error" not in text


def test_error_text_names_the_file_of_an_os_error():
    exc = FileNotFoundError(errno.ENOENT, "No such file or directory", "/tmp/items.csv")
    assert error_text(exc) == "No such file or directory (/tmp/items.csv)"
    assert error_text(PermissionError(errno.EACCES, "Permission denied", "/x.csv")) == "Permission denied (/x.csv)"


# -------------------------------------------------------------------- CLI
class _Oops(MerchAppError, LookupError):
    """A user error of a test command."""


def test_user_errors_turns_a_merch_app_error_into_one_cli_line():
    with pytest.raises(click.ClickException) as info:
        with user_errors():
            raise _Oops("model 'v9' is not in this workspace")
    assert info.value.message == "model 'v9' is not in this workspace"
    with pytest.raises(KeyError):  # anything else is a bug: it passes unchanged
        with user_errors():
            raise KeyError("x")
    with pytest.raises(click.ClickException, match="cannot write"):  # extra types on request
        with user_errors(OSError):
            raise OSError("cannot write")


def test_commands_show_merch_app_errors_as_one_line(tmp_path):
    @click.command()
    @user_errors()
    def decorated() -> None:
        raise _Oops("rule 7 does not exist")

    @click.command()
    def in_workspace() -> None:
        with workspace_db(tmp_path / "ws.merch.sqlite"):
            raise _Oops("suite 'x' does not exist")

    runner = CliRunner()
    for cmd, message in ((decorated, "rule 7 does not exist"), (in_workspace, "suite 'x' does not exist")):
        res = runner.invoke(cmd, [])
        assert res.exit_code == 1 and res.output == f"Error: {message}\n", res.output
        assert "Traceback" not in res.output and "_Oops" not in res.output

"""``merch-app import``: import CSV/TSV shop exports into a workspace."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from merch_app.cli.common import TerminalProgress, emit_json, json_option, open_ws, resolve_workspace, workspace_option
from merch_app.data.header_mapping import KINDS, apply_overrides
from merch_app.data.importer import ON_DUPLICATE, ImportFailed, ImportResult, import_file, preview_file
from merch_app.jobs import CancelToken, Cancelled


def parse_map_options(values: tuple[str, ...]) -> dict[str, str]:
    """``("Stock Code=item_id", "Notes=")`` → ``{"Stock Code": "item_id", "Notes": ""}``."""
    out: dict[str, str] = {}
    for value in values:
        if "=" not in value:
            raise click.BadParameter(f"{value!r}: expected SOURCE=FIELD", param_hint="--map")
        source, field = value.rsplit("=", 1)
        out[source.strip()] = field.strip()
    return out


def _file_entry(path: Path, result: ImportResult) -> dict:
    return {
        "file": str(path),
        "import_id": result.import_id,
        "kind": result.kind,
        "status": result.status,
        "rows_read": result.rows_read,
        "rows_accepted": result.rows_accepted,
        "rows_rejected": result.rows_rejected,
        "rows_duplicate": result.rows_duplicate,
        "rows_forgotten": result.rows_forgotten,
        "ids_merged": [{"kept": m.kept, "merged": list(m.merged)} for m in result.ids_merged],
        "rejected_reasons": result.rejected_reasons,
        "items_added": result.items_added,
        "events_added": result.events_added,
        "seconds": round(result.seconds, 3),
        "message": result.message,
        "mapping": result.mapping,
    }


def import_one(db, path: Path, kind: str, overrides: dict[str, str], on_duplicate: str,
               progress, cancel, pseudonymise=None, keep_overlap: bool = False) -> ImportResult:
    """Preview ``path``, apply ``--map`` overrides to its mapping, import it."""
    preview = preview_file(db, path, kind=None if kind == "auto" else kind)
    mapping = None
    if overrides:
        try:
            mapping = apply_overrides(preview.headers, preview.kind, preview.mapping, overrides)
        except ValueError as exc:
            raise ImportFailed(f"{path}: {exc}") from exc
    return import_file(db, path, kind=preview.kind, mapping=mapping, on_duplicate=on_duplicate,
                       pseudonymise=pseudonymise, keep_overlap=keep_overlap, progress=progress, cancel=cancel)


@click.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@workspace_option
@click.option("--kind", type=click.Choice(["auto", *KINDS]), default="auto", show_default=True,
              help="File kind; auto detects it from the headers.")
@click.option("--map", "maps", multiple=True, metavar="SOURCE=FIELD",
              help="Map a column to a field (repeatable); SOURCE= ignores the column.")
@click.option("--on-duplicate", type=click.Choice(list(ON_DUPLICATE)), default="skip", show_default=True,
              help="A file already imported (same sha256): skip it, replace the earlier import, "
                   "append it again, or fail.")
@click.option("--keep-overlap", is_flag=True,
              help="Keep event rows an earlier import already holds (default: skip and count them, so "
                   "overlapping exports are not double-counted).")
@click.option("--pseudonymise/--no-pseudonymise", default=None,
              help="Store keyed-HMAC pseudonyms instead of user ids (default: as earlier imports did).")
@json_option
@click.pass_context
def import_command(ctx: click.Context, files, workspace, kind, maps, on_duplicate, keep_overlap, pseudonymise,
                   as_json) -> None:
    """Import FILE... (CSV/TSV, .gz too): catalogues, events or transaction exports.

    Each file is imported in its own transaction; a file that cannot be
    imported leaves the workspace as it was and makes the exit status 1.
    """
    overrides = parse_map_options(maps)
    db = open_ws(workspace)
    entries, failures = [], []
    reasons: Counter[str] = Counter()
    totals = {"rows_read": 0, "rows_accepted": 0, "rows_rejected": 0, "rows_duplicate": 0, "seconds": 0.0}
    try:
        for path in files:
            bar = TerminalProgress(f"import {path.name}", enabled=False if as_json else None)
            try:
                result = import_one(db, path, kind, overrides, on_duplicate, bar, CancelToken(), pseudonymise,
                                    keep_overlap)
            except ImportFailed as exc:
                bar.close()
                failures.append(str(exc))
                entries.append({"file": str(path), "status": "failed", "message": str(exc)})
                click.echo(f"error: {exc}", err=True)
                continue
            except (KeyboardInterrupt, Cancelled):
                bar.close()
                raise click.ClickException(f"{path}: import interrupted; the workspace is unchanged by this file")
            bar.close()
            entries.append(_file_entry(path, result))
            reasons.update(result.rejected_reasons)
            for key in ("rows_read", "rows_accepted", "rows_rejected", "rows_duplicate"):
                totals[key] += getattr(result, key)
            totals["seconds"] += result.seconds
            if not as_json:
                status = "skipped" if result.status == "skipped" else f"{result.kind}, {result.seconds:.1f} s"
                click.echo(f"{path.name}: {status}: {result.message}")
        items, events = (db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("items", "events"))
    finally:
        db.close()
    if as_json:
        emit_json({**totals, "seconds": round(totals["seconds"], 3), "items": items, "events": events,
                   "rejected_reasons": dict(reasons), "files": entries,
                   "workspace": str(resolve_workspace(workspace))})
    else:
        click.echo(f"Workspace {resolve_workspace(workspace)}: {items:,} items, {events:,} events.")
    if failures:
        ctx.exit(1)


def register(group: click.Group) -> None:
    group.add_command(import_command)


"""``merch-app forget USER``: remove one user's data from the workspace and refresh the model."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from merch_app.cli.common import TerminalProgress, emit_json, json_option, open_ws, user_errors, workspace_option
from merch_app.services.forget import forget_user, resume_forgets
from merch_app.jobs import CancelToken


@click.command("forget")
@click.argument("user", required=False)
@workspace_option
@click.option("--no-retrain", is_flag=True, help="Only delete; do not refresh the active model.")
@click.option("--resume", is_flag=True,
              help="Finish every forget that was stopped (killed, disk full) without naming the users again.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@user_errors()
def forget_command(user: Optional[str], workspace: Path | None, no_retrain: bool, resume: bool, yes: bool,
                   as_json: bool) -> None:
    """Forget USER (original id or pseudonym): delete their events, rejected lines, cached query
    vectors and model data, then refresh the active model incrementally.

    USER goes on the workspace's forget list: later imports and trainings leave them out.  Running
    forget again finishes one that was stopped (killed, disk full); --resume finishes them all."""
    if not resume and not user:
        raise click.UsageError("name the USER to forget, or give --resume to finish stopped forgets")
    if not yes and not as_json and not resume:
        click.confirm(f"Remove every event of user {user!r} from the workspace?", abort=True)
    db = open_ws(workspace, create=False)
    bar = TerminalProgress("refresh model", enabled=False if as_json else None)
    try:
        if resume:
            results = resume_forgets(db, retrain=not no_retrain, progress=bar, cancel=CancelToken())
        else:
            results = [forget_user(db, user, retrain=not no_retrain, progress=bar, cancel=CancelToken())]
    finally:
        bar.close()
        db.close()
    if as_json:
        emit_json([r.to_dict() for r in results] if resume else results[0].to_dict())
    elif resume and not results:
        click.echo("no stopped forget to finish")
    else:
        for result in results:
            click.echo(result.message)


def register(group: click.Group) -> None:
    group.add_command(forget_command)

"""``merch-app forget USER``: remove one user's data from the workspace and refresh the model."""
from __future__ import annotations

from pathlib import Path

import click

from merch_app.cli.common import TerminalProgress, emit_json, json_option, open_ws, user_errors, workspace_option
from merch_app.services.forget import forget_user
from merch_app.jobs import CancelToken


@click.command("forget")
@click.argument("user")
@workspace_option
@click.option("--no-retrain", is_flag=True, help="Only delete; do not refresh the active model.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@user_errors()
def forget_command(user: str, workspace: Path | None, no_retrain: bool, yes: bool, as_json: bool) -> None:
    """Forget USER (original id or pseudonym): delete their events, rejected lines and cached
    query vectors, then refresh the active model incrementally."""
    if not yes and not as_json:
        click.confirm(f"Remove every event of user {user!r} from the workspace?", abort=True)
    db = open_ws(workspace, create=False)
    bar = TerminalProgress("refresh model", enabled=False if as_json else None)
    try:
        result = forget_user(db, user, retrain=not no_retrain, progress=bar, cancel=CancelToken())
    finally:
        bar.close()
        db.close()
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(result.message)


def register(group: click.Group) -> None:
    group.add_command(forget_command)

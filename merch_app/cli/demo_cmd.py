"""``merch-app demo``: import the bundled demo data and print what is in it.

The steps are plain functions so later features (e.g. train a first model and
run an example query) can be appended to :data:`DEMO_STEPS` by their own
modules without touching this one: a step takes ``(workspace_path, as_json)``
and returns a dict that goes into the JSON output under its name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from merch_app.cli.common import TerminalProgress, emit_json, json_option, workspace_option
from merch_app.data.demo import ensure_demo_workspace
from merch_app.data.importer import ImportFailed
from merch_app.data.summary import data_summary
from merch_app.jobs import Cancelled
from merch_app.paths import demo_workspace

DemoStep = Callable[[Path, bool], dict]
DEMO_STEPS: list[tuple[str, DemoStep]] = []


def summary_lines(path: Path, top: int = 5) -> tuple[list[str], dict]:
    """Human lines and a JSON-able dict describing the workspace."""
    s = data_summary(path)
    first, last = (s.first_ts or "")[:10], (s.last_ts or "")[:10]
    info = {
        "workspace": str(path),
        "items": s.items,
        "users": s.users,
        "events": s.events,
        "anonymous_events": s.anonymous_events,
        "first_ts": s.first_ts,
        "last_ts": s.last_ts,
        "events_by_type": s.events_by_type,
        "top_items": [{"item_id": i, "title": t, "events": n} for i, t, n in s.top_items[:top]],
    }
    types = ", ".join(f"{k} {v:,}" for k, v in s.events_by_type.items())
    lines = [
        f"Demo workspace: {path}",
        f"  {s.items:,} items, {s.users:,} users, {s.events:,} events "
        f"({s.anonymous_events:,} anonymous); {first} .. {last}",
        f"  events by type: {types}",
        "  top items:",
    ]
    lines += [f"    {n:>5,}  {i:<10} {t}" for i, t, n in s.top_items[:top]]
    return lines, info


@click.command("demo")
@workspace_option
@json_option
def demo(workspace: Path | None, as_json: bool = False) -> None:
    """Import the demo data (Online Retail subset) into the demo workspace and summarise it."""
    path = Path(workspace) if workspace else demo_workspace()
    bar = TerminalProgress("demo import", enabled=False if as_json else None)
    try:
        ensure_demo_workspace(path, progress=bar)
    except ImportFailed as exc:
        bar.close()
        raise click.ClickException(str(exc)) from exc
    except (KeyboardInterrupt, Cancelled):
        bar.close()
        raise click.ClickException("demo import interrupted; the workspace is unchanged by the current file")
    bar.close()
    lines, info = summary_lines(path)
    for name, step in DEMO_STEPS:
        info[name] = step(path, as_json)
    if as_json:
        emit_json(info)
    else:
        click.echo("\n".join(lines))


def register(group: click.Group) -> None:
    group.add_command(demo)

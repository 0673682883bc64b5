"""What ``suite run|compare`` and ``rules impact`` load from their arguments: a ranking bundle and a suite.

Apart from :mod:`merch_app.cli.suite_cmds` because that module registers the
``rules`` group (:mod:`merch_app.cli.rules_cmds`), which needs these too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from merch_app.cli.common import model_loading
from merch_app.evaluation.behaviour_suite import generate_from_behaviour
from merch_app.evaluation.suite_exchange import read_any_suite_file
from merch_app.evaluation.suites import load_suite
from merch_app.services.ranking import ranking_bundle


def command_bundle(db, model_id: Optional[str], encoder_spec: Optional[str]):
    """The workspace's ranking bundle (:func:`merch_app.services.ranking.ranking_bundle`) for one command."""
    with model_loading():
        return ranking_bundle(db, model_id, encoder_spec)


def command_suite(db, ref: Optional[str], behaviour: bool = False):
    """A suite from a file (CSV, qrels, Quepid, RRE), a stored suite name, or generated from behaviour."""
    if behaviour:
        return generate_from_behaviour(db, "behaviour")
    if ref is None:
        raise click.UsageError("give a SUITE (file or stored name) or --behaviour")
    if Path(ref).is_file():
        return read_any_suite_file(ref)
    return load_suite(db, ref)

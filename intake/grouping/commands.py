"""`intake groups [--json]`: open inquiries that ask the same question.

The command refreshes the groups first (skipped when nothing changed), so what it prints is
current even without a worker running.
"""

from __future__ import annotations

import json

import click


@click.command("groups")
@click.option("--json", "as_json", is_flag=True, help="One JSON array: id, size, label, category, inquiries.")
def groups_command(as_json: bool) -> None:
    """Open inquiries that ask the same question, largest group first."""
    from intake.cli import build_runtime
    from intake.grouping import store

    rt = build_runtime()
    store.refresh(rt)
    with rt.db.read_session() as session:
        found = store.groups(session)
    if as_json:
        click.echo(json.dumps([g.as_json() for g in found], ensure_ascii=False))
        return
    if not found:
        click.echo("no groups: no two open inquiries ask the same question")
        return
    for g in found:
        ids = " ".join(f"#{i}" for i in g.inquiries)
        click.echo(f"group {g.id:<5} {g.size:>3} people  {g.category:<16} {g.label}")
        click.echo(f"          {ids}")

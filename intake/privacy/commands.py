"""`intake forget`, `intake export`, `intake delete`, `intake purge` (see ../shared/DESIGN.md).

Thin: parse the arguments, show what will happen, ask, then call ``intake.privacy.run``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
from typing import Any

import click

from intake.config import ConfigError


def _runtime():
    from intake.cli import build_runtime

    return build_runtime()


def cli_actor() -> str:
    """Who ran the command, for the audit trail: the login name of the operator."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container
        user = "unknown"
    return f"cli:{user}"[:64]


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False))


def _out(as_json: bool):
    """Human-readable lines go to stderr when stdout carries JSON."""
    return lambda text: click.echo(text, err=as_json)


@click.command("forget")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Erase without asking (scripts).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def forget_command(address: str, yes: bool, as_json: bool) -> None:
    """Erase everything about the person at ADDRESS: their inquiries, messages, attachments,
    labels and Slack cards. Only an audit event with a keyed hash of the address remains."""
    from intake.privacy import actions, footprint, run

    rt = _runtime()
    try:
        address = footprint.normalized(address, own_address=run.own_address(rt))
    except footprint.NotAnAddress as exc:
        raise click.ClickException(str(exc)) from None
    say = _out(as_json)
    with rt.db.read_session() as session:
        preview = actions.preview_forget(session, address)
    if preview.empty:
        say(f"nothing is held about {address}; nothing was erased")
        if as_json:
            _echo_json({"erased": False, "audit_event": None, "inquiries": [], "counts": {}})
        return
    say(f"This erases everything held about {address}:")
    for item in preview.inquiries:
        say(f"  inquiry #{item['id']:<6} {item['status']:<8} {item['received_at'][:10]}  {item['subject'][:60]}")
    say(f"  {preview.messages} message(s) with {preview.attachments} attachment(s)"
        + (f", {preview.messages_elsewhere} of them in other people's conversations" if preview.messages_elsewhere else "")
        + ("; their contact record" if preview.contact else ""))
    if preview.mentions:
        say(f"  and replaces their address and name in {preview.mentions} other message(s) that mention them")
    if not yes:
        click.confirm("Erase all of this? It cannot be undone", abort=True, err=True)
    result = run.forget_person(rt, address, cli_actor())
    if as_json:
        _echo_json(result.as_json())
        return
    counts = ", ".join(f"{n} {name}" for name, n in result.counts.items())
    click.echo(f"erased {address}: {counts}")
    click.echo(f"audit event #{result.audit_event_id} keeps the keyed hash {result.address_hash[:16]}…")
    if result.slack:
        click.echo(f"Slack: {len(result.slack)} card(s) are being updated and their lines about them deleted")
    if result.storage and result.storage.get("note"):
        click.echo(f"note: {result.storage['note']}")


@click.command("export")
@click.argument("address")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write the JSON document here (created readable by you only) instead of stdout.")
def export_command(address: str, output: str | None) -> None:
    """Everything held about the person at ADDRESS as one JSON document (raw messages in base64),
    for a subject access request."""
    from intake.privacy import export, footprint

    try:
        address = footprint.normalized(address)
    except footprint.NotAnAddress as exc:
        raise click.ClickException(str(exc)) from None
    rt = _runtime()
    with rt.db.read_session() as session:
        document = export.export_person(session, address)
    text = json.dumps(document, ensure_ascii=False, indent=2)
    if output is None:
        click.echo(text)
        return
    # Personal data: the file is created for its owner only, whatever the umask.
    descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its mode through O_CREAT: narrow it
    with os.fdopen(descriptor, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    click.echo(f"wrote {len(document['inquiries'])} inquiries and "
               f"{sum(len(i['messages']) for i in document['inquiries']) + len(document['messages_in_other_conversations'])}"
               f" messages about {address} to {output}", err=True)


@click.command("delete")
@click.argument("inquiry_id", type=int)
@click.option("--yes", is_flag=True, help="Delete without asking.")
def delete_command(inquiry_id: int, yes: bool) -> None:
    """Remove one inquiry loaded by mistake, with all it holds (and its card in Slack)."""
    from intake.privacy import actions, run

    rt = _runtime()
    with rt.db.read_session() as session:
        summary = actions.preview_delete(session, inquiry_id)
    if summary is None:
        raise click.ClickException(f"there is no inquiry #{inquiry_id} (see `intake list`)")
    click.echo(f"inquiry #{summary['id']} {summary['status']} from {summary['from'] or '(unknown sender)'}: "
               f"{summary['subject'][:70]!r}, {summary['messages']} message(s), {summary['events']} event(s)"
               + (", a card in Slack" if summary["card_in_slack"] else ""))
    if not yes:
        click.confirm("Delete it? It cannot be undone", abort=True, err=True)
    result = run.delete_inquiry(rt, inquiry_id, cli_actor())
    counts = ", ".join(f"{n} {name}" for name, n in result.counts.items())
    click.echo(f"deleted inquiry #{inquiry_id}: {counts}")


def _parse_at(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO time (like 2027-01-31 or 2027-01-31T09:00+01:00)") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.timezone.utc)


@click.command("purge")
@click.option("--at", "at_text", metavar="ISO-TIME", help="Apply the policy as of this time (default now; naive times are UTC).")
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@click.option("--json", "as_json", is_flag=True, help='Print {"deleted": N, "redacted": N}.')
def purge_command(at_text: str | None, dry_run: bool, as_json: bool) -> None:
    """Apply the [retention] policy: delete old spam and automated mail, redact old closed inquiries.
    Open inquiries are never touched."""
    from intake.privacy import config, run

    at = _parse_at(at_text)
    rt = _runtime()
    try:
        config.load(rt)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    result = run.apply_retention(rt, at, dry_run=dry_run, actor=cli_actor())
    if as_json:
        _echo_json(result.as_json())
        return
    verb = ("would delete", "would redact") if dry_run else ("deleted", "redacted")
    click.echo(f"{verb[0]} {result.deleted} inquiries, {verb[1]} {result.redacted}"
               + (" (dry run: nothing changed)" if dry_run else ""))
    if result.counts:
        click.echo("  " + ", ".join(f"{n} {name}" for name, n in result.counts.items()))

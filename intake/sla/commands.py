"""`intake due` and `intake report` (see ../shared/DESIGN.md for the contract)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click
from sqlalchemy import select

from intake.config import ConfigError
from intake.models import Inquiry, utcnow
from intake.sla import clock, report
from intake.sla.calendar import as_utc
from intake.sla.notices import reconcile


def _runtime():
    from intake.cli import build_runtime

    rt = build_runtime()
    try:
        rules = clock.policy(rt)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return rt, rules


def _instant(value: str | None, rules: clock.Policy) -> dt.datetime:
    """``--at``: an ISO 8601 time; one without an offset is read in the ``[sla]`` time zone."""
    if not value:
        return utcnow()
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time such as 2026-12-03T09:30 or 2026-12-03T14:30Z",
                                 param_hint="--at") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=rules.settings.timezone)
    return as_utc(when)


def _date(value: str | None, name: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date such as 2026-12-01", param_hint=name) from None


def _iso(when: dt.datetime | None) -> str | None:
    return None if when is None else as_utc(when).isoformat()


@click.command("due")
@click.option("--at", "at", metavar="ISO-TIME", help="Evaluate at this time (default now; without an offset, in the [sla] time zone).")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of {id, category, status, assignee, due_at, state}.")
def due_command(at: str | None, as_json: bool) -> None:
    """Open inquiries against their response targets, soonest target first."""
    rt, rules = _runtime()
    when = _instant(at, rules)
    with rt.db.session() as session:
        reconcile(session, rules, utcnow())  # targets follow reclassifications (as the tick does)
        session.flush()
        rows = []
        for inquiry in session.scalars(
            select(Inquiry).where(Inquiry.status.in_(clock.LISTED)).order_by(Inquiry.id)
        ):
            found = clock.evaluate(inquiry, rules, when)
            if found is None:
                continue
            rows.append({"id": inquiry.id, "category": inquiry.category, "status": inquiry.status,
                         "assignee": inquiry.assignee, "due_at": _iso(found.due_at), "state": found.state,
                         "subject": inquiry.subject or ""})
    order = {state: i for i, state in enumerate(("overdue", "due_soon", "on_track", "paused", "met"))}
    rows.sort(key=lambda r: (order[r["state"]], r["due_at"] or "~", r["id"]))
    if as_json:
        click.echo(json.dumps([{k: v for k, v in r.items() if k != "subject"} for r in rows], ensure_ascii=False))
        return
    if not rows:
        click.echo("no open inquiries with a response target")
        return
    zone = rules.settings.timezone
    for r in rows:
        due = dt.datetime.fromisoformat(r["due_at"]).astimezone(zone).strftime("%a %d %b %H:%M") if r["due_at"] else "-"
        click.echo(f"#{r['id']:<6} {r['state']:<9} {due:<16} {r['status']:<8} {(r['category'] or '?'):<17} "
                   f"{(r['assignee'] or '-'):<12} {r['subject'][:60]}")


@click.command("report")
@click.option("--since", metavar="DATE", help="First day (local date, default: six days before --until).")
@click.option("--until", metavar="DATE", help="Last day, included (default today).")
@click.option("--json", "as_json", is_flag=True, help="The figures as one JSON object.")
@click.option("--plot", type=click.Path(dir_okay=False, writable=True, path_type=Path), metavar="FILE.png",
              help="Also draw the chart: arrivals per day by category, and first-response times.")
def report_command(since: str | None, until: str | None, as_json: bool, plot: Path | None) -> None:
    """Volume and response figures for a period (the weekly report's, for any dates)."""
    rt, rules = _runtime()
    now = utcnow()
    try:
        first, last = report.period(rules, now, _date(since, "--since"), _date(until, "--until"))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    with rt.db.session() as session:
        figures = report.build(session, rules, first, last, now)
    if plot is not None:
        from intake.sla.chart import render_png

        try:
            plot.write_bytes(render_png(figures, rt.settings.category_names))
        except OSError as exc:
            raise click.ClickException(f"cannot write the chart to {plot}: {exc.strerror or exc}") from None
    if as_json:
        click.echo(json.dumps(figures.as_json(), ensure_ascii=False))
        return
    data = figures.as_json()
    hours = data["first_response"]
    met = "-" if data["targets_met_pct"] is None else f"{data['targets_met_pct']:g}%"
    click.echo(f"{data['since']} to {data['until']}: {data['received']} received")
    for name, count in figures.by_category.items():
        click.echo(f"  {name:<18} {count}")
    click.echo(f"first response (business hours): median {hours['median_hours'] if hours['median_hours'] is not None else '-'}, "
               f"90th percentile {hours['p90_hours'] if hours['p90_hours'] is not None else '-'}")
    click.echo(f"first-response targets met: {met}")
    click.echo(f"open now: {data['open_now']} ({data['overdue_now']} overdue)")
    if figures.oldest_open:
        click.echo("oldest open:")
        for item in figures.oldest_open:
            click.echo(f"  #{item.inquiry_id:<6} {item.received_at.astimezone(rules.settings.timezone):%Y-%m-%d}  "
                       f"{item.status:<8} {(item.category or '?'):<17} {item.subject[:60]}")
    if plot is not None:
        click.echo(f"chart written to {plot}", err=True)

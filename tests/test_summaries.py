"""The summary `intake list` prints, read two ways: over the plain driver (what a plain `intake
list` runs, without SQLAlchemy) and through the models (`--query`, Slack). Both read the same
rows on each database and must print the same thing, field for field and line for line."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import pytest
from click.testing import CliRunner

from intake import summaries
from intake.browse import _orm_page, _plain_page, list_table
from intake.cli import main, open_plain_database
from intake.models import Contact, Inquiry

T0 = dt.datetime(2026, 11, 3, 14, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def desk(db):
    """Inquiries covering what a summary can hold: no contact, no category or confidence, a
    review mark, an assignee, non-ASCII and escape-bearing text, a time in another offset,
    times with and without microseconds, and two inquiries received at the same instant (the
    id breaks the tie)."""
    with db.session() as session:
        people = [Contact(address="ana@example.org", name="Ana Pérez"),
                  Contact(address="press@dailyledger.example.com", name=None)]
        session.add_all(people)
        session.flush()
        rows = [
            dict(contact_id=people[0].id, subject="¿Cuándo cierra la convocatoria?", status="new",
                 category="application", confidence=0.91, language="es", received_at=T0),
            dict(contact_id=people[1].id, subject="Interview \x1b[31mrequest", status="open",
                 category="press", confidence=0.5, needs_review=True, assignee="U0STAFF",
                 received_at=T0 + dt.timedelta(minutes=5, microseconds=123456)),
            dict(contact_id=None, subject="", status="new", category=None, confidence=None,
                 received_at=T0 + dt.timedelta(minutes=5, microseconds=123456)),  # the tie
            dict(contact_id=people[0].id, subject="Re: deadline", status="waiting", category="application",
                 confidence=1.0, received_at=dt.datetime(2026, 11, 3, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))),
            dict(contact_id=people[1].id, subject="Buy followers", status="spam", category="spam",
                 confidence=0.99, received_at=T0 - dt.timedelta(days=3)),
            dict(contact_id=people[0].id, subject="Thanks!", status="closed", category="feedback",
                 confidence=0.7, needs_review=True, received_at=T0 + dt.timedelta(days=1)),
        ]
        session.add_all(Inquiry(**row) for row in rows)
    return db


FILTERS = list(itertools.product((None, "new", "open", "spam", "closed"), (None, "application", "press", "spam")))


@pytest.mark.parametrize("limit", [0, 1, 2, 3, 50])
def test_the_plain_page_is_the_orm_page(desk, settings, limit):
    for status, category in FILTERS:
        plain = _plain_page(settings, status, category, limit)
        assert plain is not None, "a migrated database is read over the plain driver"
        orm = _orm_page(settings, status, category, limit, None)
        assert plain == orm, (status, category, limit)
        assert list_table(*plain) == list_table(*orm)
    everything, _ = _plain_page(settings, None, None, 0)
    assert len(everything) == 6  # the comparison above saw real rows, not two empty lists
    assert [row["id"] for row in everything] == [6, 4, 3, 2, 1, 5]  # newest first; a tie: higher id
    assert dt.datetime.fromisoformat(everything[1]["received_at"]) == T0 + dt.timedelta(minutes=30)
    assert dt.datetime.fromisoformat(everything[2]["received_at"]).microsecond == 123456


def test_the_plain_page_counts_what_its_limit_left_out(desk, settings):
    rows, more = _plain_page(settings, "new", None, 1)
    assert len(rows) == 1 and more == 1
    with open_plain_database(settings) as conn:
        assert summaries.count(conn) == 6
        assert summaries.count(conn, status="open", category="press") == 1


@pytest.mark.parametrize("args", [["--json"], [], ["--limit", "2"], ["--status", "new", "--json"],
                                  ["--category", "application", "--limit", "1"]])
def test_the_command_prints_the_same_both_ways(desk, settings, monkeypatch, args):
    """The whole command, output for output: as it runs, then with the plain path turned off
    (every database then goes through the models)."""
    import intake.cli

    env = {"DATABASE_URL": settings.database_url, "INTAKE_CONFIG": ""}
    real = intake.cli.open_plain_database
    opened = []
    monkeypatch.setattr("intake.cli.open_plain_database", lambda given: opened.append(real(given)) or opened[-1])
    plain = CliRunner().invoke(main, ["list", *args], env=env)
    assert opened and opened[0] is not None, "the first run read over the plain driver"
    monkeypatch.setattr("intake.cli.open_plain_database", lambda _settings: None)
    through_models = CliRunner().invoke(main, ["list", *args], env=env)
    assert plain.exit_code == through_models.exit_code == 0, (plain.output, through_models.output)
    assert plain.stdout == through_models.stdout
    if "--json" in args:
        assert json.loads(plain.stdout)
    else:
        assert plain.stdout.count("\n") >= 2  # a header and at least one inquiry


def test_iso_keeps_the_instant_and_says_utc_for_naive_times():
    assert summaries.iso(None) is None
    assert summaries.iso(dt.datetime(2026, 11, 3, 14, 0)) == "2026-11-03T14:00:00+00:00"
    eastern = dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert summaries.iso(eastern) == "2026-11-03T09:00:00-05:00"

from sqlalchemy import inspect


def test_schema_creates_every_table(db):
    names = set(inspect(db.engine).get_table_names())
    assert {"contacts", "inquiries", "messages", "attachments", "classifications", "events",
            "receipts", "model_versions", "seen_nonces"} <= names


def test_an_emails_date_keeps_its_instant_on_both_databases(db):
    """SQLite stores no offset: a Date of 14:03 -0600 must be stored as 20:03 UTC, not 14:03."""
    import datetime as dt

    from intake.inquiries import store_raw
    from intake.models import Message
    from intake.summaries import iso

    sent = dt.datetime(2026, 11, 17, 14, 3, 10, tzinfo=dt.timezone(dt.timedelta(hours=-6)))
    with db.session() as session:
        stored = store_raw(session, b"From: a@example.org\r\n\r\nx", provider="test")
        session.get(Message, stored.message_id).date = sent
    with db.session() as session:
        back = session.get(Message, stored.message_id).date
    assert dt.datetime.fromisoformat(iso(back)) == sent
    assert iso(back).startswith("2026-11-17T20:03:10")
def test_a_unique_clash_is_told_from_other_integrity_errors(db):
    """is_unique_violation reads the driver's own error type (SQLite's extended result code,
    PostgreSQL's SQLSTATE 23505), so a NOT NULL failure is never taken for a duplicate."""
    import pytest
    from sqlalchemy.exc import IntegrityError

    from intake.db import is_unique_violation
    from intake.models import SeenNonce

    with db.session() as session:
        session.add(SeenNonce(kind="test", value="once"))
    with pytest.raises(IntegrityError) as clash:
        with db.session() as session:
            session.add(SeenNonce(kind="test", value="once"))
    assert is_unique_violation(clash.value)
    with pytest.raises(IntegrityError) as missing:
        with db.session() as session:
            session.add(SeenNonce(kind=None, value="twice"))
    assert not is_unique_violation(missing.value)

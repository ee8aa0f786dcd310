from sqlalchemy import inspect


def test_schema_creates_every_table(db):
    names = set(inspect(db.engine).get_table_names())
    assert {"contacts", "inquiries", "messages", "attachments", "classifications", "events",
            "receipts", "model_versions", "seen_nonces"} <= names


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

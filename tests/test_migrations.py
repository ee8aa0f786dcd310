"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from intake.db import Database
from intake.migrate import ensure_schema, head_revision, upgrade, current_revision
from intake.models import Base


def test_upgrade_head_matches_the_models(empty_db_url):
    upgrade(empty_db_url)
    db = Database(empty_db_url)
    try:
        with db.engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
        assert diff == [], f"models and migrations disagree: {diff}"
        assert current_revision(db.engine) == head_revision(empty_db_url)
        names = {index["name"] for index in inspect(db.engine).get_indexes("inquiries")}
        assert {"ix_inquiries_status_category_received", "ix_inquiries_assignee_status",
                "ix_inquiries_status_received"} <= names
    finally:
        db.dispose()


def test_upgrade_is_repeatable(empty_db_url):
    upgrade(empty_db_url)
    upgrade(empty_db_url)


def test_embedded_sqlite_is_migrated_on_first_use(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    db = Database(url)
    try:
        assert ensure_schema(url, db.engine) is True
        assert ensure_schema(url, db.engine) is False
        assert "inquiries" in inspect(db.engine).get_table_names()
    finally:
        db.dispose()

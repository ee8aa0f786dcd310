"""The plain-driver path `intake list` reads through: which URLs it opens itself, how it tells a
current schema, and that everything else is left to the full path (first-use migration of the
embedded SQLite, "run `intake db upgrade` first" for a server database behind)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from intake import dbapi, migrate
from intake.cli import main
from tests.conftest import database_url


@pytest.mark.parametrize(("url", "path"), [
    ("sqlite:///intake.db", "intake.db"),
    ("sqlite:////var/lib/intake/intake.db", "/var/lib/intake/intake.db"),
    ("sqlite+pysqlite:///x.db", "x.db"),
    ("sqlite://", None),
    ("sqlite:///:memory:", None),
    ("sqlite:///file:x.db?mode=ro&uri=true", None),
    ("sqlite:///x%20y.db", None),
    ("postgresql+psycopg://postgres@127.0.0.1/test", None),
])
def test_only_plain_sqlite_urls_are_read_as_a_path(url, path):
    assert dbapi.sqlite_path(url) == path


def test_other_drivers_and_a_missing_sqlite_file_are_left_to_sqlalchemy(tmp_path):
    assert dbapi.connect(f"sqlite:///{tmp_path / 'not-yet.db'}") is None
    assert not (tmp_path / "not-yet.db").exists()  # not created behind the migrations' back
    assert dbapi.connect("mysql+pymysql://u@127.0.0.1/x") is None
    assert dbapi.connect("postgresql+psycopg2://postgres@127.0.0.1/test") is None


def test_a_migrated_database_is_current_and_one_behind_is_not(tmp_path, empty_db_url):
    url = empty_db_url
    if url.startswith("sqlite"):  # the fixture made no file: make an empty one
        (tmp_path / "empty.db").touch()
        url = f"sqlite:///{tmp_path / 'empty.db'}"
    with dbapi.connect(url) as conn:
        assert not dbapi.schema_is_current(conn)  # no alembic_version table at all
    migrate.upgrade(url, "0006")  # the revision before the head
    with dbapi.connect(url) as conn:
        assert not dbapi.schema_is_current(conn)
    migrate.upgrade(url)
    with dbapi.connect(url) as conn:
        assert dbapi.schema_is_current(conn)
        assert conn.rows("SELECT count(*) FROM inquiries") == [(0,)]


def test_an_unreachable_server_is_reported_at_once():
    with pytest.raises(dbapi.Unreachable, match="127.0.0.1"):
        dbapi.connect("postgresql+psycopg://postgres@127.0.0.1:1/nothing")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_database_behind_is_migrated_or_refused_as_before(backend, tmp_path):
    """The plain path never decides: an embedded SQLite behind is migrated by the full path and
    listed; a server database behind is told to run `intake db upgrade`."""
    with database_url(backend, tmp_path, create_schema=False) as url:
        migrate.upgrade(url, "0006")
        result = CliRunner().invoke(main, ["list", "--json"], env={"DATABASE_URL": url})
        if backend == "sqlite":
            assert result.exit_code == 0, result.output
            assert json.loads(result.stdout) == []
            with dbapi.connect(url) as conn:
                assert dbapi.schema_is_current(conn)
        else:
            assert result.exit_code != 0
            assert "is at schema revision 0006, not the current one: run `intake db upgrade` first" in result.output

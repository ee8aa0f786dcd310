"""Shared fixtures: settings, a database on each backend, a runtime, and the shared corpus.

Every test that takes ``db_url`` (or anything built on it) runs twice: on a fresh SQLite file and
on a fresh schema in the real PostgreSQL on this machine. The PostgreSQL URL names its schema in
``options=-csearch_path=...``, so a subprocess (``intake serve``, a worker) given the same URL sees
the same isolated tables.

Set ``INTAKE_TEST_DATABASES=sqlite`` to skip PostgreSQL; when PostgreSQL cannot be reached its
runs are skipped with the reason, except under CI (``CI=true``) where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from intake.config import Settings
from intake.db import Database
from intake.migrate import upgrade
from intake.jobs import InlineQueue
from intake.runtime import Runtime

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(os.environ.get("INTAKE_SHARED_DIR", REPO.parent / "shared"))
CORPUS = SHARED / "corpus"
SLACK_PAYLOADS = SHARED / "slack-payloads"

PG_BASE_URL = os.environ.get(
    "INTAKE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = [
    b.strip() for b in os.environ.get("INTAKE_TEST_DATABASES", "sqlite,postgresql").split(",") if b.strip()
]

@pytest.fixture(scope="session", autouse=True)
def _isolated_model_cache(tmp_path_factory):
    """The seed model cache in a fresh folder per run (subprocesses inherit the variable)."""
    previous = os.environ.get("INTAKE_CACHE_DIR")
    os.environ["INTAKE_CACHE_DIR"] = str(tmp_path_factory.mktemp("model-cache"))
    yield
    if previous is None:
        os.environ.pop("INTAKE_CACHE_DIR", None)
    else:
        os.environ["INTAKE_CACHE_DIR"] = previous


@pytest.fixture(autouse=True)
def _logging_restored():
    """A command run in-process (CliRunner) configures logging (intake.logs): undo it after the
    test, so one test's INTAKE_LOG_LEVEL=WARNING does not hide another's INFO records."""
    import logging

    from intake import logs

    names = ("", "intake", *logs.QUIET_LOGGERS)
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logs.StderrHandler)]:
        root.removeHandler(handler)


_pg_error: str | None = None
_pg_checked = False


def _postgres_available() -> str | None:
    global _pg_checked, _pg_error
    if not _pg_checked:
        _pg_checked = True
        try:
            engine = create_engine(PG_BASE_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
        except Exception as exc:  # pragma: no cover - depends on the machine
            _pg_error = f"PostgreSQL at {PG_BASE_URL} is not reachable: {exc.__class__.__name__}"
    return _pg_error


def corpus_dir(name: str = "") -> Path:
    """A folder of ../shared/corpus, or a skip with the reason when a clone has none."""
    path = CORPUS / name if name else CORPUS
    if not path.is_dir():
        pytest.skip(f"shared corpus not found at {path} (only present beside the team's checkout)")
    return path


def slack_payload_dir() -> Path:
    if not SLACK_PAYLOADS.is_dir():
        pytest.skip(f"shared Slack payloads not found at {SLACK_PAYLOADS}")
    return SLACK_PAYLOADS


import contextlib


@contextlib.contextmanager
def database_url(backend: str, tmp_path: Path, *, create_schema: bool = True):
    """A URL to a fresh, isolated database on one backend; dropped afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / f'intake-{uuid.uuid4().hex[:6]}.db'}"
        if create_schema:
            upgrade(url)
        yield url
        return
    problem = _postgres_available()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    if create_schema:
        upgrade(url)
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """A URL to an empty database migrated to head, on each backend in turn."""
    with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def empty_db_url(request, tmp_path):
    """A URL to a database with no tables at all (for migrations), on each backend in turn."""
    with database_url(request.param, tmp_path, create_schema=False) as url:
        yield url


@pytest.fixture
def settings(db_url, tmp_path) -> Settings:
    return Settings.from_env({"DATABASE_URL": db_url, "INTAKE_QUEUE_PATH": str(tmp_path / "queue.db")})


@pytest.fixture
def db(settings):
    database = Database.from_settings(settings)
    yield database
    database.dispose()


@pytest.fixture
def rt(settings, db) -> Runtime:
    """A runtime whose queue runs jobs inline, on the parametrized database."""
    return Runtime(settings, db, queue=InlineQueue())

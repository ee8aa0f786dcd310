"""`intake db upgrade`: Alembic driven from code, so it works from an installed wheel too."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import intake_migrations


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(intake_migrations.__file__).parent))
    # Alembic's config is an INI parser: a literal % in the URL must be doubled.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def revision(url: str, message: str, rev_id: str | None = None) -> None:
    """Autogenerate a migration from the difference between the models and the database."""
    command.revision(alembic_config(url), message=message, autogenerate=True, rev_id=rev_id)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def ensure_schema(url: str, engine: Engine) -> bool:
    """Upgrade an embedded SQLite database that is behind; True when it ran migrations.

    Only for SQLite, the zero-setup default: a newcomer's first `intake serve` or `intake ingest`
    just works. A server database is upgraded by the operator's release step instead.
    """
    if engine.dialect.name != "sqlite":
        return False
    if current_revision(engine) == head_revision(url):
        return False
    upgrade(url)
    return True

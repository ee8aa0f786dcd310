"""`intake db upgrade`: Alembic driven from code, so it works from an installed wheel too.

Every command checks the schema before it runs. Importing Alembic and loading its script
directory costs about a tenth of a second, more than all of `intake list` should take, so the
common case (the schema is current) is answered without it: the revision stored in the database
against the one head the migration files declare (``declared_head``). Anything else (behind,
ahead, several heads, a file that cannot be read that way) goes through Alembic itself.
SQLAlchemy too is imported only inside the functions that use it, so ``declared_head`` serves
the commands that read without it (``intake.dbapi``).
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

import intake_migrations

if TYPE_CHECKING:  # pragma: no cover
    from alembic.config import Config
    from sqlalchemy import Engine

VERSIONS_DIR = Path(intake_migrations.__file__).parent / "versions"
# Module-level `revision = "0001"` / `down_revision: Union[str, None] = "0001"` lines, as Alembic's
# script template writes them.
_REVISION_LINE = re.compile(r"^(revision|down_revision)\b[^=\n]*=\s*(.+?)\s*$", re.MULTILINE)


def alembic_config(url: str) -> "Config":
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(intake_migrations.__file__).parent))
    # Alembic's config is an INI parser: a literal % in the URL must be doubled.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def revision(url: str, message: str, rev_id: str | None = None) -> None:
    """Autogenerate a migration from the difference between the models and the database."""
    from alembic import command

    command.revision(alembic_config(url), message=message, autogenerate=True, rev_id=rev_id)


def current_revision(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(url: str) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


@functools.cache
def declared_head() -> str | None:
    """The single head revision of the migration files, read as text (no Alembic import).

    None when it cannot be told this way (several heads, an unusual file): the caller then asks
    Alembic. tests/test_migrations.py checks that this agrees with ``head_revision``.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in VERSIONS_DIR.glob("*.py"):
        found = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        if "revision" not in found:
            continue
        try:
            rev = ast.literal_eval(found["revision"])
            down = ast.literal_eval(found.get("down_revision", "None"))
        except (ValueError, SyntaxError):
            return None
        revisions.add(rev)
        parents.update(down if isinstance(down, (tuple, list)) else [down] if down else [])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


# The one row Alembic keeps; read here and by the plain-driver path (intake.dbapi).
VERSION_QUERY = "SELECT version_num FROM alembic_version"


def stored_revision(engine: Engine) -> str | None:
    """The revision in the database's ``alembic_version`` table; None when there is none (or
    several). Failing to connect raises, as it should."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    # A read that never waits for a writer: on SQLite a plain connection begins IMMEDIATE
    # (intake/db.py), which would hold a starting worker behind any long write transaction.
    with engine.connect() as conn:
        conn = conn.execution_options(intake_readonly=True)
        try:
            rows = conn.execute(text(VERSION_QUERY)).scalars().all()
        except DBAPIError:  # no alembic_version table: a database never migrated
            return None
    return rows[0] if len(rows) == 1 else None


def is_head(stored: str | None) -> bool:
    """True when ``stored`` (the database's revision) is the migration files' one head."""
    head = declared_head()
    return head is not None and stored == head


def schema_is_current(engine: Engine) -> bool:
    """True when the database is at the migration files' head, told without Alembic."""
    return is_head(stored_revision(engine))


def ensure_schema(url: str, engine: Engine) -> bool:
    """Upgrade an embedded SQLite database that is behind; True when it ran migrations.

    Only for SQLite, the zero-setup default: a newcomer's first `intake serve` or `intake ingest`
    just works. A server database is upgraded by the operator's release step instead.
    """
    if engine.dialect.name != "sqlite" or schema_is_current(engine):
        return False
    if current_revision(engine) == head_revision(url):
        return False
    upgrade(url)
    return True

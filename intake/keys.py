"""The secret behind keyed hashes: ``INTAKE_SECRET_KEY``, or one generated once and kept in the DB.

A keyed hash (HMAC-SHA256) lets intake recognise a value it was told to forget (an erased
address in the audit trail) without keeping the value. Without a secret, anyone holding the
database could hash a guessed address and compare; with one, they also need the key. Production
sets ``INTAKE_SECRET_KEY`` (outside the database, so a copy of the database alone is not enough);
a newcomer's first run needs no setup, because a random key is generated on first use and kept in
the ``secrets`` table.

Each use derives its own key from the secret (``purpose``), so a hash made for one feature can
never be replayed as another's.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets as token_source
from typing import Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from intake.db import Database
from intake.models import Secret, utcnow

ENV_VAR = "INTAKE_SECRET_KEY"
SECRET_NAME = "intake"
KEY_BYTES = 32


def secret_key(db_or_session: Database | Session, env: Mapping[str, str] | None = None) -> bytes:
    """The installation's secret: the environment's, else the database's (made on first use).

    Given a ``Session``, a first-use key is inserted in the caller's transaction; given a
    ``Database``, in a short transaction of its own.
    """
    env = os.environ if env is None else env
    configured = env.get(ENV_VAR)
    if configured:
        return configured.encode("utf-8")
    if isinstance(db_or_session, Database):
        with db_or_session.session() as session:
            return _stored_key(session)
    return _stored_key(db_or_session)


def _stored_key(session: Session) -> bytes:
    found = session.scalar(select(Secret.value).where(Secret.name == SECRET_NAME))
    if found is not None:
        return bytes(found)
    # Two processes may generate at once: the unique name lets one insert win (the loser's
    # savepoint rolls back), and both then read the winner's key.
    try:
        with session.begin_nested():
            session.add(Secret(name=SECRET_NAME, value=token_source.token_bytes(KEY_BYTES), created_at=utcnow()))
    except IntegrityError:
        pass
    return bytes(session.scalar(select(Secret.value).where(Secret.name == SECRET_NAME)))


def keyed_hash(key: bytes, purpose: str, value: str) -> str:
    """HMAC-SHA256 of ``value`` under a key derived for ``purpose``; hex."""
    derived = hmac.new(key, purpose.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(derived, value.encode("utf-8"), hashlib.sha256).hexdigest()

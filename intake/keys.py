"""Intake's secret key, and keyed hashes built on it.

A keyed hash (HMAC-SHA256) lets intake recognise a value it was told to forget (an erased
address in the audit trail) without keeping the value. Without a secret, anyone holding the
database could hash a guessed address and compare; with one, they also need the key.

The key comes from ``INTAKE_SECRET_KEY`` (several comma-separated values rotate it: the first one
is used). Production sets it, outside the database, so a copy of the database alone is not
enough. Unset, a random key is generated on first use and kept in the ``secrets`` table, so a
fresh install needs no setup and every process of a deployment agrees.

The shape (table, row name, ``keyed_digest``) is the one the ``hostile`` branch gives its
``intake/keys.py`` for reply tokens, so the two merge into one module.
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

from intake.db import Database, is_unique_violation
from intake.models import Secret

ENV_VAR = "INTAKE_SECRET_KEY"
KEY_NAME = "secret_key"


def secret_key(db_or_session: Database | Session, env: Mapping[str, str] | None = None) -> bytes:
    """The key: the environment's first, else the database's (made on first use).

    Given a ``Session``, a first-use key is inserted in the caller's transaction (a job inside
    its transaction must not open a second write transaction: on SQLite it would wait on
    itself); given a ``Database``, in a short transaction of its own.
    """
    env = os.environ if env is None else env
    configured = [part.strip() for part in (env.get(ENV_VAR) or "").split(",") if part.strip()]
    if configured:
        return configured[0].encode("utf-8")
    if isinstance(db_or_session, Database):
        with db_or_session.session() as session:
            return _stored_key(session)
    return _stored_key(db_or_session)


def _stored_key(session: Session) -> bytes:
    found = session.scalar(select(Secret.value).where(Secret.name == KEY_NAME))
    if found is not None:
        return found.encode("utf-8")
    try:
        with session.begin_nested():  # two processes at once: the unique name lets one win
            session.add(Secret(name=KEY_NAME, value=token_source.token_urlsafe(32)))
    except IntegrityError as exc:
        if not is_unique_violation(exc):
            raise
    return session.scalar(select(Secret.value).where(Secret.name == KEY_NAME)).encode("utf-8")


def keyed_digest(key: bytes, purpose: str, message: str) -> bytes:
    """HMAC-SHA256 of ``message`` for one ``purpose`` (so one key serves several uses apart)."""
    return hmac.new(key, f"{purpose}\x00{message}".encode("utf-8"), hashlib.sha256).digest()


def keyed_hash(key: bytes, purpose: str, message: str) -> str:
    """``keyed_digest`` in hex, for a column or a JSON document."""
    return keyed_digest(key, purpose, message).hex()

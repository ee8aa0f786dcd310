"""Intake's secret key, and short keyed hashes built on it (reply tokens, and whatever else needs
a value an outsider cannot guess or forge).

The key comes from ``INTAKE_SECRET_KEY``; several comma-separated values rotate it (the first one
signs, every one verifies). Unset, a random key is generated on first use and kept in the
``secrets`` table, so a fresh install needs no setup and every process of a deployment agrees.
A key that was stored before ``INTAKE_SECRET_KEY`` was set keeps verifying, so setting it later
breaks no reply in flight.

Reads happen in the caller's session (a job inside its transaction must not open a second write
transaction: on SQLite it would wait on itself).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from typing import Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from intake.config import Settings
from intake.db import Database, is_unique_violation
from intake.models import Secret

KEY_NAME = "secret_key"
# Stored keys by database URL, once read back as committed rows (a key this process has just
# inserted is not cached: its transaction may still roll back).
_stored: dict[str, bytes] = {}


def signing_keys(session: Session, settings: Settings) -> list[bytes]:
    """Every key that verifies, the signing one first."""
    keys = [key.encode("utf-8") for key in settings.secret_keys]
    stored = _stored_key(session, create=not keys)
    if stored is not None:
        keys.append(stored)
    return keys


def secret_key(db_or_session: Database | Session, env: Mapping[str, str] | None = None) -> bytes:
    """The signing key alone (the first of ``INTAKE_SECRET_KEY``, else the stored one): what the
    privacy layer's keyed hashes of erased addresses use.

    Given a ``Session``, a first-use key is inserted in the caller's transaction; given a
    ``Database``, in a short transaction of its own.
    """
    env = os.environ if env is None else env
    configured = [part.strip() for part in (env.get("INTAKE_SECRET_KEY") or "").split(",") if part.strip()]
    if configured:
        return configured[0].encode("utf-8")
    if isinstance(db_or_session, Database):
        with db_or_session.session() as session:
            return _stored_key(session, create=True)
    return _stored_key(db_or_session, create=True)


def _stored_key(session: Session, *, create: bool) -> bytes | None:
    url = session.get_bind().url.render_as_string(hide_password=False)
    if url in _stored:
        return _stored[url]
    value = session.scalar(select(Secret.value).where(Secret.name == KEY_NAME))
    if value is not None:
        _stored[url] = value.encode("utf-8")
        return _stored[url]
    if not create:
        return None
    try:
        with session.begin_nested():  # two processes at once: the unique name lets one win
            session.add(Secret(name=KEY_NAME, value=secrets.token_urlsafe(32)))
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


def short_tag(key: bytes, purpose: str, message: str, length: int) -> str:
    """The first ``length`` characters of the digest in lower-case base32 (a-z, 2-7): short
    enough for a subject line, 5 bits of guessing per character."""
    return base64.b32encode(keyed_digest(key, purpose, message)).decode("ascii").lower()[:length]


def tag(session: Session, settings: Settings, purpose: str, message: str, length: int) -> str:
    """The tag of ``message`` under the signing key."""
    return short_tag(signing_keys(session, settings)[0], purpose, message, length)


def tag_matches(session: Session, settings: Settings, purpose: str, message: str, given: str) -> bool:
    """True when ``given`` is the tag of ``message`` under any key (compared in constant time)."""
    given = (given or "").lower()
    found = False
    for key in signing_keys(session, settings):
        found |= hmac.compare_digest(short_tag(key, purpose, message, len(given)), given)
    return found and bool(given)

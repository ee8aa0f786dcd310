"""Shared by the privacy tests: mail that names a person, and byte searches of the stores.

``leftovers_sqlite`` reads the database file and its ``-wal`` and ``-shm`` companions as bytes;
``leftovers_postgres`` asks PostgreSQL for every text, JSON and bytea column of the test schema.
Both look for needles case-insensitively and return where they were found.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from intake import inquiries
from intake.pipeline import process_stored

JANE = "jane.doe@example.org"
JANE_NAME = "Jane Doe"
# A phrase that appears only in Jane's messages (body and attachment), never elsewhere.
PHRASE = "purple giraffe sanctuary"
ATTACHMENT_PHRASE = "curriculum of jane's mentoring"
BOB = "bob.builder@example.net"
# Contains Jane's address as a substring: it must survive her erasure untouched.
MARY = "mary.jane.doe@example.org"


def email(*, sender: str, subject: str, body: str, to: str = "fellowship@civic.example",
          cc: str | None = None, message_id: str | None = None, in_reply_to: str | None = None,
          attachment: tuple[str, bytes] | None = None, date: str = "Mon, 16 Nov 2026 09:12:44 -0500") -> bytes:
    message_id = message_id or f"<{uuid.uuid4().hex}@mail.example>"
    head = [f"From: {sender}", f"To: {to}"] + ([f"Cc: {cc}"] if cc else []) + [
        f"Subject: {subject}", f"Date: {date}", f"Message-ID: {message_id}", "MIME-Version: 1.0",
    ]
    if in_reply_to:
        head += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
    if attachment is None:
        head += ['Content-Type: text/plain; charset="utf-8"', "", body, ""]
        return "\r\n".join(head).encode("utf-8")
    name, data = attachment
    head += [
        'Content-Type: multipart/mixed; boundary="b1"', "", "--b1",
        'Content-Type: text/plain; charset="utf-8"', "", body, "--b1",
        f'Content-Type: text/plain; name="{name}"', f'Content-Disposition: attachment; filename="{name}"',
        "Content-Transfer-Encoding: base64", "", base64.b64encode(data).decode(), "--b1--", "",
    ]
    return "\r\n".join(head).encode("utf-8")


def ingest(rt, raw: bytes, provider: str = "test"):
    """Store, then run the real pipeline (parse, thread, classify, and the jobs that follow)."""
    with rt.db.session() as session:
        stored = inquiries.store_raw(session, raw, provider=provider, provider_event_id=f"evt-{uuid.uuid4().hex[:8]}")
    return process_stored(rt, stored.message_id)


def jane_first_message_id() -> str:
    return "<jane-first@mail.example>"


def leftovers_sqlite(url: str, needles: list[str], *, allowed: tuple[str, ...] = (MARY,)) -> list[str]:
    """Needles found in the SQLite file, its WAL or its shared-memory index. ``allowed`` are
    longer strings that contain a needle and must stay (Mary's address contains Jane's)."""
    path = Path(make_url(url).database)
    found = []
    for suffix in ("", "-wal", "-shm"):
        file = Path(str(path) + suffix)
        if not file.exists():
            continue
        data = file.read_bytes().lower()
        for keep in allowed:
            data = data.replace(keep.lower().encode(), b"")
        found += [f"{file.name}: {needle}" for needle in needles if needle.lower().encode() in data]
    return found


def leftovers_postgres(url: str, needles: list[str], *, allowed: tuple[str, ...] = (MARY,)) -> list[str]:
    """Every text, varchar, json and bytea column of the test's schema, searched in SQL."""
    schema = make_url(url).query["options"].split("search_path=")[1]
    engine = create_engine(url)
    found = []
    try:
        with engine.connect() as conn:
            columns = conn.execute(text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = :schema AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'bytea')"
            ), {"schema": schema}).all()
            assert columns, "no columns found: wrong schema?"
            for table, column, kind in columns:
                # bytea as escape-encoded text: printable ASCII stays as it is, the rest \ooo.
                value = f'"{column}"' if kind != "bytea" else f"encode(\"{column}\", 'escape')"
                if kind in ("json", "jsonb"):
                    value = f'CAST("{column}" AS TEXT)'
                searched = f"lower({value})"
                for index, _ in enumerate(allowed):
                    searched = f"replace({searched}, :keep{index}, '')"
                for needle in needles:
                    hit = conn.execute(text(
                        f'SELECT count(*) FROM "{schema}"."{table}" WHERE strpos({searched}, :needle) > 0'
                    ), {"needle": needle.lower(), **{f"keep{i}": k.lower() for i, k in enumerate(allowed)}}).scalar()
                    if hit:
                        found.append(f"{table}.{column}: {needle}")
    finally:
        engine.dispose()
    return found

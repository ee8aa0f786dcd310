"""Helpers for the response-target tests: a runtime with an [sla] calendar in New York and
operator rules that make the category of a test email certain, real emails through the real
pipeline, and instants in the program's time zone (tests travel in time with time-machine)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from intake import inquiries
from intake.models import Inquiry
from intake.jobs import InlineQueue
from intake.runtime import Runtime

NY = ZoneInfo("America/New_York")
UTC = dt.timezone.utc
H = dt.timedelta(hours=1)
STAFF = "U100"

# Words that decide the category before the model does (intake.classify.rules).
RULES = [
    {"category": "press", "keywords": ["tag-press"], "reason": "test: press"},
    {"category": "partnership", "keywords": ["tag-partnership"], "reason": "test: partnership"},
    {"category": "general", "keywords": ["tag-general"], "reason": "test: general"},
]
SLA = {"timezone": "America/New_York", "oncall_usergroup": "S0ONCALL", "escalation_usergroup": "S0LEADS"}


def ny(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NY)


def utc(when: dt.datetime | None) -> dt.datetime | None:
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def with_sla(settings, **sla: Any):
    """The settings with our [sla] table and classifier rules merged over the defaults."""
    toml = dict(settings.toml)
    toml["sla"] = {**toml["sla"], **SLA, **sla}
    toml["classifier"] = {**toml.get("classifier", {}), "rules": RULES}
    return dataclasses.replace(settings, toml=toml)


def sla_runtime(settings, db, queue=None, **sla: Any) -> Runtime:
    return Runtime(with_sla(settings, **sla), db, queue=queue if queue is not None else InlineQueue())


def email(subject: str, body: str, *, sender: str = "ann@example.org", date: dt.datetime | None = None,
          in_reply_to: str | None = None, headers: dict[str, str] | None = None) -> tuple[bytes, str]:
    """RFC 822 bytes and their Message-ID."""
    msg = EmailMessage()
    msg["From"] = f"Ann Applicant <{sender}>"
    msg["To"] = "desk@fellowship.example.org"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or dt.datetime.now(UTC))
    message_id = f"{uuid.uuid4().hex}@example.org"
    msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
        msg["References"] = f"<{in_reply_to}>"
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    return msg.as_bytes(), message_id


def receive(rt: Runtime, raw: bytes, **store: Any) -> int:
    """Store and process one email as a webhook and the worker would; the inquiry id."""
    from intake.pipeline import process_stored

    with rt.db.session() as session:
        stored = inquiries.store_raw(session, raw, provider="test", **store)
    return process_stored(rt, stored.message_id).inquiry_id


def new_inquiry(rt: Runtime, tag: str = "tag-general", subject: str = "A question", **kw: Any) -> tuple[int, str]:
    raw, message_id = email(subject, f"Hello, {tag}: could you tell me more?", **kw)
    return receive(rt, raw), message_id


def load(rt: Runtime, inquiry_id: int) -> Inquiry:
    with rt.db.session() as session:
        row = session.get(Inquiry, inquiry_id)
        assert row is not None
        return row


def act(rt: Runtime, action: str, inquiry_id: int, *args: Any, actor: str = STAFF) -> None:
    """A staff action as the Slack listeners run it: one domain call in its own transaction."""
    with rt.db.session() as session:
        getattr(inquiries, action)(session, inquiry_id, *args, actor=actor)


def open_ids(rt: Runtime) -> list[int]:
    with rt.db.session() as session:
        return list(session.scalars(select(Inquiry.id).order_by(Inquiry.id)))

"""The inquiry store: typed SQLAlchemy 2 models.

The raw bytes of every message live in ``messages.raw`` exactly as they arrived; everything else
on a message row is derived from them and can be rebuilt. ``receipts`` is a ledger of every
delivery attempt (accepted or not) so that a gap can be proven or ruled out, and ``events`` is the
audit trail of every change a person or a job made.

Columns that more than one layer reads carry a comment; the migrations in ``migrations/`` are
generated from these models and a test fails when the two disagree.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from intake.states import DIRECTIONS, INQUIRY_STATUSES, MESSAGE_STATES, PARSE_STATUSES  # noqa: F401 (re-exported)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UtcDateTime(TypeDecorator):
    """``DateTime(timezone=True)`` that stores every aware value converted to UTC.

    SQLite keeps no offset: SQLAlchemy writes an aware datetime's wall-clock time and drops its
    zone, so an email's ``Date: 14:03 -0600`` came back as 14:03 UTC, six hours off. PostgreSQL
    converts by itself; converting first changes nothing there. Values read back are as before
    (naive UTC on SQLite, aware on PostgreSQL).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is not None:
            return value.astimezone(dt.timezone.utc)
        return value


# Stable constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dt.datetime: UtcDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Contact(Base):
    """One person or mailbox, keyed by the normalized (lower-cased, trimmed) address."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    inquiries: Mapped[list["Inquiry"]] = relationship(back_populates="contact")

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


class Inquiry(Base):
    __tablename__ = "inquiries"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    subject: Mapped[str] = mapped_column(Text, default="")
    # Subject without Re:/Fwd:/AW:/[#ID] prefixes, lower-cased: the fallback threading key.
    thread_subject: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[str] = mapped_column(String(16), default="new")
    category: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[float | None] = mapped_column(Float)
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False)
    automated: Mapped[bool] = mapped_column(Boolean, default=False)
    language: Mapped[str | None] = mapped_column(String(16))
    assignee: Mapped[str | None] = mapped_column(String(64))  # Slack user ID
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_message_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    first_response_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    # Where its triage card lives in Slack; set once posted so a retried job updates instead.
    slack_channel: Mapped[str | None] = mapped_column(String(32))
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    # Bumped by every staff action: a card's buttons carry the version they were drawn at, so a
    # double click or two people clicking the same button act once (intake.inquiries.lifecycle).
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Set when retention removed its text and addresses (intake.privacy); category, dates and
    # message counts stay so reports still add up.
    redacted_at: Mapped[dt.datetime | None]

    contact: Mapped[Contact | None] = relationship(back_populates="inquiries")
    messages: Mapped[list["Message"]] = relationship(
        back_populates="inquiry", order_by="Message.id"
    )
    classifications: Mapped[list["Classification"]] = relationship(
        back_populates="inquiry", order_by="Classification.id"
    )
    events: Mapped[list["Event"]] = relationship(back_populates="inquiry", order_by="Event.id")

    __table_args__ = (
        Index("ix_inquiries_status_category_received", "status", "category", "received_at"),
        Index("ix_inquiries_assignee_status", "assignee", "status"),
        Index("ix_inquiries_status_received", "status", "received_at"),
        Index("ix_inquiries_contact_thread_subject", "contact_id", "thread_subject"),
        Index("ix_inquiries_status_response_due", "status", "response_due"),
        # Issue 11 (tests/test_query_plans.py): `intake list` pages newest first with no filter,
        # and every card render finds the inquiries folded onto one Slack card by its place.
        Index("ix_inquiries_received_id", "received_at", "id"),
        Index("ix_inquiries_slack_card", "slack_channel", "slack_ts"),
    )

    # Response targets (issue 12), written only through intake.sla.clock.
    # When the first staff email reply is due (business time from arrival, by category; None:
    # the category has no target). Kept once met or stopped, for the reports.
    first_response_due: Mapped[dt.datetime | None]
    # The running clock: when the next staff email reply is due, or None when none is owed now
    # (met by a reply, paused by "waiting on applicant", stopped by closing). An applicant's
    # follow-up starts it again.
    response_due: Mapped[dt.datetime | None]


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    inquiry_id: Mapped[int | None] = mapped_column(ForeignKey("inquiries.id"), index=True)
    direction: Mapped[str] = mapped_column(String(16), default="inbound")
    # What kind of message: email (inbound), reply / acknowledgment (outbound), note (internal),
    # slack (logged from a Slack message), manual (logged by staff from a phone call).
    kind: Mapped[str] = mapped_column(String(32), default="email")
    source: Mapped[str] = mapped_column(String(32), default="email")  # email, slack, manual
    provider: Mapped[str | None] = mapped_column(String(32))  # sendgrid, mailgun, ..., cli
    # Inbound: "sha:<sha256 of the raw bytes>", so only a byte-identical re-delivery is a duplicate
    # (contact forms reuse Message-IDs for different messages). Outbound: "out:", "ack:", "reply:".
    # Unique so that two processes storing the same delivery at once produce one row.
    dedupe_key: Mapped[str] = mapped_column(String(1024), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[str | None] = mapped_column(Text)
    sender_address: Mapped[str | None] = mapped_column(String(320))
    sender_name: Mapped[str | None] = mapped_column(Text)
    reply_to: Mapped[str | None] = mapped_column(String(320))
    to_address: Mapped[str | None] = mapped_column(String(320), index=True)  # outbound: recipient
    recipients: Mapped[list[Any] | None]
    subject: Mapped[str | None] = mapped_column(Text)
    date: Mapped[dt.datetime | None]
    text_body: Mapped[str | None] = mapped_column(Text)
    latest_reply: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    automated: Mapped[bool] = mapped_column(Boolean, default=False)
    automation_reasons: Mapped[list[Any] | None]
    # Facts that are not in the MIME, as a small JSON object. Inbound: provider spam scores of
    # parsed-mode webhooks, the Slack user who logged it. Outbound: delivery notes, the
    # knowledge-base answer used (answer_key), the message acknowledged, the envelope sender.
    meta: Mapped[dict[str, Any] | None]
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    parse_status: Mapped[str] = mapped_column(String(16), default="pending")
    parse_error: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="received")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(64))  # Slack user who wrote an outbound/note
    slack_ts: Mapped[str | None] = mapped_column(String(32))  # its line in the card's thread
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Inbound: when processing finished. Outbound: when the current send attempt claimed the row
    # (a lease, so a crashed sender's message is retried only after it expires).
    processed_at: Mapped[dt.datetime | None]
    sent_at: Mapped[dt.datetime | None]
    # Inbound: is the From address really the sender's? "pass", "fail" or "none" (no evidence),
    # from the provider's SPF/DKIM/DMARC verdicts or a trusted Authentication-Results header
    # (intake.mail.authentication); null until processed. The reasons are for staff to read.
    authentication: Mapped[str | None] = mapped_column(String(16))
    authentication_reasons: Mapped[list[Any] | None]

    inquiry: Mapped[Inquiry | None] = relationship(back_populates="messages")
    attachments: Mapped[list["Attachment"]] = relationship(
        back_populates="message", order_by="Attachment.id"
    )

    __table_args__ = (
        Index("ix_messages_state_created", "state", "created_at"),
        Index("ix_messages_sender_created", "sender_address", "created_at"),
    )


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    # None when the attachment is larger than the configured limit (it stays in `messages.raw`).
    content: Mapped[bytes | None] = mapped_column(LargeBinary)

    message: Mapped[Message] = relationship(back_populates="attachments")


class Classification(Base):
    """Every label an inquiry ever had: from a rule, the model or a person (staff corrections)."""

    __tablename__ = "classifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    inquiry_id: Mapped[int] = mapped_column(ForeignKey("inquiries.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    category: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16))  # automated, rule, model, staff
    model_version: Mapped[str | None] = mapped_column(String(64))
    reasons: Mapped[list[Any] | None]
    actor: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    inquiry: Mapped[Inquiry] = relationship(back_populates="classifications")

    __table_args__ = (Index("ix_classifications_source", "source"),)


class Event(Base):
    """The audit trail: who (a Slack user ID or `system`), what, when.

    Kinds: received, follow_up, unparseable, reopened, claimed, assigned, reclassified, closed,
    marked_spam, marked_not_spam, note, waiting (on the applicant); outbound: reply_sent,
    ack_sent, ack_suppressed, cap_hit, smtp_delayed, send_failed.
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    inquiry_id: Mapped[int | None] = mapped_column(ForeignKey("inquiries.id"), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None]
    # Set once the event's line is posted in the card's thread, so a retried job posts it once.
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    inquiry: Mapped[Inquiry | None] = relationship(back_populates="events")

    __table_args__ = (Index("ix_events_kind_created", "kind", "created_at"),)


class Receipt(Base):
    """One delivery attempt from a provider, whatever came of it."""

    __tablename__ = "receipts"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_event_id: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # stored, duplicate, unparseable, rejected, unauthorized, invalid, too_large
    outcome: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    size: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)
    # When the message was erased (intake.privacy): ``message_id`` is then NULL and ``sha256``
    # keeps the hash of the bytes that arrived, so the ledger still proves nothing was lost
    # without keeping what was erased.
    sha256: Mapped[str | None] = mapped_column(String(64))
    erased_at: Mapped[dt.datetime | None]

    __table_args__ = (Index("ix_receipts_provider_received", "provider", "received_at"),)


class ModelVersion(Base):
    """A trained classifier, stored in the database so that every worker sees the same one."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    blob: Mapped[bytes] = mapped_column(LargeBinary)
    metrics: Mapped[dict[str, Any] | None]
    trained_on: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SeenNonce(Base):
    """Single-use values: Mailgun tokens, Slack event IDs. A unique row is the replay guard."""

    __tablename__ = "seen_nonces"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(255))
    seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("kind", "value", name="uq_seen_nonces_kind_value"),
        Index("ix_seen_nonces_seen_at", "seen_at"),
    )


# Delivery states. `pending` until delivered (`done`) or past its deadline (`failed`).
DELIVERY_STATES = ("pending", "done", "failed")


class Delivery(Base):
    """A side effect owed to the outside world (a Slack post, an email), written in the same
    transaction as the state change that caused it and delivered by the workers (intake.outbox).

    ``key`` makes owing idempotent: the same fact owed twice is one row. A row is claimed with a
    lease before its network call, so a worker killed mid-call leaves it to be retried, never
    lost; ``requested`` counts re-requests of a coalescing delivery (a card update asked for
    again while one runs is run once more, not dropped).
    """

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    inquiry_id: Mapped[int | None] = mapped_column(ForeignKey("inquiries.id"), index=True)
    args: Mapped[dict[str, Any] | None]
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    requested: Mapped[int] = mapped_column(Integer, default=1)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Past this wall-clock time a failing delivery is given up (`failed`) and staff are told.
    deadline: Mapped[dt.datetime]
    leased_until: Mapped[dt.datetime | None]
    first_failed_at: Mapped[dt.datetime | None]
    warned_at: Mapped[dt.datetime | None]  # when staff were told it is delayed (once)
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    done_at: Mapped[dt.datetime | None]

    __table_args__ = (Index("ix_deliveries_state_next_attempt", "state", "next_attempt_at"),)


class InquiryGroup(Base):
    """Open inquiries from different people that ask the same question (``intake.grouping``).

    A group keeps its id while its membership overlaps from one recomputation to the next, so a
    Slack card and "group 12" in a conversation stay meaningful; once fewer than two people are
    left it is dissolved, and its id is never reused.
    """

    __tablename__ = "inquiry_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    category: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(Text, default="")  # the question in a few words
    topics: Mapped[list[Any] | None]  # known topics most members mention (grouping/features.py)
    size: Mapped[int] = mapped_column(Integer, default=0)  # members now; 0 once dissolved
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    dissolved_at: Mapped[dt.datetime | None]
    # The group card in Slack, set once posted so a retried job updates instead.
    slack_channel: Mapped[str | None] = mapped_column(String(32))
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    answered_by: Mapped[str | None] = mapped_column(String(64))  # who used "Answer all" last
    answered_at: Mapped[dt.datetime | None]

    __table_args__ = (Index("ix_inquiry_groups_dissolved_category", "dissolved_at", "category"),)


class GroupMember(Base):
    """An inquiry's place in a group. A row with ``split_at`` set records that staff took the
    inquiry out: it is never grouped again."""

    __tablename__ = "group_members"

    inquiry_id: Mapped[int] = mapped_column(ForeignKey("inquiries.id"), primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("inquiry_groups.id"), index=True)
    joined_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    split_by: Mapped[str | None] = mapped_column(String(64))  # Slack user ID
    split_at: Mapped[dt.datetime | None]


class Secret(Base):
    """A value intake generates once and keeps: the key of its keyed hashes when
    ``INTAKE_SECRET_KEY`` is unset (intake.keys), so a fresh install needs no setup."""

    __tablename__ = "secrets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    value: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


def fit_identifier(value: str | None, length: int = 255) -> str | None:
    """An identifier from outside (a provider's event id, a replay token) as a column of
    ``length`` characters can hold it: unchanged when it fits and is plain text, otherwise
    ``sha256:<hex>`` of it. Hashing rather than cutting keeps two long ids distinct, and a NUL or a
    lone surrogate (which PostgreSQL refuses in text) never reaches the database."""
    if value is None:
        return None
    printable = value.isprintable() and not any("\ud800" <= ch <= "\udfff" for ch in value)
    if len(value) <= length and printable:
        return value
    data = value.encode("utf-8", "surrogatepass")
    return "sha256:" + hashlib.sha256(data).hexdigest()


class ImapLedger(Base):
    """Every message the IMAP reader took from a mailbox: (mailbox, UIDVALIDITY, UID), once.

    The row is written in the same transaction as the message's raw bytes, so a restart knows
    exactly what is stored; ``state`` says whether the message was then moved or flagged on the
    server (``stored`` -> ``done``), or left in place because it was refused (``skipped``, e.g.
    too large; its receipt says why). The highest UID of a (mailbox, UIDVALIDITY) is where the
    next pass resumes.
    """

    __tablename__ = "imap_ledger"

    id: Mapped[int] = mapped_column(primary_key=True)
    # user@host:port/folder (intake.imap.settings.Mailbox.name); never a password.
    mailbox: Mapped[str] = mapped_column(String(512))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    # SET NULL: erasing a message (a person's data) must not be blocked by this bookkeeping.
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16))  # stored, done, skipped
    stored_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    done_at: Mapped[dt.datetime | None]

    __table_args__ = (
        UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_imap_ledger_mailbox_uid"),
        Index("ix_imap_ledger_mailbox_state", "mailbox", "state"),
    )

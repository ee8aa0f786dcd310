"""Who must never get an automatic reply, and how much automatic mail one address may get.

Mail loops between two robots (our acknowledgment answering their out-of-office answering our
acknowledgment...) are the classic help-desk failure. The defences are layered on purpose:

1. Header evidence, read here straight from the stored raw bytes with the stdlib's tolerant
   header parser, so the check does not depend on any other layer getting it right.
2. The mail layer's own verdict (``ParsedEmail.automation``) and the classifier's category and
   ``automated`` flag, when present.
3. Rate caps counted from the outbound rows in the database, which stop a loop that slipped
   through 1 and 2 after a handful of messages.

Every refusal carries a reason string that ends up in an ``ack_suppressed`` / ``cap_hit`` event.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.parser import BytesParser
from email.policy import compat32
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.mail import automation
from intake.mail.headers import parse_addresses
from intake.mail.types import Address, first_header
from intake.models import Message, utcnow
from intake.outbound.settings import Cap


@dataclass
class MailFacts:
    """What the loop checks need from an inbound message."""

    from_address: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    automation_reasons: list[str] = field(default_factory=list)  # from the mail layer

    def header(self, name: str) -> str | None:
        return first_header(self.headers, name)

    @property
    def reply_address(self) -> str | None:
        """RFC 3834 3.1: a responder answers Reply-To when present, otherwise From."""
        return self.reply_to or self.from_address


def _decoded(value: str) -> str:
    """RFC 2047 words decoded; the undecoded text when the encoding is broken."""
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


def _first_address(value: str | None) -> tuple[str | None, str | None]:
    """(display name, address) of the first mailbox, read the mail layer's way: the address from
    the addr-spec, never from a display name (``=?utf-8?q?John_<ceo@x>?= <attacker@y>``)."""
    found = parse_addresses([str(value)]) if value else []
    if not found:
        return None, None
    return found[0].name, found[0].address


def facts_from_raw(raw: bytes) -> MailFacts:
    """Header facts via the stdlib's compat32 parser, which never raises on broken headers."""
    msg = BytesParser(policy=compat32).parsebytes(raw, headersonly=True)
    headers = [(k, str(v)) for k, v in msg.items()]
    facts = MailFacts(headers=headers)
    facts.from_name, facts.from_address = _first_address(msg.get("From"))
    _, facts.reply_to = _first_address(msg.get("Reply-To"))
    return facts


def header_blockers(facts: MailFacts, own_addresses: Iterable[str]) -> list[str]:
    """Every reason this message must not get an automatic reply (empty: a person wrote it).

    Any finding of the mail layer's rules blocks here, certain or only a hint: a mailing list
    or a role mailbox is not certainly a robot, but it is never answered automatically."""
    own = {a.lower() for a in own_addresses if a}
    sender = Address(facts.from_address, facts.from_name) if facts.from_address else None
    subject = _decoded(facts.header("Subject") or "")
    reasons = [f.reason for f in automation.message_findings(facts.header, subject=subject, sender=sender)]
    for label, address in (("sender", facts.from_address), ("reply address", facts.reply_address)):
        if not address:
            reasons.append(f"no {label}")
        elif address in own:
            reasons.append(f"{label} is our own address")
    # The sender's mailbox is among the findings above; a Reply-To can name a robot of its own.
    if facts.reply_to and (robot := automation.robot_mailbox(facts.reply_to)) is not None:
        reasons.append(f"reply address {facts.reply_to} is a robot mailbox ({robot.reason})")
    reasons.extend(facts.automation_reasons)
    return list(dict.fromkeys(reasons))


# Outbound mail that went or will go: what the caps count.
COUNTED_STATES = ("queued", "sending", "sent")


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


@dataclass
class OutboundHistory:
    """The outbound mail to some addresses within a window, read in one query, so that every
    check of a batch (each acknowledgment's per-sender limit and caps, each email's caps) is
    answered without asking again. Rows queued later in the same transaction are added with
    :meth:`add`. Addresses are compared in their normalized lower-case form, as stored."""

    now: dt.datetime
    rows: dict[str, list[tuple[int, dt.datetime, str]]] = field(default_factory=dict)

    def add(self, address: str, message_id: int, created_at: dt.datetime, kind: str) -> None:
        self.rows.setdefault(address.lower(), []).append((message_id, _aware(created_at), kind))

    def discard(self, address: str, message_id: int) -> None:
        """Forget a message (held back by a cap in the same transaction: it will not go)."""
        rows = self.rows.get(address.lower(), [])
        rows[:] = [row for row in rows if row[0] != message_id]

    def count(self, address: str, seconds: int, *, kinds: tuple[str, ...] | None = None,
              before_id: int | None = None) -> int:
        """Messages to ``address`` created in the last ``seconds`` (of ``kinds``; older than
        ``before_id``, so that of many queued at once the first go and the later are held)."""
        since = self.now - dt.timedelta(seconds=seconds)
        return sum(1 for message_id, created_at, kind in self.rows.get(address.lower(), ())
                   if created_at >= since and (kinds is None or kind in kinds)
                   and (before_id is None or message_id < before_id))

    def cap_exceeded(self, address: str, caps: Iterable[Cap], *, before_id: int | None = None) -> Cap | None:
        """The first hard ceiling that one more message to ``address`` would break, if any."""
        for cap in caps:
            if self.count(address, cap.seconds, before_id=before_id) >= cap.limit:
                return cap
        return None


def outbound_history(session: Session, addresses: Iterable[str], seconds: int, *,
                     now: dt.datetime | None = None) -> OutboundHistory:
    """The counted outbound mail to these addresses over the last ``seconds`` (served by the
    index on ``messages.to_address``, which holds normalized addresses)."""
    history = OutboundHistory(now or utcnow())
    wanted = sorted({a.lower() for a in addresses if a})
    if not wanted:
        return history
    since = history.now - dt.timedelta(seconds=seconds)
    rows = session.execute(
        select(Message.id, Message.to_address, Message.created_at, Message.kind).where(
            Message.direction == "outbound",
            Message.to_address.in_(wanted),
            Message.created_at >= since,
            Message.state.in_(COUNTED_STATES),
        )
    )
    for message_id, to_address, created_at, kind in rows:
        history.add(to_address, message_id, created_at, kind)
    return history


def recent_count(
    session: Session,
    address: str,
    seconds: int,
    *,
    kinds: tuple[str, ...] | None = None,
    before_id: int | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Outbound messages to ``address`` created in the last ``seconds`` that went or will go."""
    return outbound_history(session, [address], seconds, now=now).count(
        address, seconds, kinds=kinds, before_id=before_id)


def cap_exceeded(
    session: Session, address: str, caps: Iterable[Cap], *, before_id: int | None = None
) -> Cap | None:
    """The first hard ceiling that one more message to ``address`` would break, if any."""
    caps = list(caps)
    if not caps:
        return None
    history = outbound_history(session, [address], max(cap.seconds for cap in caps))
    return history.cap_exceeded(address, caps, before_id=before_id)

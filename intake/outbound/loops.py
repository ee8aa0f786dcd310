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

from sqlalchemy import func, select
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


def recent_count(
    session: Session,
    address: str,
    seconds: int,
    *,
    kinds: tuple[str, ...] | None = None,
    before_id: int | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Outbound messages to ``address`` created in the last ``seconds`` that went or will go.

    ``before_id`` counts only rows older than a given one, so that when many messages to one
    address are queued at once the first ones go and the later ones are held, deterministically.
    """
    since = (now or utcnow()) - dt.timedelta(seconds=seconds)
    query = select(func.count(Message.id)).where(
        Message.direction == "outbound",
        func.lower(Message.to_address) == address.lower(),
        Message.created_at >= since,
        Message.state.in_(("queued", "sending", "sent")),
    )
    if kinds:
        query = query.where(Message.kind.in_(kinds))
    if before_id is not None:
        query = query.where(Message.id < before_id)
    return int(session.scalar(query) or 0)


def cap_exceeded(
    session: Session, address: str, caps: Iterable[Cap], *, before_id: int | None = None
) -> Cap | None:
    """The first hard ceiling that one more message to ``address`` would break, if any."""
    for cap in caps:
        if recent_count(session, address, cap.seconds, before_id=before_id) >= cap.limit:
            return cap
    return None

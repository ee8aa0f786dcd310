"""Who a person is in the store: what ``forget`` erases and ``export`` hands over.

The rule, decided once and used by both:

- **their inquiries**: every inquiry whose contact is the address, and every inquiry whose inbound
  messages all came from it (an unparseable or not yet processed message has no contact yet);
  erased whole, with every message, note, reply, label and event in them;
- **their messages elsewhere**: in anyone else's inquiry, a message they sent (From, Sender or
  Reply-To) or one we sent to them; erased, the rest of that conversation stays;
- **mentions**: anywhere else the address (or a display name of two words or more that they used)
  appears, such as a Cc in someone else's conversation, a quoted address in a body, an event's
  detail. Those rows belong to someone else, so only the address and name are replaced by
  ``[erased]`` (see ``erasure.sweep``).

Text they wrote that someone else quoted without their address (a reply quoting their words)
cannot be told apart from the quoting person's own text and is not found.
"""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass, field
from email.utils import getaddresses

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from intake import mail
from intake.models import Contact, Inquiry, Message

# Headers that make a not-yet-parsed message "theirs" (the parsed columns are still empty).
SENDER_HEADERS = ("from", "sender", "reply-to")
# Messages whose parsed columns are not filled in (yet): their raw headers are read instead.
UNPARSED = ("pending", "unparseable")


@dataclass
class Footprint:
    address: str
    contact_id: int | None
    names: tuple[str, ...]
    inquiry_ids: list[int] = field(default_factory=list)
    message_ids: list[int] = field(default_factory=list)  # theirs, in someone else's inquiry

    @property
    def empty(self) -> bool:
        return self.contact_id is None and not self.inquiry_ids and not self.message_ids


class NotAnAddress(ValueError):
    pass


def normalized(address: str, *, own_address: str | None = None) -> str:
    """The address as the store keeps it, or NotAnAddress.

    Intake's own address is refused: every reply we sent is "from" it, so erasing it as a person
    would erase every conversation's outbound half.
    """
    value = mail.normalize_address(address or "")
    local, at, domain = value.rpartition("@")
    if not (local and at and domain) or any(ch.isspace() for ch in value):
        raise NotAnAddress(f"{address!r} is not an email address (expected name@example.org)")
    if own_address and value == mail.normalize_address(own_address):
        raise NotAnAddress(f"{value} is intake's own address (INTAKE_FROM_ADDRESS), not a person's")
    return value


def _header_senders(raw: bytes) -> set[str]:
    """Sender addresses from the header block alone: what a message not yet parsed claims."""
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw[:262144])
        values = [str(v) for name in SENDER_HEADERS for v in headers.get_all(name, [])]
        return {mail.normalize_address(addr) for _, addr in getaddresses(values) if addr}
    except Exception:  # noqa: BLE001 - a header block beyond repair names no one
        return set()


def find(session: Session, address: str) -> Footprint:
    """Everything that is this person's, by the rule in the module docstring."""
    address = normalized(address)
    contact = session.scalar(select(Contact).where(Contact.address == address))
    inquiry_ids: set[int] = set()
    names: set[str] = set()
    if contact is not None:
        inquiry_ids.update(session.scalars(select(Inquiry.id).where(Inquiry.contact_id == contact.id)))
        if contact.name:
            names.add(contact.name)
    theirs = session.execute(
        select(Message.id, Message.inquiry_id, Message.sender_name, Message.sender_address).where(
            or_(
                Message.sender_address == address,
                Message.reply_to == address,
                (Message.direction == "outbound") & (Message.to_address == address),
            )
        )
    ).all()
    message_ids = {row.id for row in theirs}
    names.update(row.sender_name for row in theirs if row.sender_name and row.sender_address == address)
    # Messages whose columns are not parsed: their headers decide (a bytes scan of each).
    unparsed = session.execute(
        select(Message.id, Message.raw).where(Message.parse_status.in_(UNPARSED), Message.direction == "inbound")
    ).all()
    message_ids.update(row.id for row in unparsed if address in _header_senders(row.raw))
    # An inquiry all of whose inbound messages are theirs is theirs, whoever its contact is.
    if message_ids:
        holding = set(session.scalars(
            select(Message.inquiry_id).where(Message.id.in_(message_ids), Message.inquiry_id.is_not(None))
        ))
        others = set(session.scalars(
            select(Message.inquiry_id).where(
                Message.inquiry_id.in_(holding), Message.direction == "inbound", Message.id.not_in(message_ids)
            )
        ))
        inquiry_ids.update(holding - others)
    elsewhere = session.scalars(
        select(Message.id).where(
            Message.id.in_(message_ids),
            or_(Message.inquiry_id.is_(None), Message.inquiry_id.not_in(inquiry_ids or {0})),
        )
    )
    return Footprint(
        address=address,
        contact_id=contact.id if contact is not None else None,
        names=tuple(sorted(n for n in names if is_distinctive_name(n))),
        inquiry_ids=sorted(inquiry_ids),
        message_ids=sorted(elsewhere),
    )


def is_distinctive_name(name: str) -> bool:
    """A display name worth erasing wherever it appears: two words or more ("Ann Lee"), so a
    lone first name never wipes out every other Ann."""
    words = name.split()
    return len(words) >= 2 and sum(len(w) for w in words) >= 5 and "@" not in name


def message_count(session: Session, inquiry_ids: list[int]) -> int:
    if not inquiry_ids:
        return 0
    return session.scalar(select(func.count(Message.id)).where(Message.inquiry_id.in_(inquiry_ids))) or 0

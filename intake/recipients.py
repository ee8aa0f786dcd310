"""Where a staff reply goes: the address the conversation has used, never one a message asks for.

A message can carry any From and any Reply-To; when a forged follow-up ("From: the applicant,
Reply-To: mallory, Re: ... [#1]") could redirect the next staff reply, one email is enough to
read the desk's answers to someone else. So the default recipient is the conversation's own
address: the one staff last replied to, else the address that opened the inquiry. Other
addresses seen in the conversation (a Reply-To, a new sender) are offered beside it, with why
and whether the message they came with passed sender authentication, and are used only when a
staff member picks one in the reply modal.

One rule, read by everything that needs it: the outbound layer (``queue_reply``), the reply
modal and the card, and ``intake show --json`` (``"reply_to"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from typing import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, load_only

from intake.models import Inquiry, Message
from intake.outbound.compose import InvalidAddress, validate_address

# Outbound kinds that show where staff chose to answer (acknowledgments go to the From address).
STAFF_KINDS = ("reply",)
LIVE_STATES = ("queued", "sending", "sent")
MAX_MESSAGES = 50  # the most recent inbound messages whose addresses are offered


@dataclass(frozen=True)
class Recipient:
    address: str
    name: str | None
    # conversation (the default), sender (wrote in this conversation), reply_to (asked for by a
    # message's Reply-To), previous (staff replied there before)
    kind: str
    note: str  # why it is offered, for staff to read
    # Whether the message it came with passed sender authentication: True, False, None unknown.
    verified: bool | None = None

    @property
    def label(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address


@dataclass(frozen=True)
class ReplyOptions:
    default: Recipient | None
    others: list[Recipient] = field(default_factory=list)

    def all(self) -> list[Recipient]:
        return ([self.default] if self.default else []) + self.others

    @property
    def new_reply_to(self) -> list[Recipient]:
        """Reply-To addresses that are new to the conversation (the card shows them)."""
        return [r for r in self.others if r.kind == "reply_to"]


class NotOffered(ValueError):
    """An address that is not one of the inquiry's reply options (a tampered form, a typo)."""


def _valid(address: str | None) -> str | None:
    try:
        return validate_address(address)
    except InvalidAddress:
        return None


def _verified(message: Message) -> bool | None:
    return {"pass": True, "fail": False}.get(message.authentication or "")


def reply_options(session: Session, inquiry_id: int) -> ReplyOptions:
    return reply_options_many(session, [inquiry_id])[inquiry_id]


# What the rule reads of a message (never its raw bytes or text).
_COLUMNS = (Message.id, Message.inquiry_id, Message.direction, Message.kind, Message.state, Message.sender_address,
            Message.sender_name, Message.reply_to, Message.to_address, Message.authentication)


def reply_options_many(session: Session, inquiry_ids: Sequence[int]) -> dict[int, ReplyOptions]:
    """:func:`reply_options` for several inquiries, read with two queries (a batch of cards)."""
    ids = list(dict.fromkeys(inquiry_ids))
    found: dict[int, ReplyOptions] = {i: ReplyOptions(None) for i in ids}
    if not ids:
        return found
    inquiries = {i.id: i for i in session.scalars(
        select(Inquiry).options(joinedload(Inquiry.contact)).where(Inquiry.id.in_(ids)))}
    inbound: dict[int, list[Message]] = {}
    for message in session.scalars(
        select(Message).options(load_only(*_COLUMNS))
        .where(Message.inquiry_id.in_(list(inquiries)), Message.direction == "inbound").order_by(Message.id.desc())
    ):
        rows = inbound.setdefault(message.inquiry_id, [])
        if len(rows) < MAX_MESSAGES:
            rows.append(message)
    replied: dict[int, list[Message]] = {}
    for message in session.scalars(
        select(Message).options(load_only(*_COLUMNS))
        .where(Message.inquiry_id.in_(list(inquiries)), Message.direction == "outbound",
               Message.kind.in_(STAFF_KINDS), Message.state.in_(LIVE_STATES))
        .order_by(Message.id.desc())
    ):
        replied.setdefault(message.inquiry_id, []).append(message)
    for inquiry_id, inquiry in inquiries.items():
        found[inquiry_id] = _options(inquiry, inbound.get(inquiry_id, []), replied.get(inquiry_id, []))
    return found


def _options(inquiry: Inquiry, inbound: list[Message], replied: list[Message]) -> ReplyOptions:
    """The rule, on the inquiry's latest inbound messages and its staff replies (newest first)."""
    names = {m.sender_address: m.sender_name for m in reversed(inbound) if m.sender_address and m.sender_name}
    contact = inquiry.contact
    if contact is not None and contact.name:
        names.setdefault(contact.address, contact.name)

    default: Recipient | None = None
    for message in replied:
        address = _valid(message.to_address)
        if address:
            default = Recipient(address, names.get(address), "conversation", "where staff last replied")
            break
    if default is None and contact is not None and _valid(contact.address):
        default = Recipient(contact.address, contact.name, "conversation", "the address that opened the inquiry")
    if default is None:  # no contact (an unparseable first message): the oldest valid sender
        for message in reversed(inbound):
            address = _valid(message.sender_address)
            if address:
                default = Recipient(address, message.sender_name, "conversation", "the first sender")
                break

    known = {default.address} if default else set()
    # Addresses the conversation has used: a Reply-To among them is nothing new.
    used = known | {m.to_address for m in replied if m.to_address}
    used |= {m.sender_address for m in inbound if m.sender_address}
    if contact is not None:
        used.add(contact.address)
    others: list[Recipient] = []

    def offer(recipient: Recipient) -> None:
        if recipient.address not in known:
            known.add(recipient.address)
            others.append(recipient)

    for message in inbound:
        sender = _valid(message.sender_address)
        reply_to = _valid(message.reply_to)
        if reply_to and reply_to not in used:
            failed = " (that message failed sender authentication)" if _verified(message) is False else ""
            offer(Recipient(reply_to, None, "reply_to",
                            f"Reply-To of a message from {message.sender_address or 'an unknown sender'}{failed}",
                            _verified(message)))
        if sender:
            verified = _verified(message)
            note = "wrote in this conversation" + (" (failed sender authentication)" if verified is False else "")
            offer(Recipient(sender, message.sender_name, "sender", note, verified))
    for message in replied:
        address = _valid(message.to_address)
        if address:
            offer(Recipient(address, names.get(address), "previous", "staff replied there before"))
    return ReplyOptions(default, others)


def reply_address(session: Session, inquiry_id: int) -> str | None:
    """The address a staff reply would go to now."""
    default = reply_options(session, inquiry_id).default
    return default.address if default else None


def choose(session: Session, inquiry_id: int, address: str | None = None) -> Recipient | None:
    """The recipient for a reply: the default, or ``address`` when it is one of the options."""
    options = reply_options(session, inquiry_id)
    if not address:
        return options.default
    wanted = address.strip().lower()
    for recipient in options.all():
        if recipient.address.lower() == wanted:
            return recipient
    raise NotOffered(f"{address!r} is not one of the addresses of inquiry #{inquiry_id}")

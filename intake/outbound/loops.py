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
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.parser import BytesParser
from email.policy import compat32
from typing import Any, Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake.mail.headers import parse_addresses
from intake.mail.types import first_header
from intake.models import Message, utcnow
from intake.outbound.options import Cap

# Local parts that are robots by convention (RFC 2142 role mailboxes among them).
ROBOT_LOCAL_RE = re.compile(
    r"^(mailer-daemon|postmaster|no[-_.]?reply|do[-_.]?not[-_.]?reply|noreply-.*|.*-noreply"
    r"|bounces?(\+.*|-.*)?|bounce-.*|auto[-_.]?(reply|responder|confirm)|daemon|mail-daemon"
    r"|listserv|majordomo|.*-request|.*-bounces(\+.*)?|notifications?|root|abuse|nobody)$",
    re.I,
)
SUBJECT_ROBOT_RE = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesenheit"
    r"|undeliver(able|ed)|undelivered mail|delivery (status notification|failure|has failed)"
    r"|mail delivery (failed|failure|subsystem)|returned mail|failure notice|delivery notification"
    r"|read:|read receipt|r[ée]ponse automatique|respuesta autom[áa]tica|abuse report)",
    re.I,
)
SUPPRESS_VALUES = ("all", "autoreply", "oof", "dr", "ndr", "rn", "nrn")


@dataclass
class MailFacts:
    """What the loop checks need from an inbound message."""

    from_address: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    return_path: str | None = None  # None: header absent; "": null path <>
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = ""
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
    facts = MailFacts(headers=headers, content_type=(msg.get_content_type() or "").lower())
    facts.from_name, facts.from_address = _first_address(msg.get("From"))
    _, facts.reply_to = _first_address(msg.get("Reply-To"))
    rp = msg.get("Return-Path")
    if rp is not None:
        _, addr = _first_address(str(rp))
        facts.return_path = addr or ""
    return facts


def merge_parsed(facts: MailFacts, parsed: Any) -> MailFacts:
    """Prefer the mail layer's decoded addresses; keep its automation verdict as evidence."""
    sender = getattr(parsed, "sender", None)
    if sender is not None and getattr(sender, "address", None):
        facts.from_address = sender.address.lower()
        facts.from_name = sender.name or facts.from_name
    reply_to = getattr(parsed, "reply_to", None)
    if reply_to is not None and getattr(reply_to, "address", None):
        facts.reply_to = reply_to.address.lower()
    if getattr(parsed, "return_path", None) is not None:
        facts.return_path = parsed.return_path
    automation = getattr(parsed, "automation", None)
    if automation is not None:
        if automation.automated or automation.suppress_auto_reply or automation.is_list:
            kind = automation.kind or ("list" if automation.is_list else "automated")
            facts.automation_reasons.append(f"mail layer: {kind}")
    return facts


def is_robot_address(address: str | None) -> bool:
    if not address:
        return True
    local = address.rpartition("@")[0]
    return bool(ROBOT_LOCAL_RE.match(local))


def header_blockers(facts: MailFacts, own_addresses: Iterable[str]) -> list[str]:
    """Every reason this message must not get an automatic reply (empty: a person wrote it)."""
    reasons: list[str] = []
    own = {a.lower() for a in own_addresses if a}

    auto = (facts.header("Auto-Submitted") or "").strip().lower()
    if auto and not auto.startswith("no"):
        reasons.append(f"Auto-Submitted: {auto[:40]}")
    suppress = (facts.header("X-Auto-Response-Suppress") or "").lower()
    if any(v in re.split(r"[\s,;]+", suppress) for v in SUPPRESS_VALUES):
        reasons.append(f"X-Auto-Response-Suppress: {suppress[:40]}")
    precedence = (facts.header("Precedence") or "").strip().lower()
    if precedence in ("bulk", "list", "junk", "auto_reply"):
        reasons.append(f"Precedence: {precedence}")
    for name in ("List-Id", "List-Unsubscribe", "List-Post", "X-Mailing-List"):
        if facts.header(name) is not None:
            reasons.append(f"mailing list ({name})")
            break
    for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Reply-From", "X-Failed-Recipients",
                 "Feedback-Type", "X-Loop"):
        if facts.header(name) is not None:
            reasons.append(f"robot header {name}")
    if facts.content_type in ("multipart/report", "message/delivery-status",
                              "message/disposition-notification", "message/feedback-report"):
        reasons.append(f"report ({facts.content_type})")
    if facts.return_path == "":
        reasons.append("empty return path")
    for label, address in (("sender", facts.from_address), ("reply address", facts.reply_address)):
        if not address:
            reasons.append(f"no {label}")
        elif address in own:
            reasons.append(f"{label} is our own address")
        elif is_robot_address(address):
            reasons.append(f"{label} {address} is a robot mailbox")
    subject = _decoded(facts.header("Subject") or "")
    if SUBJECT_ROBOT_RE.match(subject):
        reasons.append("automatic-reply or bounce subject")
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

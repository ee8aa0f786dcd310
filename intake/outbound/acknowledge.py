"""The automatic acknowledgment of a new inquiry: friendly for people, silent for robots.

One acknowledgment per inbound message at most (its row's dedupe key is ``ack:<message row id>``,
unique in the database, so even two workers racing produce one), only for the message that
opened the inquiry, only for categories the operator enabled, never to anything that looks
automated (see :mod:`intake.outbound.loops`) and never beyond the per-recipient caps. Every
refusal other than "not enabled" is recorded as an ``ack_suppressed`` or ``cap_hit`` event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from intake import tickets
from intake.db import is_unique_violation
from intake.events import record_event
from intake.models import Inquiry, Message
from intake.outbound.compose import Draft, InvalidAddress, compose, header_text, references_chain, reply_subject, validate_address
from intake.outbound.knowledge import suggest_answer
from intake.outbound.loops import MailFacts, cap_exceeded, facts_from_raw, header_blockers, recent_count
from intake.outbound.options import OutboundOptions, load_options
from intake.outbound.settings import NEVER_ACKNOWLEDGE
from intake.outbound.replies import store_outbound
from intake.outbound.templates import ack_template, first_name, render
from intake.outbox import Ticket, deliverer

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AckResult:
    status: str  # queued, exists, skipped, suppressed, capped
    reason: str = ""
    outbound_id: int | None = None


def mail_facts(message: Message) -> MailFacts:
    """The loop checks' facts: header evidence read from the raw bytes with the stdlib's tolerant
    header-only parser, and the mail layer's verdict as stored when the message was processed
    (no second full parse)."""
    facts = facts_from_raw(message.raw)
    if message.sender_address:
        facts.from_address = message.sender_address.lower()
        facts.from_name = message.sender_name or facts.from_name
    if message.reply_to:
        facts.reply_to = message.reply_to.lower()
    if message.automated:
        kinds = ", ".join(str(r) for r in (message.automation_reasons or [])[:3]) or "automated"
        facts.automation_reasons.append(f"mail layer: {kinds}")
    return facts


def _is_first_inbound(session: Session, message: Message) -> bool:
    first = session.scalar(
        select(Message.id)
        .where(Message.inquiry_id == message.inquiry_id, Message.direction == "inbound")
        .order_by(Message.id)
        .limit(1)
    )
    return first == message.id


def _suppress(session: Session, inquiry_id: int, message_id: int, kind: str, reasons: list[str], **detail: Any) -> None:
    log.info("no acknowledgment for message %s: %s", message_id, "; ".join(reasons))
    record_event(session, inquiry_id, "system", kind, message_id=message_id, reasons=reasons[:10], **detail)


def _quotable(message: Message) -> bool:
    """Issue 10: only an authenticated sender's own words (subject, name) go back out in an
    acknowledgment; a forged From would otherwise make us deliver a spammer's subject line."""
    return message.authentication == "pass"


def _body(rt: "Runtime", options: OutboundOptions, inquiry: Inquiry, message: Message, facts: MailFacts) -> tuple[str, str | None]:
    """The rendered template, with the knowledge-base answer when the category allows it."""
    answer_text, answer_key = "", None
    if inquiry.category in options.config.answer_categories:
        text = message.latest_reply or message.text_body or ""
        suggestion = suggest_answer(rt.settings, f"{inquiry.subject}\n{text}", inquiry.category)
        if suggestion is not None and suggestion.score >= options.config.answer_min_score:
            answer_text = f"\nIn the meantime, this may already answer your question:\n\n{suggestion.answer}\n"
            answer_key = suggestion.key
    quotable = _quotable(message)
    sender_name = (facts.from_name or message.sender_name) if quotable else None
    values = {
        "first_name": first_name(sender_name),
        "name": (sender_name or "").strip(),
        "subject": (header_text(inquiry.subject or message.subject) if quotable else "") or "your message",
        "inquiry_id": str(inquiry.id),
        "reference": f"#{inquiry.id}",
        "answer": answer_text,
        "program": options.config.program_name,
    }
    body = render(ack_template(options.config.ack_templates, inquiry.category), values)
    if options.config.signature.strip():
        body = f"{body.rstrip()}\n\n{options.config.signature.strip()}"
    return body.rstrip() + "\n", answer_key


def acknowledge(rt: "Runtime", message_id: int) -> AckResult:
    """Decide the acknowledgment for inbound message row ``message_id`` and, if one is due,
    queue it: the outbound row and its ``email.send`` delivery commit together."""
    options = load_options(rt.settings)
    if not options.config.ack_enabled:
        return AckResult("skipped", "acknowledgments are off")
    with rt.db.session() as session:
        return _decide_and_queue(rt, session, options, message_id)


@deliverer("email.acknowledge", channel="email")
def deliver_acknowledgment(rt: "Runtime", ticket: Ticket) -> str:
    return acknowledge(rt, int(ticket.args["message_id"])).status


def _decide_and_queue(rt: "Runtime", session: Session, options: OutboundOptions, message_id: int) -> AckResult:
    message = session.get(Message, message_id)
    if message is None or message.direction != "inbound" or message.inquiry_id is None:
        return AckResult("skipped", "not an inbound message of an inquiry")
    existing = session.scalar(select(Message).where(Message.dedupe_key == f"ack:{message.id}"))
    if existing is not None:
        return AckResult("exists", existing.state, existing.id if existing.state == "queued" else None)
    inquiry = session.get(Inquiry, message.inquiry_id)
    assert inquiry is not None
    if message.source != "email":
        return AckResult("skipped", f"logged by staff ({message.source}), not written to us")
    if not _is_first_inbound(session, message):
        return AckResult("skipped", "a follow-up, not a new inquiry")
    if inquiry.category not in options.config.ack_categories and inquiry.category not in NEVER_ACKNOWLEDGE:
        return AckResult("skipped", f"acknowledgments are off for {inquiry.category}")

    reasons: list[str] = []
    if inquiry.category in NEVER_ACKNOWLEDGE:
        reasons.append(f"category {inquiry.category}")
    if inquiry.status == "spam":
        reasons.append("marked as spam")
    if message.automated or inquiry.automated:
        reasons.append("classified as automated")
    if message.parse_status == "unparseable":
        reasons.append("unparseable message")
    if message.authentication == "fail":  # a forged From: acknowledging it is backscatter
        reasons.append("the sender failed authentication: " + "; ".join((message.authentication_reasons or [])[:3]))
    facts = mail_facts(message)
    reasons += header_blockers(facts, [options.from_address, rt.settings.from_address or ""])
    to_address = None
    if not reasons:
        try:  # the From address only: an acknowledgment never follows an arbitrary Reply-To
            to_address = validate_address(facts.from_address)
        except InvalidAddress:
            reasons.append("no valid reply address")
    if reasons or to_address is None:
        _suppress(session, inquiry.id, message.id, "ack_suppressed", reasons)
        return AckResult("suppressed", "; ".join(reasons))

    if recent_count(session, to_address, options.config.ack_per_sender_seconds, kinds=("acknowledgment",)):
        hours = options.config.ack_per_sender_seconds / 3600
        reason = f"already acknowledged {to_address} within {hours:g} h"
        _suppress(session, inquiry.id, message.id, "ack_suppressed", [reason], cap="per_sender", to=to_address)
        return AckResult("capped", reason)
    cap = cap_exceeded(session, to_address, options.config.caps)
    if cap is not None:
        reason = f"more than {cap.describe()} to {to_address}"
        _suppress(session, inquiry.id, message.id, "cap_hit", [reason], cap=cap.describe(), to=to_address)
        return AckResult("capped", reason)

    body, answer_key = _body(rt, options, inquiry, message, facts)
    parent_id = message.message_id or facts.header("Message-ID")
    composed = compose(
        Draft(
            from_address=options.from_address,
            from_name=options.config.from_name,
            to_address=to_address,
            to_name=facts.from_name if _quotable(message) else None,
            subject=reply_subject((inquiry.subject or message.subject or facts.header("Subject"))
                                  if _quotable(message) else None,
                                  inquiry.id, tickets.tag(session, rt.settings, inquiry.id)),
            body=body,
            in_reply_to=parent_id,
            references=references_chain(message.references or facts.header("References"), parent_id),
            auto_submitted=True,
        )
    )
    try:
        with session.begin_nested():
            row = store_outbound(
                session, composed, inquiry_id=inquiry.id, kind="acknowledgment", body=body,
                author=None, options=options, dedupe_key=f"ack:{message.id}",
                meta={"acknowledges": message.id, "answer_key": answer_key,
                      **({"envelope_from": ""} if options.config.ack_null_sender else {})},
            )
    except IntegrityError as exc:
        if not is_unique_violation(exc):
            raise
        return AckResult("exists", "another worker queued it")
    record_event(session, inquiry.id, "system", "ack_queued", message_id=row.id)
    return AckResult("queued", "", row.id)

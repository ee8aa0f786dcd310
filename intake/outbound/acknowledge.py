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

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake import tickets
from intake.events import record_events
from intake.models import Inquiry, Message
from intake.outbound.compose import Draft, InvalidAddress, compose, header_text, references_chain, reply_subject, validate_address
from intake.outbound.knowledge import suggest_answer
from intake.outbound.loops import MailFacts, facts_from_raw, header_blockers, outbound_history
from intake.outbound.options import OutboundOptions, load_options
from intake.outbound.settings import NEVER_ACKNOWLEDGE
from intake.outbound.replies import outbound_row
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
    return acknowledge_many(rt, [message_id])[message_id]


def acknowledge_many(rt: "Runtime", message_ids: list[int]) -> dict[int, AckResult]:
    """:func:`acknowledge` for several messages in one transaction, decided in order (a second
    message to the same address sees the first one's acknowledgment queued), the database asked
    once for the batch."""
    options = load_options(rt.settings)
    if not options.config.ack_enabled:
        return {message_id: AckResult("skipped", "acknowledgments are off") for message_id in message_ids}
    with rt.db.session() as session:
        return _decide_and_queue(rt, session, options, message_ids)


def _deliver_acknowledgments(rt: "Runtime", tickets: list[Ticket]) -> dict[int, str]:
    results = acknowledge_many(rt, [int(t.args["message_id"]) for t in tickets])
    return {t.id: results[int(t.args["message_id"])].status for t in tickets}


@deliverer("email.acknowledge", channel="email", batch=_deliver_acknowledgments)
def deliver_acknowledgment(rt: "Runtime", ticket: Ticket) -> str:
    return acknowledge(rt, int(ticket.args["message_id"])).status


@dataclass
class _Due:
    """An acknowledgment that passed every check but the caps."""

    message: Message
    inquiry: Inquiry
    facts: MailFacts
    to_address: str


def _check(rt: "Runtime", options: OutboundOptions, message: Message | None, inquiry: Inquiry | None,
           first_inbound_id: int | None, existing: Message | None) -> AckResult | _Due | tuple[list[str], Message, Inquiry]:
    """Everything but the caps: an answer, what is due, or (reasons to suppress, message, inquiry)."""
    if message is None or message.direction != "inbound" or message.inquiry_id is None:
        return AckResult("skipped", "not an inbound message of an inquiry")
    if existing is not None:
        return AckResult("exists", existing.state, existing.id if existing.state == "queued" else None)
    assert inquiry is not None
    if message.source != "email":
        return AckResult("skipped", f"logged by staff ({message.source}), not written to us")
    if first_inbound_id != message.id:
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
        return reasons, message, inquiry
    return _Due(message, inquiry, facts, to_address.lower())


def _decide_and_queue(rt: "Runtime", session: Session, options: OutboundOptions,
                      message_ids: list[int]) -> dict[int, AckResult]:
    ids = list(dict.fromkeys(message_ids))
    messages = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids)))}
    inquiry_ids = {m.inquiry_id for m in messages.values() if m.inquiry_id is not None}
    inquiries = {i.id: i for i in session.scalars(select(Inquiry).where(Inquiry.id.in_(inquiry_ids)))} if inquiry_ids else {}
    existing = {m.dedupe_key: m for m in session.scalars(
        select(Message).where(Message.dedupe_key.in_([f"ack:{i}" for i in ids])))}
    firsts = dict(session.execute(
        select(Message.inquiry_id, func.min(Message.id))
        .where(Message.inquiry_id.in_(inquiry_ids), Message.direction == "inbound")
        .group_by(Message.inquiry_id)
    ).all()) if inquiry_ids else {}

    checked: dict[int, AckResult | _Due | tuple] = {}
    for message_id in ids:
        message = messages.get(message_id)
        inquiry = inquiries.get(message.inquiry_id) if message is not None and message.inquiry_id else None
        checked[message_id] = _check(rt, options, message, inquiry,
                                     firsts.get(message.inquiry_id) if message is not None else None,
                                     existing.get(f"ack:{message_id}"))
    due = [c for c in checked.values() if isinstance(c, _Due)]
    window = max([options.config.ack_per_sender_seconds, *(cap.seconds for cap in options.config.caps)])
    history = outbound_history(session, [d.to_address for d in due], window)

    results: dict[int, AckResult] = {}
    facts: list[tuple[int | None, str, str, dict[str, Any]]] = []
    rows: list[dict[str, Any]] = []
    queued: list[int] = []
    for message_id, check in checked.items():
        if isinstance(check, AckResult):
            results[message_id] = check
            continue
        if isinstance(check, tuple):
            reasons, message, inquiry = check
            facts.append(_suppression(inquiry.id, message.id, "ack_suppressed", reasons))
            results[message_id] = AckResult("suppressed", "; ".join(reasons))
            continue
        message, inquiry, to_address = check.message, check.inquiry, check.to_address
        if history.count(to_address, options.config.ack_per_sender_seconds, kinds=("acknowledgment",)):
            hours = options.config.ack_per_sender_seconds / 3600
            reason = f"already acknowledged {to_address} within {hours:g} h"
            facts.append(_suppression(inquiry.id, message.id, "ack_suppressed", [reason], cap="per_sender", to=to_address))
            results[message_id] = AckResult("capped", reason)
            continue
        cap = history.cap_exceeded(to_address, options.config.caps)
        if cap is not None:
            reason = f"more than {cap.describe()} to {to_address}"
            facts.append(_suppression(inquiry.id, message.id, "cap_hit", [reason], cap=cap.describe(), to=to_address))
            results[message_id] = AckResult("capped", reason)
            continue
        rows.append(_ack_row(rt, session, options, inquiry, message, check.facts, to_address))
        history.add(to_address, 0, history.now, "acknowledgment")  # the next ones see it queued
        queued.append(message_id)
        facts.append((inquiry.id, "system", "ack_queued", {"acknowledges": message_id}))  # the row's id, below

    stored = _insert_rows(session, rows)
    for message_id in queued:
        row_id = stored.get(f"ack:{message_id}")
        results[message_id] = (AckResult("queued", "", row_id) if row_id is not None
                                else AckResult("exists", "another worker queued it"))
    recorded = []
    for inquiry_id, actor, kind, detail in facts:
        if kind == "ack_queued":  # its event names the outbound row, known once inserted
            row_id = stored.get(f"ack:{detail['acknowledges']}")
            if row_id is None:
                continue
            detail = {"message_id": row_id}
        recorded.append((inquiry_id, actor, kind, detail))
    record_events(session, recorded)
    return {message_id: results[message_id] for message_id in ids}


def _suppression(inquiry_id: int, message_id: int, kind: str, reasons: list[str], **detail: Any) -> tuple:
    log.info("no acknowledgment for message %s: %s", message_id, "; ".join(reasons))
    return (inquiry_id, "system", kind, {"message_id": message_id, "reasons": reasons[:10], **detail})


def _ack_row(rt: "Runtime", session: Session, options: OutboundOptions, inquiry: Inquiry, message: Message,
             facts: MailFacts, to_address: str) -> dict[str, Any]:
    body, answer_key = _body(rt, options, inquiry, message, facts)
    parent_id = message.message_id or facts.header("Message-ID")
    quotable = _quotable(message)
    composed = compose(
        Draft(
            from_address=options.from_address,
            from_name=options.config.from_name,
            to_address=to_address,
            to_name=facts.from_name if quotable else None,
            subject=reply_subject((inquiry.subject or message.subject or facts.header("Subject")) if quotable else None,
                                  inquiry.id, tickets.tag(session, rt.settings, inquiry.id)),
            body=body,
            in_reply_to=parent_id,
            references=references_chain(message.references or facts.header("References"), parent_id),
            auto_submitted=True,
        )
    )
    return outbound_row(
        composed, inquiry_id=inquiry.id, kind="acknowledgment", body=body, author=None, options=options,
        dedupe_key=f"ack:{message.id}",
        meta={"acknowledges": message.id, "answer_key": answer_key,
              **({"envelope_from": ""} if options.config.ack_null_sender else {})},
    )


def _insert_rows(session: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert the acknowledgments in one statement; a key another worker took meanwhile is
    skipped (its unique dedupe key makes two racing workers queue one). Returns key -> id."""
    if not rows:
        return {}
    from intake.inquiries.store import _dialect_insert

    table = Message.__table__
    insert = _dialect_insert(session.connection().dialect.name)
    result = session.execute(
        insert(table).on_conflict_do_nothing(index_elements=[table.c.dedupe_key])
        .returning(table.c.id, table.c.dedupe_key),
        rows,
    )
    return {row.dedupe_key: row.id for row in result}

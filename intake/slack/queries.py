"""Read-only queries behind the card, `/inquiries`, App Home and the digest.

They turn rows into the plain dataclasses of ``intake.slack.blocks`` so the builders stay pure.
Each function takes an open Session and never writes; callers keep the session short and close
it before talking to Slack.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from intake import inquiries, recipients
from intake.models import Event, GroupMember, Inquiry, InquiryGroup, Message, utcnow
from intake.sla.clock import RUNNING
from intake.slack.blocks import CardData, FoldedItem, HomeData, InquiryRow, RecipientChoice, Stats

OPEN_STATUSES = ("new", "open", "waiting")
FILTERED_CATEGORIES = ("spam", "automated")
AGE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("under 1 day", 1),
    ("1–3 days", 3),
    ("3–7 days", 7),
    ("over 7 days", float("inf")),
)
LIST_LIMIT = 20


def aware(when: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes for timezone-aware columns; they were stored in UTC."""
    if when is not None and when.tzinfo is None:
        return when.replace(tzinfo=dt.timezone.utc)
    return when


def _restored(session: Session, inquiry_id: int) -> bool:
    """True when staff marked the inquiry "not spam": it then gets a card whatever its label."""
    found = session.scalar(
        select(Event.id).where(Event.inquiry_id == inquiry_id, Event.kind.contains("not_spam")).limit(1)
    )
    return found is not None


def is_filtered(session: Session, inquiry: Inquiry) -> bool:
    """Spam and automated mail go to the digest instead of getting a card of their own."""
    if inquiry.status == "spam":
        return True
    if inquiry.automated or (inquiry.category in FILTERED_CATEGORIES):
        if inquiry.assignee or inquiry.status in ("open", "waiting"):
            return False
        return not _restored(session, inquiry.id)
    return False


def latest_inbound(session: Session, inquiry_id: int) -> Message | None:
    return session.scalar(
        select(Message)
        .where(Message.inquiry_id == inquiry_id, Message.direction == "inbound")
        .order_by(Message.id.desc())
        .limit(1)
    )


def message_text(message: Message | None) -> str:
    if message is None:
        return ""
    return message.latest_reply or message.text_body or ""


def _sender(inquiry: Inquiry, latest: Message | None) -> tuple[str | None, str | None]:
    name = latest.sender_name if latest else None
    address = latest.sender_address if latest else None
    if inquiry.contact is not None:
        address = address or inquiry.contact.address
        name = name or inquiry.contact.name
    return name, address


def reasons_of(session: Session, inquiry_id: int) -> list[str]:
    from intake.models import Classification

    latest = session.scalar(
        select(Classification).where(Classification.inquiry_id == inquiry_id)
        .order_by(Classification.id.desc()).limit(1)
    )
    if latest is None:
        return []
    reasons = [str(r) for r in (latest.reasons or [])]
    if latest.source == "staff":
        reasons.insert(0, f"set by staff {latest.actor or ''}".strip())
    return reasons


def reply_warnings(options: recipients.ReplyOptions, latest: Message | None) -> list[str]:
    """What staff must know before replying (issue 10): a message that failed sender
    authentication, and Reply-To addresses the conversation has not used."""
    warnings = []
    if latest is not None and latest.authentication == "fail":
        reasons = "; ".join((latest.authentication_reasons or [])[:3])
        warnings.append(f"The latest message failed sender authentication ({reasons}): it may not be "
                        f"from {latest.sender_address}. Replies still go to "
                        f"{options.default.address if options.default else 'the conversation'}.")
    for offered in options.new_reply_to[:2]:
        warnings.append(f"Reply-To {offered.address} is new to this conversation ({offered.note}); "
                        "replies go there only if you pick it in the reply modal.")
    return warnings


def recipient_choices(session: Session, inquiry_id: int) -> list[RecipientChoice]:
    """The reply modal's "send to" options, the conversation's address first."""
    options = recipients.reply_options(session, inquiry_id)
    return [
        RecipientChoice(r.address, r.label, r.note, warning=r.kind == "reply_to" or r.verified is False)
        for r in options.all()
    ]


def card_data(session: Session, inquiry_id: int, *, with_folded: bool = True) -> CardData | None:
    """Everything the triage card shows for one inquiry (suggestion added by the caller)."""
    inquiry = session.get(Inquiry, inquiry_id)
    if inquiry is None:
        return None
    latest = latest_inbound(session, inquiry_id)
    name, address = _sender(inquiry, latest)
    options = recipients.reply_options(session, inquiry_id)
    count = session.scalar(select(func.count(Message.id)).where(Message.inquiry_id == inquiry_id)) or 0
    folded: list[FoldedItem] = []
    if with_folded and inquiry.slack_ts:
        folded = [
            FoldedItem(i.id, i.subject, i.status, aware(i.received_at))
            for i in card_group(session, inquiry)
            if i.id != inquiry.id
        ]
    return CardData(
        inquiry_id=inquiry.id,
        subject=inquiry.subject or "",
        sender_name=name,
        sender_address=address,
        status=inquiry.status,
        category=inquiry.category,
        confidence=inquiry.confidence,
        reasons=reasons_of(session, inquiry_id),
        needs_review=inquiry.needs_review,
        language=inquiry.language,
        received_at=aware(inquiry.received_at),
        assignee=inquiry.assignee,
        latest_reply=message_text(latest),
        message_count=count,
        folded=folded,
        acknowledged=session.scalar(
            select(Event.id).where(Event.inquiry_id == inquiry_id, Event.kind == "ack_sent").limit(1)
        ) is not None,
        version=inquiry.version or 0,
        failed_deliveries=failed_deliveries(session, inquiry_id),
        group_id=shown_group(session, inquiry_id),
        response_due=aware(inquiry.response_due),
        overdue=_overdue(inquiry),
        reply_to=options.default.address if options.default else None,
        reply_warnings=reply_warnings(options, latest),
    )


def shown_group(session: Session, inquiry_id: int) -> int | None:
    """The group a triage card names: one that has its own group card to go and look at."""
    return session.scalar(
        select(InquiryGroup.id)
        .join(GroupMember, GroupMember.group_id == InquiryGroup.id)
        .where(GroupMember.inquiry_id == inquiry_id, GroupMember.split_at.is_(None),
               InquiryGroup.dissolved_at.is_(None), InquiryGroup.slack_ts.is_not(None))
        .limit(1)
    )


def failed_deliveries(session: Session, inquiry_id: int) -> list[str]:
    """Emails of this inquiry that were given up on, newest first, as sentences for the card."""
    rows = session.execute(
        select(Message.kind, Message.to_address, Message.last_error)
        .where(Message.inquiry_id == inquiry_id, Message.direction == "outbound", Message.state == "failed")
        .order_by(Message.id.desc())
        .limit(3)
    ).all()
    what = {"acknowledgment": "the acknowledgment", "reply": "a reply"}
    return [f"{what.get(kind, 'an email')} to {to or '(no address)'}: {(error or 'no reason given')[:300]}"
            for kind, to, error in rows]


def _overdue(inquiry: Inquiry, now: dt.datetime | None = None) -> bool:
    """Whether the inquiry's running response clock has passed its target (intake.sla.clock)."""
    due = aware(inquiry.response_due)
    return inquiry.status in RUNNING and due is not None and due <= (now or utcnow())


def card_group(session: Session, inquiry: Inquiry) -> list[Inquiry]:
    """Inquiries that share one card (a burst folded together), the card's owner first."""
    if not inquiry.slack_ts:
        return [inquiry]
    return list(session.scalars(
        select(Inquiry)
        .where(Inquiry.slack_channel == inquiry.slack_channel, Inquiry.slack_ts == inquiry.slack_ts)
        .order_by(Inquiry.id)
    ))


def burst_owner(session: Session, inquiry: Inquiry, window: dt.timedelta) -> Inquiry | None:
    """An earlier inquiry from the same sender, still open, whose card was posted within ``window``.

    A burst (someone sending five emails in three minutes) is folded into that card rather than
    flooding the channel.
    """
    if inquiry.contact_id is None:
        return None
    since = (aware(inquiry.received_at) or utcnow()) - window
    return session.scalar(
        select(Inquiry)
        .where(
            Inquiry.contact_id == inquiry.contact_id,
            Inquiry.id != inquiry.id,
            Inquiry.slack_ts.is_not(None),
            Inquiry.status.in_(OPEN_STATUSES),
            Inquiry.received_at >= since,
        )
        .order_by(Inquiry.id)
        .limit(1)
    )


def _row(inquiry: Inquiry) -> InquiryRow:
    sender = inquiry.contact.address if inquiry.contact is not None else None
    if inquiry.contact is not None and inquiry.contact.name:
        sender = f"{inquiry.contact.name} ({inquiry.contact.address})"
    return InquiryRow(
        inquiry_id=inquiry.id,
        subject=inquiry.subject or "",
        sender=sender,
        status=inquiry.status,
        category=inquiry.category,
        assignee=inquiry.assignee,
        received_at=aware(inquiry.received_at),
        due_at=aware(inquiry.response_due) if inquiry.status in OPEN_STATUSES else None,
        overdue=_overdue(inquiry),
    )


def _rows(session: Session, *where: Any, newest_first: bool = False, limit: int = LIST_LIMIT) -> list[InquiryRow]:
    order = Inquiry.received_at.desc() if newest_first else Inquiry.received_at.asc()
    stmt = select(Inquiry).where(*where).order_by(order, Inquiry.id).limit(limit)
    return [_row(i) for i in session.scalars(stmt)]


def open_rows(session: Session, limit: int = LIST_LIMIT) -> list[InquiryRow]:
    return _rows(session, Inquiry.status.in_(OPEN_STATUSES), limit=limit)


def mine_rows(session: Session, user_id: str, limit: int = LIST_LIMIT) -> list[InquiryRow]:
    return _rows(session, Inquiry.status.in_(OPEN_STATUSES), Inquiry.assignee == user_id, limit=limit)


def unassigned_rows(session: Session, limit: int = LIST_LIMIT) -> list[InquiryRow]:
    return _rows(
        session,
        Inquiry.status.in_(OPEN_STATUSES),
        Inquiry.assignee.is_(None),
        or_(Inquiry.category.is_(None), Inquiry.category.not_in(FILTERED_CATEGORIES)),
        limit=limit,
    )


def query_rows(session: Session, settings: Any, text: str, *, user: str | None, natural: bool = False,
               limit: int = LIST_LIMIT) -> list[InquiryRow]:
    """Rows for a query in the search language (intake/search.py); raises its QueryError."""
    from intake import search

    query = search.parse(text, categories=settings.category_names, user=user, natural=natural)
    return [_row(i) for i in search.search(session, query, limit=limit)]


def with_search(session: Session, settings: Any, data: HomeData, text: str) -> HomeData:
    """The App Home's data with a search's results (or its error) added."""
    from dataclasses import replace

    from intake import search

    try:
        rows = query_rows(session, settings, text, user=data.user_id, limit=15)
    except search.QueryError as exc:
        return replace(data, query=text, query_error=str(exc))
    return replace(data, query=text, results=rows)


def query_answer(session: Session, settings: Any, text: str, *, user: str | None,
                 natural: bool = False) -> "Message":
    """The list message for a query, or the parser's error naming the wrong token."""
    from intake import search
    from intake.slack.blocks import Message as SlackMessage, inquiry_list
    from intake.slack.escaping import escape

    try:
        rows = query_rows(session, settings, text, user=user, natural=natural)
    except search.QueryError as exc:
        return SlackMessage(text=f":warning: {escape(str(exc))}")
    return inquiry_list(f"Search: {text}", rows, empty="No inquiry matches.")


def _age_bucket(received: dt.datetime | None, now: dt.datetime) -> str:
    days = ((now - (aware(received) or now)).total_seconds()) / 86400
    for label, limit in AGE_BUCKETS:
        if days < limit:
            return label
    return AGE_BUCKETS[-1][0]


def counts_by_category(session: Session) -> list[tuple[str, int]]:
    rows = session.execute(
        select(Inquiry.category, func.count(Inquiry.id))
        .where(Inquiry.status.in_(OPEN_STATUSES))
        .group_by(Inquiry.category)
    ).all()
    return sorted(((c or "unclassified", n) for c, n in rows), key=lambda kv: (-kv[1], kv[0]))


def counts_by_age(session: Session, now: dt.datetime | None = None) -> list[tuple[str, int]]:
    now = now or utcnow()
    counts = {label: 0 for label, _ in AGE_BUCKETS}
    for (received,) in session.execute(select(Inquiry.received_at).where(Inquiry.status.in_(OPEN_STATUSES))):
        counts[_age_bucket(received, now)] += 1
    return [(label, counts[label]) for label, _ in AGE_BUCKETS if counts[label]]


def stats(session: Session) -> Stats:
    by_status = session.execute(select(Inquiry.status, func.count(Inquiry.id)).group_by(Inquiry.status)).all()
    oldest = open_rows(session, limit=1)
    return Stats(
        by_status=sorted(((s, n) for s, n in by_status), key=lambda kv: kv[0]),
        by_category=counts_by_category(session),
        by_age=counts_by_age(session),
        oldest_open=oldest[0] if oldest else None,
    )


def due_rows(session: Session, user_id: str, limit: int = LIST_LIMIT) -> list[InquiryRow]:
    """The user's inquiries that owe a response, soonest target (so overdue ones) first."""
    stmt = (
        select(Inquiry)
        .where(Inquiry.status.in_(RUNNING), Inquiry.assignee == user_id, Inquiry.response_due.is_not(None))
        .order_by(Inquiry.response_due, Inquiry.id).limit(limit)
    )
    return [_row(i) for i in session.scalars(stmt)]


def home_data(session: Session, user_id: str) -> HomeData:
    due = due_rows(session, user_id, limit=40)
    shown = {r.inquiry_id for r in due}
    return HomeData(
        user_id=user_id,
        due=due,
        mine=[r for r in mine_rows(session, user_id, limit=40 + len(due)) if r.inquiry_id not in shown][:40],
        unassigned=unassigned_rows(session, limit=40),
        by_category=counts_by_category(session),
        by_age=counts_by_age(session),
    )


def detail(session: Session, inquiry_id: int) -> tuple[CardData, list[tuple[str, str | None, str | None]], list[str]] | None:
    """For `/inquiries show ID`: the card data, the messages and a line per event."""
    card = card_data(session, inquiry_id, with_folded=False)
    if card is None:
        return None
    messages = [
        (m.direction, m.author if m.direction != "inbound" else m.sender_address, m.latest_reply or m.text_body)
        for m in session.scalars(select(Message).where(Message.inquiry_id == inquiry_id).order_by(Message.id))
    ]
    events = [
        f"{e.kind} by {e.actor}"
        for e in session.scalars(select(Event).where(Event.inquiry_id == inquiry_id).order_by(Event.id))
    ]
    return card, messages, events


def filtered_since(session: Session, after_id: int, through_id: int | None = None) -> list[Inquiry]:
    """Spam / automated inquiries with ids in (after_id, through_id] that have no card."""
    stmt = (
        select(Inquiry)
        .where(Inquiry.id > after_id, Inquiry.slack_ts.is_(None),
               or_(Inquiry.status == "spam", Inquiry.automated.is_(True),
                   Inquiry.category.in_(FILTERED_CATEGORIES)))
        .order_by(Inquiry.id)
    )
    if through_id is not None:
        stmt = stmt.where(Inquiry.id <= through_id)
    return [i for i in session.scalars(stmt) if is_filtered(session, i)]


def rows_for(inquiries: Sequence[Inquiry]) -> list[InquiryRow]:
    return [_row(i) for i in inquiries]

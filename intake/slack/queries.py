"""Read-only queries behind the card, `/inquiries`, App Home and the digest.

They turn rows into the plain dataclasses of ``intake.slack.blocks`` so the builders stay pure.
Each function takes an open Session and never writes; callers keep the session short and close
it before talking to Slack.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, defer, joinedload

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


def _restored(session: Session, inquiry_ids: Sequence[int]) -> set[int]:
    """Inquiries staff marked "not spam": they then get a card whatever their label."""
    if not inquiry_ids:
        return set()
    return set(session.scalars(
        select(Event.inquiry_id).where(Event.inquiry_id.in_(inquiry_ids), Event.kind.contains("not_spam")).distinct()
    ))


def _filter_candidate(inquiry: Inquiry) -> bool | None:
    """True or False when the inquiry's own fields decide whether it is filtered; None when it
    depends on whether staff restored it."""
    if inquiry.status == "spam":
        return True
    if inquiry.automated or (inquiry.category in FILTERED_CATEGORIES):
        if inquiry.assignee or inquiry.status in ("open", "waiting"):
            return False
        return None
    return False


def filtered_many(session: Session, inquiries: Sequence[Inquiry]) -> set[int]:
    """Which of these inquiries go to the digest instead of getting a card of their own (spam
    and automated mail), asked in one query."""
    undecided = [i.id for i in inquiries if _filter_candidate(i) is None]
    restored = _restored(session, undecided)
    return {i.id for i in inquiries if _filter_candidate(i) or (i.id in undecided and i.id not in restored)}


def is_filtered(session: Session, inquiry: Inquiry) -> bool:
    """Spam and automated mail go to the digest instead of getting a card of their own."""
    return inquiry.id in filtered_many(session, [inquiry])


def latest_inbound_many(session: Session, inquiry_ids: Sequence[int]) -> dict[int, Message]:
    """Each inquiry's most recent inbound message (its raw bytes left unread)."""
    if not inquiry_ids:
        return {}
    newest = (select(func.max(Message.id)).where(Message.inquiry_id.in_(inquiry_ids), Message.direction == "inbound")
              .group_by(Message.inquiry_id))
    return {m.inquiry_id: m for m in session.scalars(
        select(Message).options(defer(Message.raw)).where(Message.id.in_(newest)))}


def latest_inbound(session: Session, inquiry_id: int) -> Message | None:
    return latest_inbound_many(session, [inquiry_id]).get(inquiry_id)


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


def reasons_many(session: Session, inquiry_ids: Sequence[int]) -> dict[int, list[str]]:
    """The reasons of each inquiry's latest label (a person's label says who set it)."""
    from intake.models import Classification

    if not inquiry_ids:
        return {}
    newest = (select(func.max(Classification.id)).where(Classification.inquiry_id.in_(inquiry_ids))
              .group_by(Classification.inquiry_id))
    found: dict[int, list[str]] = {}
    for latest in session.scalars(select(Classification).where(Classification.id.in_(newest))):
        reasons = [str(r) for r in (latest.reasons or [])]
        if latest.source == "staff":
            reasons.insert(0, f"set by staff {latest.actor or ''}".strip())
        found[latest.inquiry_id] = reasons
    return found


def reasons_of(session: Session, inquiry_id: int) -> list[str]:
    return reasons_many(session, [inquiry_id]).get(inquiry_id, [])


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


def card_data_many(session: Session, inquiry_ids: Sequence[int], *, with_folded: bool = True) -> dict[int, CardData]:
    """Everything the triage card shows, for several inquiries in a handful of queries (a
    batch of cards asks no more than one card did); suggestions are added by the caller."""
    ids = list(dict.fromkeys(inquiry_ids))
    if not ids:
        return {}
    inquiries = {i.id: i for i in session.scalars(
        select(Inquiry).options(joinedload(Inquiry.contact)).where(Inquiry.id.in_(ids)))}
    ids = [i for i in ids if i in inquiries]
    if not ids:
        return {}
    latest = latest_inbound_many(session, ids)
    options = recipients.reply_options_many(session, ids)
    counts = dict(session.execute(
        select(Message.inquiry_id, func.count(Message.id)).where(Message.inquiry_id.in_(ids)).group_by(Message.inquiry_id)
    ).all())
    groups = card_groups(session, [inquiries[i] for i in ids if inquiries[i].slack_ts]) if with_folded else {}
    reasons = reasons_many(session, ids)
    acknowledged = set(session.scalars(
        select(Event.inquiry_id).where(Event.inquiry_id.in_(ids), Event.kind == "ack_sent").distinct()))
    failed = failed_deliveries_many(session, ids)
    shown = shown_groups(session, ids)
    cards: dict[int, CardData] = {}
    for inquiry_id in ids:
        inquiry = inquiries[inquiry_id]
        newest = latest.get(inquiry_id)
        name, address = _sender(inquiry, newest)
        choice = options[inquiry_id]
        folded = [FoldedItem(i.id, i.subject, i.status, aware(i.received_at))
                  for i in groups.get(inquiry_id, []) if i.id != inquiry_id]
        cards[inquiry_id] = CardData(
            inquiry_id=inquiry.id,
            subject=inquiry.subject or "",
            sender_name=name,
            sender_address=address,
            status=inquiry.status,
            category=inquiry.category,
            confidence=inquiry.confidence,
            reasons=reasons.get(inquiry_id, []),
            needs_review=inquiry.needs_review,
            language=inquiry.language,
            received_at=aware(inquiry.received_at),
            assignee=inquiry.assignee,
            latest_reply=message_text(newest),
            message_count=counts.get(inquiry_id, 0),
            folded=folded,
            acknowledged=inquiry_id in acknowledged,
            version=inquiry.version or 0,
            failed_deliveries=failed.get(inquiry_id, []),
            group_id=shown.get(inquiry_id),
            response_due=aware(inquiry.response_due),
            overdue=_overdue(inquiry),
            reply_to=choice.default.address if choice.default else None,
            reply_warnings=reply_warnings(choice, newest),
        )
    return cards


def card_data(session: Session, inquiry_id: int, *, with_folded: bool = True) -> CardData | None:
    """Everything the triage card shows for one inquiry (suggestion added by the caller)."""
    return card_data_many(session, [inquiry_id], with_folded=with_folded).get(inquiry_id)


def shown_groups(session: Session, inquiry_ids: Sequence[int]) -> dict[int, int]:
    """The group each triage card names: one that has its own group card to go and look at."""
    if not inquiry_ids:
        return {}
    rows = session.execute(
        select(GroupMember.inquiry_id, func.min(InquiryGroup.id))
        .join(InquiryGroup, GroupMember.group_id == InquiryGroup.id)
        .where(GroupMember.inquiry_id.in_(inquiry_ids), GroupMember.split_at.is_(None),
               InquiryGroup.dissolved_at.is_(None), InquiryGroup.slack_ts.is_not(None))
        .group_by(GroupMember.inquiry_id)
    ).all()
    return dict(rows)


def shown_group(session: Session, inquiry_id: int) -> int | None:
    """The group a triage card names: one that has its own group card to go and look at."""
    return shown_groups(session, [inquiry_id]).get(inquiry_id)


def failed_deliveries_many(session: Session, inquiry_ids: Sequence[int]) -> dict[int, list[str]]:
    """Emails of each inquiry that were given up on, newest first, as sentences for the card."""
    if not inquiry_ids:
        return {}
    rows = session.execute(
        select(Message.inquiry_id, Message.kind, Message.to_address, Message.last_error)
        .where(Message.inquiry_id.in_(inquiry_ids), Message.direction == "outbound", Message.state == "failed")
        .order_by(Message.id.desc())
    ).all()
    what = {"acknowledgment": "the acknowledgment", "reply": "a reply"}
    found: dict[int, list[str]] = {}
    for inquiry_id, kind, to, error in rows:
        lines = found.setdefault(inquiry_id, [])
        if len(lines) < 3:
            lines.append(f"{what.get(kind, 'an email')} to {to or '(no address)'}: {(error or 'no reason given')[:300]}")
    return found


def failed_deliveries(session: Session, inquiry_id: int) -> list[str]:
    """Emails of this inquiry that were given up on, newest first, as sentences for the card."""
    return failed_deliveries_many(session, [inquiry_id]).get(inquiry_id, [])


def _overdue(inquiry: Inquiry, now: dt.datetime | None = None) -> bool:
    """Whether the inquiry's running response clock has passed its target (intake.sla.clock)."""
    due = aware(inquiry.response_due)
    return inquiry.status in RUNNING and due is not None and due <= (now or utcnow())


def card_groups(session: Session, inquiries: Sequence[Inquiry]) -> dict[int, list[Inquiry]]:
    """For each inquiry, the inquiries that share its card (a burst folded together), the card's
    owner first; an inquiry without a card is alone."""
    found: dict[int, list[Inquiry]] = {i.id: [i] for i in inquiries if not i.slack_ts}
    places = {(i.slack_channel, i.slack_ts) for i in inquiries if i.slack_ts}
    if places:
        by_place: dict[tuple, list[Inquiry]] = {}
        # Channels IN (...) and timestamps IN (...), then the exact pairs here: both databases
        # serve that from ix_inquiries_slack_card, where SQLite reads the whole table for a row
        # value IN (VALUES ...) list. A card's ts is unique in its channel, so the few extra
        # rows a cross product could bring are rare and dropped.
        for other in session.scalars(
            select(Inquiry).where(Inquiry.slack_channel.in_(sorted({c for c, _ in places})),
                                  Inquiry.slack_ts.in_(sorted({ts for _, ts in places}))).order_by(Inquiry.id)
        ):
            if (other.slack_channel, other.slack_ts) in places:
                by_place.setdefault((other.slack_channel, other.slack_ts), []).append(other)
        for inquiry in inquiries:
            if inquiry.slack_ts:
                found[inquiry.id] = by_place.get((inquiry.slack_channel, inquiry.slack_ts), [inquiry])
    return found


def card_group(session: Session, inquiry: Inquiry) -> list[Inquiry]:
    """Inquiries that share one card (a burst folded together), the card's owner first."""
    return card_groups(session, [inquiry])[inquiry.id]


def burst_owners(session: Session, inquiries: Sequence[Inquiry], window: dt.timedelta) -> dict[int, Inquiry]:
    """For each inquiry, an earlier inquiry from the same sender, still open, whose card was
    posted within ``window`` (the lowest id), when there is one.

    A burst (someone sending five emails in three minutes) is folded into that card rather than
    flooding the channel.
    """
    wanted = [i for i in inquiries if i.contact_id is not None]
    if not wanted:
        return {}
    since = {i.id: (aware(i.received_at) or utcnow()) - window for i in wanted}
    candidates = list(session.scalars(
        select(Inquiry)
        .where(
            Inquiry.contact_id.in_({i.contact_id for i in wanted}),
            Inquiry.slack_ts.is_not(None),
            Inquiry.status.in_(OPEN_STATUSES),
            Inquiry.received_at >= min(since.values()),
        )
        .order_by(Inquiry.id)
    ))
    found: dict[int, Inquiry] = {}
    for inquiry in wanted:
        for other in candidates:
            if (other.contact_id == inquiry.contact_id and other.id != inquiry.id
                    and aware(other.received_at) >= since[inquiry.id]):
                found[inquiry.id] = other
                break
    return found


def burst_owner(session: Session, inquiry: Inquiry, window: dt.timedelta) -> Inquiry | None:
    """An earlier inquiry from the same sender, still open, whose card was posted within ``window``."""
    return burst_owners(session, [inquiry], window).get(inquiry.id)


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
    rows = list(session.scalars(stmt))
    filtered = filtered_many(session, rows)
    return [i for i in rows if i.id in filtered]


def rows_for(inquiries: Sequence[Inquiry]) -> list[InquiryRow]:
    return [_row(i) for i in inquiries]

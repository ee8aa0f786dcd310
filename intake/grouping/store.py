"""Groups in the database: which open inquiries are grouped, with ids that stay put.

``refresh`` recomputes every group from the open inquiries (``cluster.py``) and writes the
result so that an existing group keeps its id whenever its membership overlaps the new one (the
pairs are matched greedily, largest overlap first). Staff can ``split`` an inquiry out of its
group; the row stays, marked, and that inquiry is never grouped again.

Which inquiries are grouped: status ``new`` or ``open`` (waiting for an answer; an answered one,
``waiting``, leaves its group), a category that is not spam or automated, not flagged automated,
and not split out by staff.

No Slack here, but what the outside owes: in the transaction that changes a group, ``apply``
and ``split`` owe the group's card (``slack.group_card``, delivered by the outbox) and the triage
cards whose "in group G" line changed (``owe_card``).
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from intake.grouping.cluster import Candidate, Cluster, cluster
from intake.grouping.config import GroupingConfig
from intake.events import record_event
from intake.inquiries import get_inquiry
from intake.models import Event, GroupMember, Inquiry, InquiryGroup, Message, utcnow
from intake.outbox import owe, owe_card

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime

GROUPABLE_STATUSES = ("new", "open")
NEVER_GROUPED_CATEGORIES = ("spam", "automated")
# PostgreSQL advisory lock key: one refresh writes at a time (SQLite's BEGIN IMMEDIATE already
# serializes writers).
REFRESH_LOCK = 0x16_6709
LABEL_WORDS = 12
GROUP_CARD = "slack.group_card"  # the outbox delivery that draws a group's card


def owe_group_card(session: Session, group_id: int) -> None:
    """The group's card must show its current state (coalesced: owed twice, drawn once more)."""
    owe(session, GROUP_CARD, key=f"group_card:{group_id}", args={"group_id": group_id}, coalesce=True)


class NotInGroup(ValueError):
    """Split asked for an inquiry that is in no group."""


@dataclass
class RefreshResult:
    groups: int = 0  # active groups after the refresh
    created: int = 0
    dissolved: int = 0
    skipped: bool = False  # nothing had changed since the last refresh in this process
    changed_groups: set[int] = field(default_factory=set)  # whose card was owed an update
    changed_cards: set[int] = field(default_factory=set)  # inquiries whose "in group G" changed


def _first_messages(session: Session, inquiry_ids: Sequence[int]) -> dict[int, str]:
    """The first inbound message's text of each inquiry (what it asked)."""
    first = (
        select(func.min(Message.id).label("id"))
        .where(Message.direction == "inbound", Message.inquiry_id.in_(inquiry_ids))
        .group_by(Message.inquiry_id)
        .subquery()
    )
    rows = session.execute(
        select(Message.inquiry_id, Message.latest_reply, Message.text_body).join(first, Message.id == first.c.id)
    )
    return {r.inquiry_id: r.latest_reply or r.text_body or "" for r in rows}


def _groupable(query):
    split = select(GroupMember.inquiry_id).where(GroupMember.split_at.is_not(None))
    return query.where(
        Inquiry.status.in_(GROUPABLE_STATUSES),
        Inquiry.category.is_not(None),
        Inquiry.category.not_in(NEVER_GROUPED_CATEGORIES),
        Inquiry.automated.is_(False),
        Inquiry.id.not_in(split),
    )


def candidates(session: Session) -> list[Candidate]:
    """Every inquiry that may be grouped now, oldest first."""
    rows = session.execute(
        _groupable(select(Inquiry.id, Inquiry.category, Inquiry.language, Inquiry.subject)).order_by(Inquiry.id)
    ).all()
    bodies: dict[int, str] = {}
    ids = [r.id for r in rows]
    for start in range(0, len(ids), 5000):  # bounded IN lists
        bodies.update(_first_messages(session, ids[start:start + 5000]))
    return [Candidate(r.id, r.category, r.language, r.subject or "", bodies.get(r.id, "")) for r in rows]


def fingerprint(session: Session) -> tuple[Any, ...]:
    """Changes whenever the set of groupable inquiries may have changed (one cheap query each)."""
    inquiries = session.execute(
        _groupable(select(func.count(Inquiry.id), func.max(Inquiry.id), func.max(Inquiry.updated_at)))
    ).one()
    splits = session.scalar(select(func.count()).select_from(GroupMember).where(GroupMember.split_at.is_not(None)))
    return (*inquiries, splits)


def label_for(subject: str, body: str) -> str:
    """The question in a few words: the first sentence with a question mark, else the subject."""
    import re

    for sentence in re.split(r"(?<=[?？])\s+|\n+", body or ""):
        sentence = " ".join(sentence.split())
        if "?" in sentence or "？" in sentence:
            words = re.sub(r"^\W*(hi|hello|hola|bonjour|ol[aá]|buenas)\b[,!.\s]*", "", sentence, flags=re.I).split()
            return " ".join(words[:LABEL_WORDS]) + (" …" if len(words) > LABEL_WORDS else "")
    words = (subject or "").split()
    return " ".join(words[:LABEL_WORDS]) or "(no subject)"


def _label(cluster_: Cluster, by_id: dict[int, Candidate]) -> str:
    """From the most central member, preferring an English one among the three most central
    (staff read English), so the label reads like the question people ask."""
    central = [by_id[i] for i in cluster_.ids[:3]]
    chosen = next((c for c in central if c.language == "en"), central[0])
    return label_for(chosen.subject, chosen.body)


def _match(clusters: Sequence[Cluster], current: dict[int, set[int]]) -> dict[int, int]:
    """cluster index -> existing group id, largest overlap first, each group used once."""
    member_group = {iid: gid for gid, members in current.items() for iid in members}
    overlaps: list[tuple[int, int, int]] = []
    for index, c in enumerate(clusters):
        counts: dict[int, int] = {}
        for iid in c.ids:
            gid = member_group.get(iid)
            if gid is not None:
                counts[gid] = counts.get(gid, 0) + 1
        overlaps += [(n, index, gid) for gid, n in counts.items()]
    overlaps.sort(key=lambda t: (-t[0], t[2], t[1]))
    matched: dict[int, int] = {}
    used: set[int] = set()
    for _, index, gid in overlaps:
        if index not in matched and gid not in used:
            matched[index] = gid
            used.add(gid)
    return matched


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": REFRESH_LOCK})


def _active(session: Session) -> tuple[dict[int, set[int]], dict[int, InquiryGroup]]:
    groups = {g.id: g for g in session.scalars(select(InquiryGroup).where(InquiryGroup.dissolved_at.is_(None)))}
    members: dict[int, set[int]] = {gid: set() for gid in groups}
    for iid, gid in session.execute(
        select(GroupMember.inquiry_id, GroupMember.group_id).where(GroupMember.split_at.is_(None))
    ):
        members.setdefault(gid, set()).add(iid)
    return members, groups


def _shown(members: dict[int, set[int]], card_size: int) -> dict[int, int]:
    """inquiry -> the group its triage card names (only groups big enough to have a card)."""
    return {iid: gid for gid, ids in members.items() if len(ids) >= card_size for iid in ids}


def apply(session: Session, clusters: Sequence[Cluster], by_id: dict[int, Candidate],
          config: GroupingConfig, *, now: dt.datetime | None = None) -> RefreshResult:
    """Write freshly computed clusters, keeping ids where membership overlaps (caller commits)."""
    now = now or utcnow()
    _lock(session)
    before, groups = _active(session)
    # Inquiries may have been answered, closed or split while we computed: keep the ones that
    # are still groupable, and drop clusters that fall below two.
    still = set(session.scalars(_groupable(select(Inquiry.id)).where(Inquiry.id.in_(list(by_id)))))
    clusters = [c for c in (_narrowed(c, still) for c in clusters) if len(c.ids) >= config.options.min_size]
    matched = _match(clusters, before)
    result = RefreshResult()
    after: dict[int, set[int]] = {}
    for index, c in enumerate(clusters):
        gid = matched.get(index)
        label = _label(c, by_id)
        if gid is None:
            group = InquiryGroup(category=c.category, label=label, topics=list(c.topics), size=len(c.ids),
                                 created_at=now, updated_at=now)
            session.add(group)
            session.flush()
            gid = group.id
            result.created += 1
        else:
            group = groups[gid]
            if before[gid] != set(c.ids) or group.label != label:
                group.updated_at = now
            group.label, group.topics, group.size, group.category = label, list(c.topics), len(c.ids), c.category
        after[gid] = set(c.ids)
    for gid in set(before) - set(after):
        groups[gid].dissolved_at, groups[gid].size, groups[gid].updated_at = now, 0, now
        result.dissolved += 1
    _write_members(session, before, after, now)
    result.groups = len(after)
    result.changed_groups = {
        gid for gid in set(before) | set(after)
        if before.get(gid, set()) != after.get(gid, set())
        and (len(after.get(gid, ())) >= config.card_size or (gid in groups and groups[gid].slack_ts))
    }
    shown_before, shown_after = _shown(before, config.card_size), _shown(after, config.card_size)
    result.changed_cards = {i for i in set(shown_before) | set(shown_after) if shown_before.get(i) != shown_after.get(i)}
    for group_id in sorted(result.changed_groups):
        owe_group_card(session, group_id)
    for inquiry_id in sorted(result.changed_cards):
        owe_card(session, inquiry_id)
    return result


def _narrowed(c: Cluster, keep: set[int]) -> Cluster:
    return Cluster(c.category, tuple(i for i in c.ids if i in keep), c.topics)


def _write_members(session: Session, before: dict[int, set[int]], after: dict[int, set[int]],
                   now: dt.datetime) -> None:
    old = {iid: gid for gid, ids in before.items() for iid in ids}
    new = {iid: gid for gid, ids in after.items() for iid in ids}
    gone = [iid for iid in old if iid not in new]
    moved = [iid for iid in new if iid in old and old[iid] != new[iid]]
    for start in range(0, len(gone), 5000):
        session.execute(delete(GroupMember).where(GroupMember.inquiry_id.in_(gone[start:start + 5000]),
                                                  GroupMember.split_at.is_(None)))
    for iid in moved:
        session.execute(update(GroupMember).where(GroupMember.inquiry_id == iid)
                        .values(group_id=new[iid], joined_at=now))
    joined = [{"inquiry_id": iid, "group_id": gid, "joined_at": now} for iid, gid in new.items() if iid not in old]
    if joined:
        session.execute(GroupMember.__table__.insert(), joined)


_last_fingerprint: dict[str, tuple[Any, ...]] = {}
_refresh_lock = threading.Lock()


def refresh(rt: "Runtime", *, force: bool = False) -> RefreshResult:
    """Recompute every group. Reads and clusters outside any write transaction, then writes in
    one short one, and only when the groups came out different: a refresh that changes nothing
    never takes the write lock (on SQLite a writer waits for every other writer). Skipped after
    one query when nothing groupable changed since this process last ran it."""
    config = GroupingConfig.from_settings(rt.settings)
    with _refresh_lock:
        with rt.db.read_session() as session:
            mark = fingerprint(session)
            if not force and _last_fingerprint.get(rt.db.url) == mark:
                return RefreshResult(skipped=True)
            found = candidates(session)
            current, _ = _active(session)
        clusters = cluster(found, config.options)
        if {frozenset(c.ids) for c in clusters} == {frozenset(ids) for ids in current.values()}:
            _last_fingerprint[rt.db.url] = mark
            return RefreshResult(groups=len(current))
        with rt.db.session() as session:
            result = apply(session, clusters, {c.id: c for c in found}, config)
        _last_fingerprint[rt.db.url] = mark
        return result


# --------------------------------------------------------------------------------------------
# Staff actions and reading


def split(session: Session, inquiry_id: int, actor: str) -> Event:
    """Take an inquiry out of its group for good (staff know it asks something else)."""
    get_inquiry(session, inquiry_id)
    member = session.get(GroupMember, inquiry_id)
    if member is None or member.split_at is not None:
        raise NotInGroup(f"inquiry #{inquiry_id} is not in a group")
    member.split_at, member.split_by = utcnow(), actor
    group = session.get(InquiryGroup, member.group_id)
    assert group is not None
    group.size = max(0, group.size - 1)
    group.updated_at = utcnow()
    if group.size < 2:
        dissolve(session, group)
    owe_group_card(session, group.id)
    return record_event(session, inquiry_id, actor, "split_from_group", group=group.id)


def dissolve(session: Session, group: InquiryGroup) -> None:
    """Fewer than two left: the group ends, and its members' cards stop naming it."""
    members = session.scalars(select(GroupMember.inquiry_id).where(
        GroupMember.group_id == group.id, GroupMember.split_at.is_(None))).all()
    if group.slack_ts:
        for inquiry_id in members:
            owe_card(session, inquiry_id)
    session.execute(delete(GroupMember).where(GroupMember.group_id == group.id, GroupMember.split_at.is_(None)))
    group.size, group.dissolved_at, group.updated_at = 0, utcnow(), utcnow()


@dataclass(frozen=True)
class GroupView:
    id: int
    size: int
    label: str
    category: str
    inquiries: tuple[int, ...]
    topics: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The shape DESIGN.md gives `intake groups --json`."""
        return {"id": self.id, "size": self.size, "label": self.label, "category": self.category,
                "inquiries": list(self.inquiries)}


def groups(session: Session, *, ids: Iterable[int] | None = None) -> list[GroupView]:
    """Active groups, largest first, each with its members oldest first."""
    query = select(InquiryGroup).where(InquiryGroup.dissolved_at.is_(None))
    if ids is not None:
        query = query.where(InquiryGroup.id.in_(list(ids)))
    found = list(session.scalars(query))
    members: dict[int, list[int]] = {g.id: [] for g in found}
    for iid, gid in session.execute(
        select(GroupMember.inquiry_id, GroupMember.group_id)
        .where(GroupMember.group_id.in_(list(members)), GroupMember.split_at.is_(None))
        .order_by(GroupMember.inquiry_id)
    ):
        members[gid].append(iid)
    views = [GroupView(g.id, len(members[g.id]), g.label, g.category, tuple(members[g.id]), tuple(g.topics or ()))
             for g in found]
    return sorted(views, key=lambda v: (-v.size, v.id))


def group_of(session: Session, inquiry_id: int) -> tuple[int, int] | None:
    """(group id, size) of the group an inquiry is in now, or None."""
    row = session.execute(
        select(InquiryGroup.id, InquiryGroup.size)
        .join(GroupMember, GroupMember.group_id == InquiryGroup.id)
        .where(GroupMember.inquiry_id == inquiry_id, GroupMember.split_at.is_(None),
               InquiryGroup.dissolved_at.is_(None))
    ).first()
    return (row.id, row.size) if row is not None else None

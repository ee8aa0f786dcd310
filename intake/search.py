"""The search language: one parser for `intake list --query`, `/inquiries search`, the App
Home search box and app mentions, compiled to one SQLAlchemy select.

    category:press status:open,waiting from:@city.gov assignee:@me since:7d before:2026-12-01
    lang:es has:attachment group:12 overdue "exact phrase" words

* ``key:value``; a comma gives alternatives (``status:open,waiting``). Different keys, the
  phrases and the words must all match.
* ``from:`` an address (``ann@x.org``), a domain with its subdomains (``@city.gov``), or part of
  the sender's address or name (``from:ann``).
* ``assignee:`` ``@me`` / ``me``, ``none`` (unassigned), ``any``, or a Slack user
  (``U123``, ``@U123``, ``<@U123>`` as Slack writes a mention).
* ``since:`` / ``before:`` ``7d``, ``12h``, ``2w``, ``today``, ``yesterday`` or a date
  ``2026-12-01`` (UTC); ``since`` includes that moment, ``before`` excludes it.
* ``has:`` ``attachment``, ``note`` (an internal note), ``reply`` (we replied).
* ``overdue``: a response is owed and its target has passed (the response clock of issue 12,
  ``intake due``; the rule is ``intake.sla.clock``'s).
* ``"exact phrase"`` and plain words are searched in the subject, the sender and the messages.

``natural=True`` (app mentions: ``@intake open press inquiries this week``) also accepts a few
plain-English words: ``open`` (new, open or waiting), ``new``/``waiting``/``closed``/``spam``,
category names and their plurals, ``this week``, ``today``, ``yesterday``, ``this month``,
``unassigned``, ``mine``, language names (``spanish``), ``from city.gov``; words like
"inquiries" or "show me" are ignored. No language model: a table of words.

Errors are :class:`QueryError`, whose message names the token that is wrong and says why.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.orm import Session

from intake.models import INQUIRY_STATUSES, Attachment, Contact, GroupMember, Inquiry, Message, utcnow

KEYS = ("category", "status", "from", "assignee", "since", "before", "lang", "has", "group")
HAS_VALUES = ("attachment", "note", "reply")
OPEN_STATUSES = ("new", "open", "waiting")
MAX_TERMS = 30  # a query longer than this is refused, not silently cut
MAX_WORDS = 8

_TOKEN = re.compile(r'\s*(?:([A-Za-z_]+):("([^"]*)("?)|\S*)|"([^"]*)("?)|(\S+))')
_RELATIVE = re.compile(r"^(\d{1,4})([hdw])$")
_USER = re.compile(r"^<?@?([UW][A-Z0-9]{2,20})(?:\|[^>]*)?>?$")
_LANG = re.compile(r"^[a-z]{2}$")


class QueryError(ValueError):
    """A query that cannot be run; the message names the wrong token."""

    def __init__(self, token: str, reason: str) -> None:
        self.token = token
        super().__init__(f"{token!r}: {reason}" if token else reason)


@dataclass(frozen=True)
class Query:
    categories: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    senders: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()  # Slack user IDs, "@none", "@any"
    since: dt.datetime | None = None
    before: dt.datetime | None = None
    languages: tuple[str, ...] = ()
    has: tuple[str, ...] = ()
    groups: tuple[int, ...] = ()
    overdue: bool = False
    phrases: tuple[str, ...] = ()
    words: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self == Query()


@dataclass
class _Builder:
    values: dict[str, list] = field(default_factory=dict)

    def add(self, key: str, items: Iterable) -> None:
        self.values.setdefault(key, []).extend(items)


# ---- parsing ---------------------------------------------------------------------------------


def _start_of_day(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def _moment(token: str, value: str, now: dt.datetime) -> dt.datetime:
    value = value.lower()
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return now - {"h": dt.timedelta(hours=amount), "d": dt.timedelta(days=amount),
                      "w": dt.timedelta(weeks=amount)}[unit]
    if value == "today":
        return _start_of_day(now)
    if value == "yesterday":
        return _start_of_day(now) - dt.timedelta(days=1)
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise QueryError(token, "give a date as 2026-12-01, or 7d, 12h, 2w, today, yesterday") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


def _assignee(token: str, value: str, user: str | None) -> str:
    lowered = value.lower()
    if lowered in ("@me", "me"):
        if not user:
            raise QueryError(token, "@me means the Slack user asking; here, name one (assignee:U123)")
        return user
    if lowered in ("none", "@none", "nobody", "unassigned"):
        return "@none"
    if lowered in ("any", "@any", "anyone"):
        return "@any"
    found = _USER.match(value)
    if not found:
        raise QueryError(token, "use @me, none, any or a Slack user ID such as U123")
    return found.group(1)


def _sender(token: str, value: str) -> str:
    value = value.strip().lower()
    if not value or value == "@" or any(c.isspace() for c in value):
        raise QueryError(token, "give an address, @domain or part of a name")
    return value


def _choices(token: str, values: list[str], allowed: Sequence[str] | None, what: str) -> list[str]:
    """Lower-cased values, each one of ``allowed`` (anything when None)."""
    values = [v.lower() for v in values]
    unknown = [v for v in values if allowed is not None and v not in allowed]
    if unknown:
        raise QueryError(token, f"unknown {what} {unknown[0]!r} (known: {', '.join(allowed or ())})")
    return values


def _key_values(builder: _Builder, token: str, key: str, raw: str, *, categories: Sequence[str] | None,
                user: str | None, now: dt.datetime) -> None:
    key = key.lower()
    if key not in KEYS:
        raise QueryError(token, f"unknown filter {key}: (known: {', '.join(KEYS)}, overdue)")
    values = [v.strip() for v in raw.split(",")] if raw else []
    if not values or any(not v for v in values):
        raise QueryError(token, f"{key}: needs a value")
    if key == "category":
        builder.add("categories", _choices(token, values, categories, "category"))
    elif key == "status":
        builder.add("statuses", _choices(token, values, INQUIRY_STATUSES, "status"))
    elif key == "from":
        builder.add("senders", [_sender(token, v) for v in values])
    elif key == "assignee":
        builder.add("assignees", [_assignee(token, v, user) for v in values])
    elif key in ("since", "before"):
        if len(values) > 1:
            raise QueryError(token, f"{key}: takes one date")
        if key in builder.values:
            raise QueryError(token, f"{key}: given twice")
        builder.values[key] = [_moment(token, values[0], now)]
    elif key == "lang":
        if not all(_LANG.match(v.lower()) for v in values):
            raise QueryError(token, "give a two-letter language code such as es, fr, pt")
        builder.add("languages", [v.lower() for v in values])
    elif key == "has":
        builder.add("has", _choices(token, values, HAS_VALUES, "has: value"))
    elif key == "group":
        if not all(v.lstrip("#").isdigit() and len(v) < 10 for v in values):
            raise QueryError(token, "group: takes a group number (see `intake groups`)")
        builder.add("groups", [int(v.lstrip("#")) for v in values])


def tokenize(text: str) -> list[tuple[str, str | None, str | None, str | None]]:
    """(token, key, value, phrase) for each token; quotes group a phrase or a value."""
    out = []
    pos = 0
    text = text or ""
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            break
        pos = match.end()
        token = match.group(0).strip()
        if not token:
            continue
        key, raw_value, quoted, closed, phrase, phrase_closed, word = match.groups()
        if key is not None:
            if raw_value.startswith('"'):
                if not closed:
                    raise QueryError(token, "this quote is never closed")
                raw_value = quoted
            out.append((token, key, raw_value, None))
        elif phrase is not None:
            if not phrase_closed:
                raise QueryError(token, "this quote is never closed")
            out.append((token, None, None, phrase))
        else:
            out.append((token, None, None, word))
    return out


def parse(text: str, *, categories: Sequence[str] | None = None, user: str | None = None,
          natural: bool = False, now: dt.datetime | None = None) -> Query:
    """Parse a query. ``categories`` checks category names (the taxonomy); ``user`` is the Slack
    user ``@me`` stands for; ``natural`` adds the plain-English words of app mentions."""
    now = now or utcnow()
    if natural:
        text = _naturalize(text or "", categories, now)
    tokens = tokenize(text)
    if len(tokens) > MAX_TERMS:
        raise QueryError(tokens[MAX_TERMS][0], f"a query takes at most {MAX_TERMS} terms")
    builder = _Builder()
    phrases: list[str] = []
    words: list[str] = []
    overdue = False
    for token, key, value, phrase_or_word in tokens:
        if key is not None:
            _key_values(builder, token, key, value or "", categories=categories, user=user, now=now)
        elif token.startswith('"'):
            if phrase_or_word.strip():
                phrases.append(phrase_or_word.strip())
        elif phrase_or_word.lower() == "overdue":
            overdue = True
        else:
            words.append(phrase_or_word)
    if len(words) + len(phrases) > MAX_WORDS:
        raise QueryError((words + phrases)[MAX_WORDS], f"search at most {MAX_WORDS} words and phrases at once")
    values = builder.values
    query = Query(
        categories=tuple(dict.fromkeys(values.get("categories", []))),
        statuses=tuple(dict.fromkeys(values.get("statuses", []))),
        senders=tuple(dict.fromkeys(values.get("senders", []))),
        assignees=tuple(dict.fromkeys(values.get("assignees", []))),
        since=(values.get("since") or [None])[0],
        before=(values.get("before") or [None])[0],
        languages=tuple(dict.fromkeys(values.get("languages", []))),
        has=tuple(dict.fromkeys(values.get("has", []))),
        groups=tuple(dict.fromkeys(values.get("groups", []))),
        overdue=overdue,
        phrases=tuple(phrases),
        words=tuple(words),
    )
    if query.since and query.before and query.since >= query.before:
        raise QueryError("before:", "the before: date is not after the since: date")
    return query


# ---- plain English (app mentions) ------------------------------------------------------------

FILLER = frozenset(
    "inquiries inquiry emails email messages message mail tickets ticket show me list find get all "
    "the a an any some of with are is which what that please give for about in on".split()
)
LANGUAGE_WORDS = {
    "english": "en", "spanish": "es", "french": "fr", "portuguese": "pt", "german": "de", "korean": "ko",
    "español": "es", "espanol": "es", "français": "fr", "francais": "fr", "português": "pt",
}
STATUS_WORDS = {"open": "new,open,waiting", "new": "new", "waiting": "waiting", "closed": "closed", "spam": "spam"}


def _category_word(word: str, categories: Sequence[str] | None) -> str | None:
    for name in categories or ():
        if word in (name, name + "s", name + "es", name.replace("_", " ")):
            return name
    return None


def _naturalize(text: str, categories: Sequence[str] | None, now: dt.datetime) -> str:
    """Rewrite the plain-English words of a mention into the grammar's terms."""
    today = _start_of_day(now)
    text = re.sub(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>", " ", text, count=1)  # the app's own mention
    phrases = {
        "this week": f"since:{(today - dt.timedelta(days=today.weekday())).date().isoformat()}",
        "last week": "since:7d",
        "this month": f"since:{today.replace(day=1).date().isoformat()}",
        "today": "since:today",
        "yesterday": f"since:yesterday before:{today.date().isoformat()}",
        "assigned to me": "assignee:@me",
    }
    for phrase, term in phrases.items():
        text = re.sub(rf"(?<![\w:]){phrase}(?![\w:])", f" {term} ", text, flags=re.IGNORECASE)
    out: list[str] = []
    pending_from = False
    for token, key, value, word in tokenize(text):
        if key is not None or token.startswith('"'):
            out.append(token)
            continue
        lowered = word.lower().strip(".,;!?")
        if pending_from:
            pending_from = False
            if "." in lowered or "@" in lowered:
                out.append(f"from:{lowered}")
                continue
        if lowered == "from":
            pending_from = True
        elif lowered in ("mine", "my"):
            out.append("assignee:@me")
        elif lowered == "unassigned":
            out.append("assignee:none")
        elif lowered in STATUS_WORDS:
            out.append(f"status:{STATUS_WORDS[lowered]}")
        elif lowered in LANGUAGE_WORDS:
            out.append(f"lang:{LANGUAGE_WORDS[lowered]}")
        elif _category_word(lowered, categories):
            out.append(f"category:{_category_word(lowered, categories)}")
        elif lowered and lowered not in FILLER:
            out.append(word)
    return " ".join(out)


# ---- compiling -------------------------------------------------------------------------------


def _contains(column, text: str):
    return func.lower(column).contains(text.lower(), autoescape=True)


def text_clause(text: str):
    """One word or phrase: in the subject, the sender's address or name, or any message's text
    or subject. Portable LIKE matching: the same on SQLite and PostgreSQL, and a desk holds
    thousands of inquiries, not millions."""
    in_messages = select(Message.inquiry_id).where(
        or_(_contains(Message.text_body, text), _contains(Message.subject, text))
    )
    return or_(
        _contains(Inquiry.subject, text),
        _contains(Contact.address, text),
        _contains(func.coalesce(Contact.name, ""), text),
        Inquiry.id.in_(in_messages),
    )


def _sender_clause(value: str):
    if value.startswith("@"):
        domain = value[1:]
        return or_(Contact.address.endswith("@" + domain, autoescape=True),
                   Contact.address.endswith("." + domain, autoescape=True))
    if "@" in value:
        return Contact.address == value
    return or_(_contains(Contact.address, value), _contains(func.coalesce(Contact.name, ""), value))


def _assignee_clause(value: str):
    if value == "@none":
        return Inquiry.assignee.is_(None)
    if value == "@any":
        return Inquiry.assignee.is_not(None)
    return Inquiry.assignee == value


def _has_clause(value: str):
    if value == "attachment":
        return exists().where(Attachment.message_id == Message.id, Message.inquiry_id == Inquiry.id)
    direction, kind = ("internal", "note") if value == "note" else ("outbound", "reply")
    return exists().where(Message.inquiry_id == Inquiry.id, Message.direction == direction, Message.kind == kind)


def compile_query(query: Query, *, now: dt.datetime | None = None) -> Select:
    """One select of inquiries, newest first. Status, category and assignee filters are served by
    the inquiries indexes (status, category, received_at) and (assignee, status)."""
    stmt = select(Inquiry).outerjoin(Contact, Inquiry.contact_id == Contact.id)
    where = []
    if query.statuses:
        where.append(Inquiry.status.in_(query.statuses))
    if query.categories:
        where.append(Inquiry.category.in_(query.categories))
    if query.senders:
        where.append(or_(*(_sender_clause(v) for v in query.senders)))
    if query.assignees:
        where.append(or_(*(_assignee_clause(v) for v in query.assignees)))
    if query.since is not None:
        where.append(Inquiry.received_at >= query.since)
    if query.before is not None:
        where.append(Inquiry.received_at < query.before)
    if query.languages:
        where.append(Inquiry.language.in_(query.languages))
    where += [_has_clause(v) for v in query.has]
    if query.groups:
        where.append(Inquiry.id.in_(select(GroupMember.inquiry_id).where(
            GroupMember.group_id.in_(query.groups), GroupMember.split_at.is_(None))))
    if query.overdue:
        from intake.sla.clock import overdue_clause

        where.append(overdue_clause(now or utcnow()))
    where += [text_clause(t) for t in (*query.phrases, *query.words)]
    return stmt.where(*where).order_by(Inquiry.received_at.desc(), Inquiry.id.desc())


def search(session: Session, query: Query, *, limit: int | None = None, now: dt.datetime | None = None) -> list[Inquiry]:
    stmt = compile_query(query, now=now)
    if limit:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def with_filters(query: Query, *, status: str | None = None, category: str | None = None) -> Query:
    """`intake list --status S --category C --query ...`: the options narrow the query."""
    if status:
        query = replace(query, statuses=(status,) if not query.statuses or status in query.statuses else ("",))
    if category:
        query = replace(query, categories=(category,) if not query.categories or category in query.categories else ("",))
    return query


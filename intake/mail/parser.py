"""Raw RFC 822 bytes -> ParsedEmail. Never re-serializes the inbound message.

Why `policy.compat32` and not `policy.default`: compat32 keeps every header as the raw string
it read (8-bit bytes as surrogates) and never parses a header lazily, so nothing can raise on
access later; each header is then decoded here, once, with explicit fallbacks. Bodies are read
with `get_payload(decode=True)` (transfer decoding only) and decoded with our own charset
fallback chain, which sidesteps `get_content()`'s LookupError on unknown charsets.

Nested messages (`message/rfc822`, `message/news`, ...): the part itself is listed as one
attachment (its headers and body written back as read, so a staff member can open the
forwarded mail), and the forwarded message's own attachments are listed too with `depth >= 1`.
Its text only becomes the body when the outer message has no text at all (a forward sent as
the whole body, cpython msg_06).
"""

from __future__ import annotations

import email
import email.feedparser
import email.policy
import email.utils
import hashlib
from dataclasses import dataclass, field
from email.message import Message

from . import automation
from .bodies import convert_html, safe_filename, strip_tags
from .budget import PARSE_BUDGET_SECONDS, Budget
from .headers import (
    clean_id,
    clean_text,
    decode_header_value,
    decode_raw_8bit,
    decode_with_fallback,
    decode_words,
    looks_like_message,
    normalize_address,
    parse_addresses,
    parse_date,
    parse_id_list,
    surrogate_bytes,
)
from .replies import latest_reply
from .types import Address, ParsedAttachment, ParsedEmail, UnparseableMessage

# Deeper MIME nesting than this is an attack or a loop, not mail; the rest is not walked.
MAX_DEPTH = 30
MAX_DEFECTS = 50
_BODY_TYPES = ("text/plain", "text/html")
_INNER_MESSAGE_TYPES = ("message/rfc822", "message/global", "message/news")

# Caps on what one header may cost. The email package's parameter parser (boundary, charset,
# filename) is quadratic in the length of Content-Type / Content-Disposition (400 KB of `a="b";`
# took 5 s), and address parsing runs at ~0.3 MB/s: real headers are far below these sizes.
MAX_PARAM_HEADER = 8_192
MAX_HEADER_CHARS = 65_536  # a decoded header value (Subject, X-...) longer than this is cut
MAX_SUBJECT_CHARS = 5_000  # what an inquiry keeps
MAX_SENDER_HEADER = 16_384  # From / Reply-To / Sender: only the first address matters
MAX_RECIPIENT_HEADER = 524_288  # To / Cc: about 13,000 recipients
# The latest reply when the budget left no time to look for quotes: the top of the text.
UNPROCESSED_REPLY_CHARS = 3_000
_PARAM_HEADERS = ("content-type", "content-disposition")
MAX_HEADERS = 5_000  # header fields decoded (a long Received chain has a few dozen)
FEED_CHUNK = 65_536


class _BoundedMessage(Message):
    """email's Message whose parameter headers are read at most MAX_PARAM_HEADER long.

    The feed parser itself asks every multipart part for its boundary, so the cap has to live in
    the message class it builds; ``raw_items()`` still gives the whole header for the record.
    """

    def get(self, name, failobj=None):
        value = super().get(name, failobj)
        if isinstance(value, str) and len(value) > MAX_PARAM_HEADER and name.lower() in _PARAM_HEADERS:
            return value[:MAX_PARAM_HEADER]
        return value

    __getitem__ = get


def parse(raw: bytes, *, max_attachment_bytes: int | None = None,
          budget_seconds: float | None = PARSE_BUDGET_SECONDS) -> ParsedEmail:
    """Parse one message. Raises UnparseableMessage only when the bytes are not mail at all.

    `max_attachment_bytes`: attachments larger than this keep size and sha256 but get
    `content=b""` and `content_omitted=True` (None: keep everything).
    `budget_seconds`: past this, optional steps are skipped and the result is `partial`
    (see intake.mail.budget); None: no limit.
    """
    raw = bytes(raw)
    reason = looks_like_message(raw)
    if reason is not None:
        raise UnparseableMessage(reason)
    defects: list[str] = []
    source = raw
    if source[:1] in (b"\r", b"\n"):
        source = source.lstrip(b"\r\n")
        defects.append("blank lines before the first header")
    budget = Budget(budget_seconds)
    try:
        msg = _feed(source, budget)
    except RecursionError as exc:  # the feed parser recurses once per nested multipart
        raise UnparseableMessage("MIME structure nested too deeply") from exc
    except Exception as exc:  # pragma: no cover - the feed parser is very tolerant
        raise UnparseableMessage(f"email parser failed: {exc.__class__.__name__}") from exc
    try:
        return _build(msg, defects, max_attachment_bytes, budget)
    except RecursionError as exc:
        raise UnparseableMessage("MIME structure nested too deeply") from exc
    except UnparseableMessage:
        raise
    except Exception as exc:  # a bug here must not lose the message: it is kept as unparseable
        raise UnparseableMessage(f"parser error: {exc.__class__.__name__}: {exc}"[:500]) from exc


def _feed(source: bytes, budget: Budget) -> Message:
    """email's feed parser, fed in chunks (as ``message_from_bytes`` does) with the budget
    checked between them: its cost is per line (2 MB of blank lines took a second), and a
    30 MB message of short lines would otherwise hold a worker for many seconds."""
    parser = email.feedparser.BytesFeedParser(_factory=_BoundedMessage, policy=email.policy.compat32)
    for start in range(0, len(source), FEED_CHUNK):
        parser.feed(source[start:start + FEED_CHUNK])
        if budget.spent() and start + FEED_CHUNK < len(source):
            budget.skip(f"only the first {start + FEED_CHUNK:,} bytes were read (the rest is in the raw message)")
            break
    return parser.close()


@dataclass
class _Headers:
    """The message's headers: decoded pairs in order, plus raw values by lower-cased name."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    first: dict[str, str] = field(default_factory=dict)
    raw: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        return self.first.get(name.lower())

    def raw_all(self, name: str) -> list[str]:
        return self.raw.get(name.lower(), [])

    def raw_first(self, name: str) -> str | None:
        values = self.raw.get(name.lower())
        return values[0] if values else None


def _read_headers(msg: Message, defects: list[str]) -> _Headers:
    headers = _Headers()
    guessed: set[str] = set()
    for index, (name, value) in enumerate(msg.raw_items()):
        if index == MAX_HEADERS:
            defects.append(f"over {MAX_HEADERS:,} header fields: the rest were not read")
            break
        name_text = clean_text(decode_raw_8bit(str(name)[:200])[0]).strip()
        value = str(value)
        shown = value
        if len(value) > MAX_HEADER_CHARS:
            defects.append(f"header {name_text[:60]}: over {MAX_HEADER_CHARS:,} characters, cut")
            shown = value[:MAX_HEADER_CHARS]
        text, was_guessed = decode_header_value(shown)
        if was_guessed and name_text.lower() not in guessed:
            guessed.add(name_text.lower())
            defects.append(f"header {name_text}: raw 8-bit bytes, decoded as a guess")
        headers.pairs.append((name_text, text))
        key = name_text.lower()
        headers.first.setdefault(key, text)
        headers.raw.setdefault(key, []).append(value)
    return headers


def _latin1(value: str | None) -> str | None:
    """A raw header value as Latin-1 text: what peek_message_id sees, so both agree."""
    if value is None:
        return None
    try:
        return surrogate_bytes(value).decode("latin-1")
    except UnicodeEncodeError:
        return value


def _return_path(value: str | None) -> str | None:
    if value is None:
        return None
    text = clean_text(value).strip()
    if text.replace(" ", "") in ("<>", ""):
        return ""
    return normalize_address(text)


@dataclass
class _Walk:
    max_bytes: int | None
    evidence: automation.Evidence
    defects: list[str]
    budget: Budget
    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)
    inner_texts: list[str] = field(default_factory=list)
    inner_htmls: list[str] = field(default_factory=list)
    attachments: list[ParsedAttachment] = field(default_factory=list)
    defect_names: set[str] = field(default_factory=set)

    def defect(self, text: str) -> None:
        if text not in self.defect_names and len(self.defects) < MAX_DEFECTS:
            self.defect_names.add(text)
            self.defects.append(text)


def _part_header(part: Message, name: str) -> str | None:
    lname = name.lower()
    for key, value in part.raw_items():
        if str(key).lower() == lname:
            return str(value)
    return None


def _content_type(part: Message) -> str:
    try:
        return clean_text(str(part.get_content_type()).lower())[:255]
    except Exception:
        return "application/octet-stream"


def _params(part: Message) -> dict[str, str]:
    try:
        found = part.get_params() or []
    except Exception:
        return {}
    params: dict[str, str] = {}
    for key, value in found[1:]:
        try:
            params[clean_text(str(key).lower())] = clean_text(str(email.utils.collapse_rfc2231_value(value)))
        except Exception:
            continue
    return params


def _disposition(part: Message) -> str | None:
    value = _part_header(part, "Content-Disposition")
    if not value:
        return None
    return decode_raw_8bit(value)[0].split(";")[0].strip().lower() or None


def _filename(part: Message) -> str | None:
    """RFC 2231 (`filename*=`), RFC 2047 (`=?utf-8?...?=`, common though not standard) and
    raw 8-bit names; falls back to the Content-Type `name` parameter."""
    try:
        name = part.get_filename() or part.get_param("name")
    except Exception:
        name = None
    if isinstance(name, tuple):  # an RFC 2231 triple get_param did not collapse
        try:
            name = email.utils.collapse_rfc2231_value(name)
        except Exception:
            name = None
    if not name:
        return None
    text = decode_words(decode_raw_8bit(str(name))[0])
    return safe_filename(clean_text(text))


def _payload_bytes(part: Message, walk: _Walk) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception as exc:
        walk.defect(f"part {_content_type(part)}: transfer decoding failed ({exc.__class__.__name__})")
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    return surrogate_bytes(payload) if isinstance(payload, str) else b""


def _message_bytes(msg: Message, depth: int = 0) -> bytes:
    """An attached message written back from its raw header strings and raw payloads.

    Not byte-exact with the original (line breaks after headers are normalized), but no header
    is re-folded or re-encoded; the outer raw message, kept byte-exact by the store, is the
    authority.
    """
    return "".join(_message_lines(msg, depth)).encode("utf-8", "surrogateescape")


def _message_lines(msg: Message, depth: int) -> list[str]:
    payload = msg.get_payload()
    sample = payload if isinstance(payload, str) else ""
    nl = "\r\n" if "\r\n" in sample else "\n"
    out = [f"{name}: {value}{nl}" for name, value in msg.raw_items()]
    out.append(nl)
    if isinstance(payload, str):
        out.append(payload)
    elif isinstance(payload, list) and depth < MAX_DEPTH:
        if msg.get_content_maintype() == "multipart":
            boundary = msg.get_boundary() or "boundary"
            if msg.preamble:
                out.append(msg.preamble + nl)
            for sub in payload:
                out.append(f"--{boundary}{nl}")
                out.extend(_message_lines(sub, depth + 1))
                out.append(nl)
            out.append(f"--{boundary}--{nl}")
            if msg.epilogue:
                out.append(msg.epilogue)
        else:
            for sub in payload:
                out.extend(_message_lines(sub, depth + 1))
    return out


def _attachment(part: Message, ctype: str, data: bytes, depth: int, walk: _Walk,
                filename: str | None = None) -> None:
    omitted = walk.max_bytes is not None and len(data) > walk.max_bytes
    content_id = _part_header(part, "Content-ID")
    walk.attachments.append(
        ParsedAttachment(
            filename=filename or _filename(part),
            content_type=ctype,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            content=b"" if omitted else data,
            content_omitted=omitted,
            inline=_disposition(part) != "attachment",
            content_id=clean_id(decode_raw_8bit(content_id)[0]) if content_id else None,
            depth=depth,
        )
    )


def _visit(part: Message, depth: int, nesting: int, walk: _Walk) -> None:
    if nesting > MAX_DEPTH:
        walk.defect("MIME nesting deeper than 30 levels: the rest was not read")
        return
    if walk.budget.spent():
        if not walk.budget.skipped:
            walk.budget.skip("later MIME parts were not read (they are in the raw message)")
        return
    for name in ("Content-Type", "Content-Disposition"):
        value = _part_header(part, name)
        if value is not None and len(value) > MAX_PARAM_HEADER:
            walk.defect(f"{name} over {MAX_PARAM_HEADER:,} characters: parameters after that ignored")
    for defect in part.defects:
        walk.defect(f"email: {defect.__class__.__name__}")
    ctype = _content_type(part)
    if depth == 0:
        automation.check_part(walk.evidence, ctype, _params(part))
    payload = part.get_payload()
    if isinstance(payload, list) and ctype.split("/")[0] == "message":
        _visit_message(part, ctype, payload, depth, nesting, walk)
        return
    if isinstance(payload, list):
        for sub in payload:
            if isinstance(sub, Message):
                _visit(sub, depth, nesting + 1, walk)
        return
    _visit_leaf(part, ctype, depth, walk)


def _visit_message(part: Message, ctype: str, payload: list, depth: int, nesting: int,
                   walk: _Walk) -> None:
    data = b"".join(_message_bytes(sub) for sub in payload if isinstance(sub, Message))
    filename = _filename(part)
    inner = payload[0] if payload and isinstance(payload[0], Message) else None
    if ctype in _INNER_MESSAGE_TYPES and inner is not None:
        if not filename:
            subject = decode_header_value(_part_header(inner, "Subject") or "")[0]
            filename = safe_filename(f"{subject[:100] or 'message'}.eml")
        _attachment(part, ctype, data, depth, walk, filename)
        _visit(inner, depth + 1, nesting + 1, walk)
    else:  # message/delivery-status and friends: header blocks, kept as one attachment
        _attachment(part, ctype, data, depth, walk, filename)


def _visit_leaf(part: Message, ctype: str, depth: int, walk: _Walk) -> None:
    data = _payload_bytes(part, walk)
    filename = _filename(part)
    is_text = ctype in _BODY_TYPES or ctype.startswith("multipart/")
    if is_text and _disposition(part) != "attachment" and not filename:
        try:
            charset = part.get_content_charset()
        except Exception:
            charset = None
        text, problem = decode_with_fallback(data, charset)
        if problem:
            walk.defect(f"part {ctype}: {problem}")
        text = clean_text(text).replace("\r\n", "\n")
        is_html = ctype == "text/html"
        if depth == 0:
            (walk.htmls if is_html else walk.texts).append(text)
        else:
            (walk.inner_htmls if is_html else walk.inner_texts).append(text)
        return
    _attachment(part, ctype, data, depth, walk, filename)


def _addresses(headers: _Headers, name: str, limit: int, defects: list[str]) -> list[Address]:
    values, total = [], 0
    for value in headers.raw_all(name):
        if total + len(value) > limit:
            defects.append(f"{name}: over {limit:,} characters, the rest not read")
            values.append(value[: max(0, limit - total)])
            break
        values.append(value)
        total += len(value)
    return parse_addresses(values)


def _first_address(headers: _Headers, name: str, defects: list[str]) -> Address | None:
    found = _addresses(headers, name, MAX_SENDER_HEADER, defects)
    return found[0] if found else None


def _body_text(texts: list[str], html: str | None, budget: Budget, defects: list[str]) -> tuple[str, bool]:
    """The message's text, and whether part of it could not be converted."""
    if texts:
        return "\n\n".join(t.strip("\n") for t in texts), False
    if not html:
        return "", False
    if budget.spent():
        budget.skip("HTML converted by stripping tags, without layout")
        return strip_tags(html), False
    converted = convert_html(html)
    defects.extend(converted.problems)
    return converted.text, bool(converted.problems)


def _latest_reply(text: str, html: str | None, budget: Budget) -> str:
    if budget.spent():
        budget.skip("quoted history and signature were not removed")
        return text.strip()[:UNPROCESSED_REPLY_CHARS]
    return latest_reply(text, html)


def _build(msg: Message, defects: list[str], max_bytes: int | None, budget: Budget) -> ParsedEmail:
    headers = _read_headers(msg, defects)
    evidence = automation.Evidence()
    walk = _Walk(max_bytes=max_bytes, evidence=evidence, defects=defects, budget=budget)
    _visit(msg, 0, 0, walk)

    texts, htmls = walk.texts, walk.htmls
    if not texts and not htmls:
        texts, htmls = walk.inner_texts, walk.inner_htmls
    html = "\n".join(htmls) if htmls else None
    # Some clients send an empty text/plain alternative beside the real HTML: HTML wins then.
    texts = [t for t in texts if t.strip()]
    text, truncated = _body_text(texts, html, budget, defects)

    subject = headers.get("Subject") or ""
    if len(subject) > MAX_SUBJECT_CHARS:
        defects.append(f"Subject over {MAX_SUBJECT_CHARS:,} characters, cut")
        subject = subject[:MAX_SUBJECT_CHARS]
    sender = _first_address(headers, "From", defects)
    return_path = _return_path(_latin1(headers.raw_first("Return-Path")))
    in_reply_to = parse_id_list(_latin1(headers.raw_first("In-Reply-To")))
    references = parse_id_list(" ".join(_latin1(v) or "" for v in headers.raw_all("References")))

    automation.check_headers(evidence, headers.get)
    automation.check_sender(evidence, sender, return_path, headers.get("From"))
    automation.check_subject(evidence, subject)

    parsed = ParsedEmail(
        message_id=clean_id(_latin1(headers.raw_first("Message-ID"))),
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=references,
        subject=subject,
        sender=sender,
        reply_to=_first_address(headers, "Reply-To", defects),
        return_path=return_path,
        to=_addresses(headers, "To", MAX_RECIPIENT_HEADER, defects),
        cc=_addresses(headers, "Cc", MAX_RECIPIENT_HEADER, defects),
        date=parse_date(headers.get("Date")),
        text=text,
        html=html,
        latest_reply=_latest_reply(text, None if texts else html, budget),
        attachments=walk.attachments,
        headers=headers.pairs,
        automation=evidence.signals(),
        defects=defects,
        partial=truncated,
    )
    if budget.skipped:  # the budget may run out in the last steps: recorded after them
        parsed.defects.extend(budget.skipped)
        parsed.partial = True
    return parsed

"""Building outbound RFC 822 messages from untrusted parts, safely.

Everything that reaches a header here may come from an applicant (their subject, their name,
their address, the Message-IDs their client chose). Two layers keep it out of the header
structure: :func:`header_text` removes every line break and control character first, and the
message is serialized with ``email.policy.SMTP``, whose header folding refuses a value that still
contains CR or LF (``raise_on_defect``) and encodes non-ASCII display names as RFC 2047 words.
The stdlib is used rather than a templating of raw lines because it gets folding, encoding and
quoting right.
"""

from __future__ import annotations

import functools
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, getaddresses

from intake.mail.subjects import TICKET_TOKEN
from intake.models import utcnow

# A deliberately plain address pattern: dot-atom local part, LDH domain with a dot. It rejects
# quoted local parts and IP literals, which no applicant needs and which widen the attack surface.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDRESS_RE = re.compile(rf"^{_LOCAL}@{_LABEL}(?:\.{_LABEL})+$")
# RFC 5322 msg-id: id-left "@" id-right, printable ASCII without space, brackets or quotes.
_MSGID_CHARS = re.compile(r"^[!#-;=?-\[\]-~]+$")  # printable ASCII minus space " < > \

SUBJECT_MAX = 180
NAME_MAX = 100
REFERENCES_MAX = 20  # RFC 5322 allows trimming the middle of a long References chain
_PREFIX_RE = re.compile(r"^\s*((re|fwd?|aw|wg|sv|vs|antw|tr|rif|r)\s*(\[\d+\])?\s*:\s*)+", re.I)
_TOKEN_RE = re.compile(rf"\s*{TICKET_TOKEN.pattern}\s*")


class InvalidAddress(ValueError):
    """An address that we refuse to write to (malformed, or an injection attempt)."""


def header_text(value: str | None, limit: int = SUBJECT_MAX) -> str:
    """One line of display text: no CR/LF or other controls, whitespace collapsed, truncated.

    Unicode line separators (U+2028, U+2029, NEL) and every other control (category C*) count
    as line breaks too: some mail clients and gateways honour them.
    """
    if not value:
        return ""
    cleaned = "".join(
        " " if unicodedata.category(ch).startswith(("C", "Z")) and ch != " " else ch for ch in value
    )
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1].rstrip() + "…"
    return cleaned


def validate_address(value: str | None) -> str:
    """The bare ``local@domain`` of a recipient, or :class:`InvalidAddress`.

    A display name that came along is dropped; anything with a line break, a second address
    or odd characters is refused rather than repaired.
    """
    addr = _checked_address(value) if value else None
    if addr is None:
        raise InvalidAddress(f"not an address: {value!r}")
    return addr


@functools.lru_cache(maxsize=4096)
def _checked_address(value: str) -> str | None:
    """validate_address's answer, remembered: the stdlib's two address parsers cost about a
    tenth of a millisecond, and every card and acknowledgment asks about the same few addresses
    several times (the reply options, the recipient, our own sender)."""
    if any(ch in value for ch in "\r\n\0"):
        return None
    bare = value.strip()
    pairs = getaddresses([bare])
    addr = pairs[0][1].strip() if len(pairs) == 1 else ""
    # parseaddr repairs what it cannot read ("a@exa mple.org" becomes a@example.org); we want
    # the written address to be exactly the one we send to, alone or inside <...>.
    written = bare[bare.rfind("<") + 1:-1] if bare.endswith(">") and "<" in bare else bare
    if written != addr or len(addr) > 254 or not ADDRESS_RE.match(addr):
        return None
    try:
        Address(addr_spec=addr)  # the stdlib's own parser must agree
    except (ValueError, IndexError):
        return None
    return addr


def clean_msgid(value: str | None) -> str | None:
    """A Message-ID without angle brackets, or None when it is unusable in a header."""
    if not value:
        return None
    value = value.strip().strip("<>").strip()
    if not value or len(value) > 900 or "@" not in value or not _MSGID_CHARS.match(value):
        return None
    return value


def reply_subject(subject: str | None, inquiry_id: int, tag: str | None = None) -> str:
    """``Re: <original subject> [#ID-tag]``: one Re:, one token, no line breaks.

    ``tag`` is the inquiry's keyed tag (intake.tickets), which makes the token unguessable;
    without it the old ``[#ID]`` form is written.

    Existing Re:/Fwd:/AW: prefixes and [#N] tokens are removed first so that a long exchange
    keeps a stable subject, which the fallback subject threading relies on.
    """
    base = header_text(subject)
    base = _PREFIX_RE.sub("", base)
    base = _TOKEN_RE.sub(" ", base).strip()
    base = base or "Your inquiry"
    token = f"#{inquiry_id}-{tag}" if tag else f"#{inquiry_id}"
    return header_text(f"Re: {base} [{token}]", SUBJECT_MAX + 20)


def new_message_id(from_address: str) -> str:
    """A fresh Message-ID (without brackets) in our own domain, fixed before the first send."""
    domain = from_address.rpartition("@")[2] or "localhost"
    # 128 random bits, short enough that "Message-ID: <...>" stays on one line (make_msgid's ids
    # are folded onto a continuation line by the SMTP policy, which some clients mishandle).
    return f"intake.{secrets.token_hex(16)}@{domain}"


def references_chain(parent_references: list[str] | str | None, parent_id: str | None) -> list[str]:
    """RFC 5322 3.6.4: the parent's References (else its In-Reply-To) followed by its id.

    Long chains keep the first id (the thread root) and the most recent ones.
    """
    if isinstance(parent_references, str):
        parent_references = re.split(r"[\s,]+", parent_references)
    ids = [i for i in (clean_msgid(r) for r in (parent_references or [])) if i]
    parent = clean_msgid(parent_id)
    if parent and parent not in ids:
        ids.append(parent)
    if len(ids) > REFERENCES_MAX:
        ids = ids[:1] + ids[-(REFERENCES_MAX - 1):]
    return ids


@dataclass
class Draft:
    """Everything an outbound message is made of, before it becomes bytes."""

    from_address: str
    to_address: str
    subject: str
    body: str
    from_name: str | None = None
    to_name: str | None = None
    message_id: str | None = None  # without brackets; generated when None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    auto_submitted: bool = False  # RFC 3834 headers for automatic responses
    extra_headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Composed:
    message: EmailMessage
    raw: bytes
    message_id: str  # without brackets
    to_address: str
    subject: str


def compose(draft: Draft) -> Composed:
    """The EmailMessage and its exact wire bytes (stored, so a resend is byte-identical)."""
    from_address = validate_address(draft.from_address)
    to_address = validate_address(draft.to_address)
    message_id = clean_msgid(draft.message_id) or new_message_id(from_address)
    subject = header_text(draft.subject, SUBJECT_MAX + 20)

    msg = EmailMessage(policy=SMTP)
    msg["From"] = Address(display_name=header_text(draft.from_name, NAME_MAX), addr_spec=from_address)
    msg["To"] = Address(display_name=header_text(draft.to_name, NAME_MAX), addr_spec=to_address)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = f"<{message_id}>"
    parent = clean_msgid(draft.in_reply_to)
    if parent:
        msg["In-Reply-To"] = f"<{parent}>"
    refs = [r for r in (clean_msgid(r) for r in draft.references) if r]
    if refs:
        msg["References"] = " ".join(f"<{r}>" for r in refs)
    if draft.auto_submitted:
        # RFC 3834 section 5; the Microsoft header asks Exchange/Outlook not to answer us back.
        msg["Auto-Submitted"] = "auto-replied"
        msg["X-Auto-Response-Suppress"] = "All"
        msg["Precedence"] = "auto_reply"
    for name, value in draft.extra_headers:
        msg[name] = header_text(value, 500)
    # quoted-printable keeps the wire 7-bit, so no relay needs 8BITMIME; body newlines are fine.
    msg.set_content(draft.body.replace("\r\n", "\n"), charset="utf-8", cte="quoted-printable")
    raw = msg.as_bytes(policy=SMTP)
    return Composed(msg, raw, message_id, to_address, subject)

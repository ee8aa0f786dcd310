"""What the mail layer hands to the rest of intake: one parsed message, free of Flask and Slack."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


class NotAMessage(ValueError):
    """The bytes are not an RFC 822 message at all (empty, binary junk): reject, don't store."""


class UnparseableMessage(ValueError):
    """parse() cannot give a ParsedEmail: the bytes are not mail (the same reason
    looks_like_message gives: "empty file", "no header fields", ...) or cannot be read at all
    ("MIME structure nested too deeply"). The caller stores them as unparseable with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def first_header(headers: list[tuple[str, str]], name: str) -> str | None:
    """The first header of that name (case-insensitive), or None: one lookup rule everywhere."""
    lname = name.lower()
    for key, value in headers:
        if key.lower() == lname:
            return value
    return None


@dataclass(frozen=True)
class Address:
    address: str  # normalized: trimmed, lower-cased; "" for the null return path <>
    name: str | None = None  # display name, RFC 2047 decoded

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


@dataclass
class ParsedAttachment:
    filename: str | None
    content_type: str
    size: int
    sha256: str
    content: bytes  # b"" when content_omitted; size and sha256 always describe the real content
    # True when the content was larger than parse()'s max_attachment_bytes and was not kept.
    content_omitted: bool = False
    inline: bool = False  # Content-Disposition: inline (or no disposition) rather than attachment
    content_id: str | None = None  # without angle brackets, for cid: references in the HTML
    # 0 for a part of the message itself; 1+ for a part inside an attached message/rfc822.
    depth: int = 0


@dataclass
class AutomationSignals:
    """Evidence that nobody typed this message. `automated` is set only when certain."""

    automated: bool = False
    kind: str | None = None  # bounce, auto_reply, list, calendar, receipt, complaint, ...
    reasons: list[str] = field(default_factory=list)  # human-readable: "header: Auto-Submitted: auto-replied"
    is_list: bool = False  # List-Id / List-Unsubscribe / Precedence: list|bulk|junk
    suppress_auto_reply: bool = False  # X-Auto-Response-Suppress, Auto-Submitted != no, etc.


@dataclass
class ParsedEmail:
    message_id: str | None  # without angle brackets
    in_reply_to: str | None  # first id, without angle brackets
    references: list[str]  # ids without angle brackets, oldest first
    subject: str
    sender: Address | None  # From
    reply_to: Address | None
    return_path: str | None  # None: no header; "": the null path <>
    to: list[Address]
    cc: list[Address]
    date: dt.datetime | None  # timezone-aware
    text: str  # best text body: text/plain preferred, HTML converted to text otherwise
    html: str | None
    latest_reply: str  # text with quoted history and signature stripped
    attachments: list[ParsedAttachment]
    headers: list[tuple[str, str]]  # every header, decoded best-effort, in order
    automation: AutomationSignals
    defects: list[str] = field(default_factory=list)
    # True when part of the message could not be converted within the limits (a time budget
    # spent, HTML over its size or element cap): staff see it as partially parsed.
    partial: bool = False

    def header(self, name: str) -> str | None:
        """The first header of that name (case-insensitive), or None."""
        return first_header(self.headers, name)

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [value for key, value in self.headers if key.lower() == lname]

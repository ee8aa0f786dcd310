"""Subjects for threading: reply/forward prefixes in many languages and `[#ID]` ticket tokens."""

from __future__ import annotations

import re
from typing import NamedTuple

# Reply and forward prefixes written by mail clients in the languages our applicants use:
# English (Re, Fwd, Fw), German (AW, WG, Antw), Nordic (SV, VS), Spanish/Portuguese (RV, RES,
# ENC), French (TR, Réf), Italian (R, RIF), Dutch (Antw, Doorst), Polish (Odp, PD),
# Chinese (回复, 回覆, 答复, 转发) and Korean (답장, 전달).
_PREFIX_WORDS = (
    r"re|fwd?|fw|aw|wg|sv|vs|antw|rv|res|enc|tr|r[ée]f|rif|doorst|odp|pd"
    r"|回复|回覆|答复|转发|답장|전달"
)
# One prefix with an optional counter (RE[2]:, Re^2:, Re(3):) and a colon (ASCII or full-width).
_PREFIX_RUN = re.compile(
    rf"^(?:\s*(?:{_PREFIX_WORDS})\s*(?:\[\d+\]|\^\d+|\(\d+\))?\s*[:：]\s*)+",
    re.IGNORECASE,
)
# `[#12]` (the old form) or `[#12-k3f9qa]`: the inquiry id and a keyed tag (intake.tickets).
TICKET_TOKEN = re.compile(r"\[#(\d{1,18})(?:-([A-Za-z2-7]{4,16}))?\]")
_TICKET = TICKET_TOKEN
# A mailing-list tag ([riak-users]) before the prefixes: kept, but the prefixes after it go.
_LIST_TAG = re.compile(r"^\s*(\[[^\[\]#][^\[\]]{0,60}\])")
_SPACE = re.compile(r"\s+")


class Ticket(NamedTuple):
    inquiry_id: int
    tag: str | None  # lower-case; None for the old untagged form


def find_ticket(subject: str) -> Ticket | None:
    """The first `[#123-tag]` or `[#123]` token (replies intake sends carry one), or None."""
    found = _TICKET.search(subject or "")
    if not found:
        return None
    return Ticket(int(found.group(1)), found.group(2).lower() if found.group(2) else None)


def find_ticket_token(subject: str) -> int | None:
    """The inquiry id of the first ticket token, or None."""
    ticket = find_ticket(subject)
    return ticket.inquiry_id if ticket else None


def _strip_once(subject: str) -> str:
    text = _TICKET.sub(" ", subject)
    text = _SPACE.sub(" ", text).strip()
    text = _PREFIX_RUN.sub("", text)
    tag = _LIST_TAG.match(text)
    if tag:
        rest = _PREFIX_RUN.sub("", text[tag.end():])
        text = f"{tag.group(1)} {rest.strip()}"
    return _SPACE.sub(" ", text).strip()


def thread_subject(subject: str) -> str:
    """The subject two messages of one conversation share: for fallback threading only.

    Strips every reply/forward prefix (with counters), `[#ID]` tokens, collapses whitespace and
    casefolds. Repeats until nothing changes, so the result is a fixed point (idempotent).
    """
    text = (subject or "").replace("\x00", "").casefold()
    for _ in range(len(text) + 1):
        stripped = _strip_once(text)
        if stripped == text:
            break
        text = stripped
    return text

"""Step 1: mail nobody typed (bounces, out-of-office, autoresponders, calendar notices).

Only certainty decides here: a person's message taken for an auto-reply is never acknowledged
and easily never answered. The rules themselves live in `intake.mail.automation`; this step
decides which evidence counts for the classifier: the mail layer's verdict first, then the
certain findings it can make on a `Document` of its own (headers and sender of a document that
was not parsed here, the subject, and the prose of reports and out-of-office replies in the
sender's own words). Anything less than certain is left to the model, which also learns the
`automated` category from the seed set.
"""

from __future__ import annotations

import re

from intake.classify.document import Document
from intake.mail import automation
from intake.mail.types import Address

_QUOTE_START = re.compile(
    r"^(?:>|-{2,}\s*(?:forwarded|original) message|begin forwarded message|"
    r"-----original message-----|on .{0,200} wrote:\s*$|from: .+$)",
    re.IGNORECASE | re.MULTILINE,
)


def own_words(body: str) -> str:
    """The body up to the first quoted or forwarded line."""
    match = _QUOTE_START.search(body)
    return body[: match.start()] if match else body


def automated_reasons(doc: Document) -> list[str]:
    """Why this message is certainly automated, or [] when it may have been typed by a person."""
    reasons: list[str] = []
    signals = doc.automation
    if signals is not None and signals.automated:
        reasons.extend(signals.reasons or [f"mail: {signals.kind or 'automated'}"])
    sender = Address(doc.sender_address.lower(), doc.sender_name) if doc.sender_address else None
    findings = automation.message_findings(doc.header, subject=doc.subject or "", sender=sender)
    # What the sender wrote, not what they quote or forward.
    findings += automation.text_findings(own_words(doc.body or ""))
    reasons.extend(f.reason for f in findings if f.certain)
    return _unique(reasons)


def _unique(reasons: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for reason in reasons:
        key = reason.lower()
        if key not in seen:
            seen.add(key)
            out.append(reason)
    return out

"""What the classifier reads (`Document`) and what it answers (`Verdict`).

A `Document` is deliberately smaller than a parsed email: the classifier needs the words, the
sender, the headers and the mail layer's automation signals, and nothing that ties it to MIME,
so the seed set, staff-labelled database rows and live mail all become the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from intake.mail.types import AutomationSignals, first_header

if TYPE_CHECKING:  # pragma: no cover
    from intake.mail.types import ParsedEmail
    from intake.models import Message

SOURCES = ("automated", "rule", "model")


@dataclass
class Document:
    subject: str = ""
    body: str = ""  # the latest reply, or the full text when no reply was extracted
    full_text: str = ""
    sender_address: str = ""
    sender_name: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    automation: AutomationSignals = field(default_factory=AutomationSignals)
    # Provider facts that are not in the MIME, e.g. SendGrid parsed-mode "spam_score".
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_parsed(cls, parsed: "ParsedEmail", meta: dict[str, Any] | None = None) -> "Document":
        text = parsed.text or ""
        body = (parsed.latest_reply or "").strip() or text
        return cls(
            subject=parsed.subject or "",
            body=body,
            full_text=text,
            sender_address=parsed.sender.address if parsed.sender else "",
            sender_name=parsed.sender.name if parsed.sender else None,
            headers=list(parsed.headers),
            automation=parsed.automation,
            meta=dict(meta or {}),
        )

    @classmethod
    def from_message(cls, message: "Message") -> "Document":
        """A stored message row as training text (staff labels): no headers are kept on rows."""
        text = message.text_body or ""
        body = (message.latest_reply or "").strip() or text
        return cls(
            subject=message.subject or "",
            body=body,
            full_text=text,
            sender_address=message.sender_address or "",
            sender_name=message.sender_name,
            automation=AutomationSignals(
                automated=bool(message.automated),
                reasons=list(message.automation_reasons or []),
            ),
            meta=dict(message.meta or {}),
        )

    @property
    def sender_domain(self) -> str:
        return self.sender_address.rpartition("@")[2].lower()

    def header(self, name: str) -> str | None:
        return first_header(self.headers, name)


@dataclass
class Verdict:
    category: str
    confidence: float  # 0..1
    source: str  # "automated" | "rule" | "model"
    reasons: list[str] = field(default_factory=list)  # human readable, shown to staff
    model_version: str | None = None
    needs_review: bool = False
    automated: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "confidence": round(self.confidence, 4),
            "source": self.source,
            "reasons": list(self.reasons),
            "model_version": self.model_version,
            "needs_review": self.needs_review,
            "automated": self.automated,
        }

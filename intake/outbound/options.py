"""The operator's outbound settings, read from INTAKE_CONFIG once per call with safe defaults.

Everything here is optional in the TOML file: a fresh install acknowledges human inquiries, caps
mail per recipient, suggests answers but never sends one without a click. See docs/outbound.md
for the format.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

from intake.config import Settings

log = logging.getLogger(__name__)

# Used only when neither INTAKE_FROM_ADDRESS nor SMTP_URL is set: mail is then only logged, and a
# laptop without either still runs end to end. With SMTP_URL set the address is required.
LOG_ONLY_FROM_ADDRESS = "intake@intake.invalid"  # RFC 2606: can never be delivered
# The delivery note (``messages.meta["delivery"]``) of a message that was only logged because
# SMTP_URL is unset: it is marked sent so the system runs on, and `intake show` says "logged,
# not sent" rather than showing it as sent.
LOGGED_ONLY_NOTE = "logged only: SMTP_URL is unset"


def was_logged_only(meta: Mapping[str, Any] | None) -> bool:
    """True for an outbound message that was written to the log instead of sent."""
    return (meta or {}).get("delivery") == LOGGED_ONLY_NOTE

# Categories that never get an acknowledgment whatever the operator writes: answering spam
# confirms the address, answering automated mail is how loops start.
NEVER_ACKNOWLEDGE = frozenset({"spam", "automated"})

DEFAULT_ACK_CATEGORIES = (
    "application",
    "applicant_status",
    "partnership",
    "press",
    "funding",
    "volunteer",
    "events",
    "feedback",
    "general",
)


class OutboundConfigError(Exception):
    """Outbound mail is misconfigured; the message says which setting to fix."""


@dataclass(frozen=True)
class Cap:
    """At most ``limit`` messages to one address within ``seconds``."""

    limit: int
    seconds: int

    def describe(self) -> str:
        minutes = self.seconds // 60
        return f"{self.limit} in {minutes} minutes" if minutes < 120 else f"{self.limit} in {minutes // 60} hours"


DEFAULT_CAPS = (Cap(10, 600), Cap(25, 3600))


@dataclass(frozen=True)
class OutboundOptions:
    from_address: str
    from_name: str | None
    log_only: bool  # True when SMTP_URL is unset: messages are logged and marked sent
    ack_enabled: bool
    ack_categories: frozenset[str]
    ack_per_sender_seconds: int
    ack_templates: Mapping[str, str]
    ack_null_sender: bool  # MAIL FROM:<> for acknowledgments (RFC 3834 3.3), off by default
    answer_categories: frozenset[str]  # [auto_answer] categories: answers sent without a click
    answer_min_score: float
    caps: tuple[Cap, ...]
    signature: str


def _strings(value: Any, name: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise OutboundConfigError(f"INTAKE_CONFIG: {name} must be a list of category names")
    return frozenset(str(v) for v in value)


def _caps(value: Any) -> tuple[Cap, ...]:
    if value is None:
        return DEFAULT_CAPS
    caps = []
    for entry in value:
        try:
            caps.append(Cap(int(entry["max"]), int(float(entry["minutes"]) * 60)))
        except (KeyError, TypeError, ValueError):
            raise OutboundConfigError(
                "INTAKE_CONFIG: each [[outbound.caps]] entry needs `max` and `minutes` numbers"
            ) from None
    return tuple(caps)


def load_options(settings: Settings) -> OutboundOptions:
    """Read the [outbound], [acknowledgments] and [auto_answer] tables (all optional)."""
    outbound = settings.section("outbound")
    ack = settings.section("acknowledgments")
    answer = settings.section("auto_answer")
    from_address = settings.from_address
    log_only = not settings.smtp_url
    if not from_address:
        if not log_only:
            raise OutboundConfigError(
                "SMTP_URL is set but INTAKE_FROM_ADDRESS is not: set it to the inquiry address "
                "replies come from (for example fellowship@example.org)"
            )
        from_address = LOG_ONLY_FROM_ADDRESS
    templates = ack.get("templates", {})
    if not isinstance(templates, Mapping):
        raise OutboundConfigError("INTAKE_CONFIG: [acknowledgments.templates] must be a table")
    categories = ack.get("categories")
    return OutboundOptions(
        from_address=from_address,
        from_name=outbound.get("from_name") or None,
        log_only=log_only,
        ack_enabled=bool(ack.get("enabled", True)),
        ack_categories=(
            _strings(categories, "[acknowledgments] categories")
            if categories is not None
            else frozenset(DEFAULT_ACK_CATEGORIES)
        )
        - NEVER_ACKNOWLEDGE,
        ack_per_sender_seconds=int(float(ack.get("per_sender_hours", 24)) * 3600),
        ack_templates={str(k): str(v) for k, v in templates.items()},
        ack_null_sender=bool(ack.get("null_envelope_sender", False)),
        answer_categories=_strings(answer.get("categories", []), "[auto_answer] categories"),
        answer_min_score=float(answer.get("min_score", 0.35)),
        caps=_caps(outbound.get("caps")),
        signature=str(outbound.get("signature", "")),
    )

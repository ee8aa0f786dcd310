"""Who outbound mail is from, and whether it is really sent: the environment's part of the
outbound settings, joined with the operator's tables (``Settings.outbound``,
intake/outbound/settings.py). A fresh install acknowledges human inquiries, caps mail per
recipient, suggests answers but never sends one without a click. See docs/outbound.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from intake.config import Settings
from intake.outbound.settings import OutboundSettings

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


class OutboundConfigError(Exception):
    """Outbound mail is misconfigured; the message says which setting to fix."""


@dataclass(frozen=True)
class OutboundOptions:
    """What sending needs: the sender from the environment and the operator's tables."""

    from_address: str
    log_only: bool  # True when SMTP_URL is unset: messages are logged and marked sent
    config: OutboundSettings


def load_options(settings: Settings) -> OutboundOptions:
    """The sender (INTAKE_FROM_ADDRESS, required once SMTP_URL is set) with ``settings.outbound``."""
    from_address = settings.from_address
    log_only = not settings.smtp_url
    if not from_address:
        if not log_only:
            raise OutboundConfigError(
                "SMTP_URL is set but INTAKE_FROM_ADDRESS is not: set it to the inquiry address "
                "replies come from (for example fellowship@example.org)"
            )
        from_address = LOG_ONLY_FROM_ADDRESS
    return OutboundOptions(from_address=from_address, log_only=log_only, config=settings.outbound)

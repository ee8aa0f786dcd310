"""Names every part of the domain shares: the system actor, the quiet categories, the errors."""

from __future__ import annotations

from sqlalchemy.orm import Session

from intake.models import Inquiry

SYSTEM = "system"
# Categories whose inquiries are not worked one by one (the Slack digest counts them instead).
QUIET_CATEGORIES = ("spam", "automated")


class InquiryNotFound(LookupError):
    pass


class InvalidAction(ValueError):
    """A staff action that does not apply (unknown category, note without text, a stale card)."""


def get_inquiry(session: Session, inquiry_id: int) -> Inquiry:
    inquiry = session.get(Inquiry, inquiry_id)
    if inquiry is None:
        raise InquiryNotFound(f"no inquiry #{inquiry_id}")
    return inquiry

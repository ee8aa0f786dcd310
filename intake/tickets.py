"""The `[#12-k3f9qa]` token in the subject of mail intake sends: inquiry id plus a keyed tag.

Inquiry ids are sequential, so `[#12]` alone lets anyone attach mail to inquiry 12. The tag is a
keyed hash of the id (intake.keys): only someone who received our mail knows it. A reply carrying
a valid tag joins its inquiry; the old untagged form (and a wrong tag) still joins when the
sender already takes part in the conversation, as every reference must (intake.inquiries).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from intake import keys
from intake.config import Settings

PURPOSE = "ticket"
TAG_LENGTH = 6  # 30 bits: a blind guess is right once in a billion


def tag(session: Session, settings: Settings, inquiry_id: int) -> str:
    return keys.tag(session, settings, PURPOSE, str(inquiry_id), TAG_LENGTH)


def is_valid(session: Session, settings: Settings, inquiry_id: int, given: str | None) -> bool:
    return bool(given) and len(given) == TAG_LENGTH and keys.tag_matches(
        session, settings, PURPOSE, str(inquiry_id), given)

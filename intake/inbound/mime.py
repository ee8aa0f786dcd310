"""``POST /inbound/mime``: a raw RFC 822 body, signed with an HMAC of the body.

Building a message from a provider's parsed fields lives in ``intake.mail.synthesize``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from intake.config import Settings
from intake.inbound.base import Delivery, InboundRequest, Malformed, Unauthorized, constant_time_in
# The providers' parsed-mode fallbacks build their messages with these (re-exported here).
from intake.mail.synthesize import Part, header_value, synthesize, with_fallbacks  # noqa: F401

log = logging.getLogger(__name__)

PROVIDER = "mime"
SIGNATURE_HEADER = "X-Intake-Signature"
_ACCEPTED_MIME_TYPES = ("", "message/rfc822", "application/octet-stream", "text/plain")


# --- POST /inbound/mime ------------------------------------------------------------------------


def sign(body: bytes, secret: str) -> str:
    """The ``X-Intake-Signature`` value for ``body``: what a sender computes."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(request: InboundRequest, settings: Settings) -> None:
    """Refuse unless ``X-Intake-Signature`` is the HMAC of the body under an accepted secret."""
    secrets = settings.inbound_hmac_secrets
    if not secrets:
        raise Unauthorized("/inbound/mime is not configured (set INBOUND_HMAC_SECRET)")
    given = (request.header(SIGNATURE_HEADER) or "").strip()
    if not given:
        raise Unauthorized(f"missing {SIGNATURE_HEADER} header")
    if not given.lower().startswith("sha256="):
        raise Unauthorized(f"{SIGNATURE_HEADER} must look like sha256=<hex>")
    expected = [sign(request.body, secret) for secret in secrets]
    if not constant_time_in("sha256=" + given[7:].lower(), expected):
        raise Unauthorized(f"{SIGNATURE_HEADER} does not match the body")


def receive(request: InboundRequest, settings: Settings) -> Delivery:
    verify(request, settings)
    if request.mimetype not in _ACCEPTED_MIME_TYPES:
        raise Malformed(
            f"/inbound/mime takes the raw message as the body (Content-Type message/rfc822), "
            f"got Content-Type {request.mimetype}"
        )
    if not request.body.strip():
        raise Malformed("the request body is empty; expected a raw RFC 822 message")
    return Delivery(raw=request.body)

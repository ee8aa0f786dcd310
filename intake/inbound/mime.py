"""``POST /inbound/mime``: a raw RFC 822 body, signed with an HMAC of the body.

The body is the message whatever the Content-Type claims: `curl --data-binary @message.eml`
sends ``application/x-www-form-urlencoded`` and a script may send ``text/plain``, and refusing
them helps nobody. Only a body that is clearly some provider's webhook payload (a multipart
form, or JSON) is refused, with the endpoint that takes it.

Building a message from a provider's parsed fields lives in ``intake.mail.synthesize``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

from intake.config import Settings
from intake.inbound.base import Delivery, InboundRequest, Malformed, Unauthorized, constant_time_in
# The providers' parsed-mode fallbacks build their messages with these (re-exported here).
from intake.mail.synthesize import Part, header_value, synthesize, with_fallbacks  # noqa: F401

log = logging.getLogger(__name__)

PROVIDER = "mime"
SIGNATURE_HEADER = "X-Intake-Signature"
# Payloads that belong to another endpoint, and which one (the answer says so).
FORM_HINT = ("a multipart form is a provider's webhook: SendGrid posts to /inbound/sendgrid, "
             "Mailgun to /inbound/mailgun/mime")
JSON_HINT = "a JSON body is a provider's webhook: Postmark posts to /inbound/postmark, SES (SNS) to /inbound/ses"


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


def wrong_endpoint(request: InboundRequest) -> str | None:
    """Why the body is some provider's payload rather than a message, or None.

    A form is told by its Content-Type (its body starts with a boundary line, never a header);
    JSON by the body itself, since SNS sends it as text/plain. A message never starts with
    "{" or "[", so anything else is taken as the message.
    """
    if request.mimetype == "multipart/form-data":
        return FORM_HINT
    if request.body.lstrip()[:1] in (b"{", b"["):
        try:
            json.loads(request.body)
        except ValueError:  # UnicodeDecodeError is one
            return None
        return JSON_HINT
    return None


def receive(request: InboundRequest, settings: Settings) -> Delivery:
    verify(request, settings)
    if not request.body.strip():
        raise Malformed("the request body is empty; expected a raw RFC 822 message")
    hint = wrong_endpoint(request)
    if hint is not None:
        raise Malformed(f"/inbound/mime takes the raw message as the request body; {hint}")
    return Delivery(raw=request.body)

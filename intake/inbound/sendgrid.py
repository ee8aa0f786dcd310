"""SendGrid Inbound Parse: raw mode (the ``email`` field) or parsed mode; basic auth, signed webhook.

Raw mode is preferred (the operator ticks "POST the raw, full MIME message"): the ``email`` field
is the message as received and is stored byte for byte. In parsed mode SendGrid splits the message
into ``headers`` (the original header block), ``text``, ``html``, ``from``, ``to``, ``subject`` and
``attachmentN`` files, each text field in the charset its ``charsets`` JSON names; we rebuild a
message from those.

Credentials: HTTP basic auth (``INBOUND_BASIC_AUTH``) and, when ``SENDGRID_WEBHOOK_PUBLIC_KEY`` is
set, SendGrid's signed webhook (ECDSA P-256 over timestamp + raw body). Each configured check must
pass; with neither configured the endpoint refuses everything.
"""

from __future__ import annotations

import base64
import binascii
import time
from email import policy as email_policy
from email.parser import HeaderParser
from typing import Any, Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from intake.config import Settings
from intake.inbound.base import (
    MAX_CLOCK_SKEW_SECONDS,
    Delivery,
    InboundRequest,
    Malformed,
    Unauthorized,
    load_json,
    require_basic_auth,
)
from intake.inbound.forms import FormData
from intake.inbound.mime import Part, synthesize, with_fallbacks
from intake.mail.headers import decode_with_fallback

PROVIDER = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
PARSED_FIELDS = ("headers", "text", "html", "from", "subject")
# Provider facts worth keeping beside the message (spam filters, authentication results).
META_FIELDS = ("SPF", "dkim", "spam_score", "spam_report", "sender_ip")


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """SendGrid shows the key as base64 DER (SubjectPublicKeyInfo); PEM is accepted too."""
    value = value.strip()
    if value.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(value.encode("ascii"))
    else:
        key = serialization.load_der_public_key(base64.b64decode(value))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("SENDGRID_WEBHOOK_PUBLIC_KEY is not an elliptic-curve public key")
    return key


def verify_signature(
    request: InboundRequest, public_keys: tuple[str, ...], now: Callable[[], float] = time.time
) -> None:
    """Refuse unless the ECDSA signature over timestamp + body verifies under an accepted key."""
    signature = request.header(SIGNATURE_HEADER)
    timestamp = request.header(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise Unauthorized(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
    try:
        age = abs(now() - int(timestamp))
    except ValueError:
        raise Unauthorized(f"{TIMESTAMP_HEADER} is not a Unix time") from None
    if age > MAX_CLOCK_SKEW_SECONDS:
        raise Unauthorized("the SendGrid signature timestamp is more than 5 minutes off")
    try:
        der_signature = base64.b64decode(signature, validate=True)
    except binascii.Error:
        raise Unauthorized(f"{SIGNATURE_HEADER} is not base64") from None
    payload = timestamp.encode("ascii") + request.body
    verified = False
    for key_text in public_keys:  # every key is tried, so rotation has no timing tell either
        try:
            load_public_key(key_text).verify(der_signature, payload, ec.ECDSA(hashes.SHA256()))
            verified = True
        except (InvalidSignature, ValueError):
            pass
    if not verified:
        raise Unauthorized("the SendGrid webhook signature does not verify")


def verify(request: InboundRequest, settings: Settings) -> None:
    if not settings.inbound_basic_auth and not settings.sendgrid_public_keys:
        raise Unauthorized(
            "SendGrid inbound is not configured (set INBOUND_BASIC_AUTH or "
            "SENDGRID_WEBHOOK_PUBLIC_KEY)"
        )
    if settings.inbound_basic_auth:
        require_basic_auth(request, settings.inbound_basic_auth, "SendGrid")
    if settings.sendgrid_public_keys:
        verify_signature(request, settings.sendgrid_public_keys)


def receive(request: InboundRequest, settings: Settings) -> Delivery:
    verify(request, settings)
    form = request.form
    meta = _meta(form)
    raw = form.get("email")
    if raw is not None:
        if not raw.strip():
            raise Malformed("the 'email' field (raw mode) is empty")
        return Delivery(raw=raw, meta=meta)
    if not any(name in form for name in PARSED_FIELDS):
        raise Malformed(
            "the form has neither 'email' (raw mode) nor parsed-mode fields "
            "('headers', 'text', 'html', 'from', 'subject')"
        )
    raw, dropped = rebuild(form)
    if dropped:
        meta["dropped_headers"] = dropped
    meta["synthesized"] = True
    return Delivery(raw=raw, meta=meta)


def _charsets(form: FormData) -> dict[str, str]:
    value = form.get("charsets")
    if not value:
        return {}
    try:
        charsets = load_json(value)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in charsets.items()} if isinstance(charsets, dict) else {}


def _decoded(form: FormData, name: str, charsets: dict[str, str]) -> str | None:
    """A parsed-mode field decoded in the charset SendGrid names for it (UTF-8 otherwise).

    The mail layer's decoder, so a ``charsets`` entry naming a codec that is not a text charset
    (idna, punycode, base64) is treated like any wrong label in a message: ignored, with the same
    fallbacks."""
    value = form.get(name)
    if value is None:
        return None
    return decode_with_fallback(value, charsets.get(name) or "utf-8")[0]


def rebuild(form: FormData) -> tuple[bytes, list[str]]:
    """Parsed-mode fields -> RFC 822 bytes (and the names of headers that could not be kept)."""
    charsets = _charsets(form)
    header_block = _decoded(form, "headers", charsets) or ""
    headers = [(k, str(v)) for k, v in HeaderParser(policy=email_policy.compat32).parsestr(header_block).items()]
    headers = with_fallbacks(
        headers,
        [
            ("From", _decoded(form, "from", charsets)),
            ("To", _decoded(form, "to", charsets)),
            ("Cc", _decoded(form, "cc", charsets)),
            ("Subject", _decoded(form, "subject", charsets)),
        ],
    )
    return synthesize(
        headers,
        text=_decoded(form, "text", charsets),
        html=_decoded(form, "html", charsets),
        attachments=_attachments(form),
    )


def _attachments(form: FormData) -> list[Part]:
    info: dict[str, Any] = {}
    raw_info = form.get("attachment-info")
    if raw_info:
        try:
            loaded = load_json(raw_info)
            info = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            info = {}
    parts = []
    for item in form.files:
        details = info.get(item.name) if isinstance(info.get(item.name), dict) else {}
        parts.append(
            Part(
                data=item.data,
                filename=_text(details.get("filename")) or item.filename,
                content_type=_text(details.get("type")) or item.content_type,
                content_id=_text(details.get("content-id")),
            )
        )
    return parts


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _meta(form: FormData) -> dict[str, Any]:
    meta: dict[str, Any] = {"provider": PROVIDER}
    for name in META_FIELDS:
        value = form.get(name)
        if value is not None:
            meta[name.lower()] = value.decode("utf-8", "replace")[:2000]
    envelope = form.get("envelope")
    if envelope:
        try:
            meta["envelope"] = _envelope(load_json(envelope))
        except ValueError:
            meta["envelope"] = envelope.decode("utf-8", "replace")[:2000]
    return meta


def _envelope(value: Any) -> dict[str, Any]:
    """SendGrid's ``{"to": [...], "from": "..."}``, kept as flat strings: whatever else a sender
    nests in there must not reach the JSON column (a deep structure fails to serialize)."""
    if not isinstance(value, dict):
        raise ValueError("the envelope is not a JSON object")
    recipients = value.get("to")
    recipients = recipients if isinstance(recipients, list) else [recipients] if recipients else []
    return {"to": [str(r)[:320] for r in recipients[:50] if isinstance(r, str)],
            "from": str(value.get("from"))[:320] if isinstance(value.get("from"), str) else None}

"""Mailgun Routes ``forward()``: ``body-mime`` (a route URL ending in ``mime``) or parsed fields.

Verification (Mailgun's documented scheme): ``signature`` is the hex HMAC-SHA256 of ``timestamp``
followed by ``token`` under the account's webhook signing key. We also refuse a timestamp more
than five minutes off and any token seen before: the token becomes a ``SeenNonce`` row inserted
in the same transaction as the message, so a replay fails on the unique constraint even when two
copies arrive at once on two workers.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from typing import Any, Callable

from intake.config import Settings
from intake.inbound.base import (
    MAX_CLOCK_SKEW_SECONDS,
    Delivery,
    InboundRequest,
    Malformed,
    Unauthorized,
    constant_time_in,
    load_json,
    text_field,
)
from intake.inbound.forms import FormData
from intake.inbound.mime import Part, synthesize, with_fallbacks

PROVIDER = "mailgun"
NONCE_KIND = "mailgun"
# Spam and authentication verdicts Mailgun adds as form fields.
META_FIELDS = (
    "X-Mailgun-Sflag",
    "X-Mailgun-Sscore",
    "X-Mailgun-Spf",
    "X-Mailgun-Dkim-Check-Result",
    "sender",
    "recipient",
)


def sign(timestamp: str, token: str, key: str) -> str:
    """The ``signature`` Mailgun sends: what a test or a sender computes."""
    return hmac.new(key.encode("utf-8"), (timestamp + token).encode("utf-8"), hashlib.sha256).hexdigest()


def verify(
    request: InboundRequest, settings: Settings, now: Callable[[], float] = time.time
) -> str:
    """Check the signature and its age; returns the token, which must not have been seen."""
    keys = settings.mailgun_signing_keys
    if not keys:
        raise Unauthorized("Mailgun inbound is not configured (set MAILGUN_SIGNING_KEY)")
    form = request.form
    timestamp = text_field(form, "timestamp") or ""
    token = text_field(form, "token") or ""
    signature = (text_field(form, "signature") or "").strip().lower()
    if not (timestamp and token and signature):
        raise Unauthorized("missing Mailgun signature fields (timestamp, token, signature)")
    try:
        age = abs(now() - float(timestamp))
    except ValueError:
        age = math.nan
    if not math.isfinite(age):  # float() reads "nan" and "inf", and nan > 300 is False
        raise Unauthorized("the Mailgun timestamp is not a Unix time")
    if age > MAX_CLOCK_SKEW_SECONDS:
        raise Unauthorized("the Mailgun timestamp is more than 5 minutes off (stale or replayed)")
    if not constant_time_in(signature, [sign(timestamp, token, key) for key in keys]):
        raise Unauthorized("the Mailgun signature does not match")
    if len(token) > 255:
        raise Unauthorized("the Mailgun token is too long")
    return token


def receive(request: InboundRequest, settings: Settings) -> Delivery:
    token = verify(request, settings)
    form = request.form
    meta = _meta(form)
    nonce = (NONCE_KIND, token)
    event_id = text_field(form, "Message-Id")
    raw = form.get("body-mime")
    if raw is not None:
        if not raw.strip():
            raise Malformed("the 'body-mime' field is empty")
        return Delivery(raw=raw, meta=meta, nonce=nonce, provider_event_id=event_id)
    if "message-headers" not in form and "body-plain" not in form:
        raise Malformed(
            "the form has neither 'body-mime' nor the parsed fields "
            "('message-headers', 'body-plain', 'body-html')"
        )
    raw, dropped = rebuild(form)
    if dropped:
        meta["dropped_headers"] = dropped
    meta["synthesized"] = True
    return Delivery(raw=raw, meta=meta, nonce=nonce, provider_event_id=event_id)


def _header_pairs(form: FormData) -> list[tuple[str, str]]:
    """``message-headers``: a JSON list of [name, value] pairs, in the original order."""
    text = text_field(form, "message-headers")
    if not text:
        return []
    try:
        pairs = load_json(text)
    except ValueError:
        raise Malformed("'message-headers' is not valid JSON (expected a list of [name, value])") from None
    if not isinstance(pairs, list):
        raise Malformed("'message-headers' must be a JSON list of [name, value] pairs")
    headers = []
    for pair in pairs:
        if isinstance(pair, list) and len(pair) == 2:
            headers.append((str(pair[0]), str(pair[1])))
    return headers


def rebuild(form: FormData) -> tuple[bytes, list[str]]:
    headers = with_fallbacks(
        _header_pairs(form),
        [
            ("From", text_field(form, "from")),
            ("To", text_field(form, "To") or text_field(form, "recipient")),
            ("Subject", text_field(form, "subject")),
        ],
    )
    attachments = [
        Part(data=f.data, filename=f.filename, content_type=f.content_type)
        for f in form.files
        if f.name.startswith("attachment")
    ]
    return synthesize(
        headers,
        text=text_field(form, "body-plain"),
        html=text_field(form, "body-html"),
        attachments=attachments,
    )


def _meta(form: FormData) -> dict[str, Any]:
    meta: dict[str, Any] = {"provider": PROVIDER}
    for name in META_FIELDS:
        value = text_field(form, name)
        if value is not None:
            meta[name.lower()] = value[:2000]
    return meta

"""Postmark inbound webhook: JSON, with ``RawEmail`` when "Include raw email content" is on.

Credentials: HTTP basic auth in the webhook URL (``https://user:pass@host/inbound/postmark``),
checked against ``INBOUND_BASIC_AUTH``. Without ``RawEmail`` the message is rebuilt from
``Headers``, ``FromFull``/``ToFull``/``CcFull``, ``Subject``, ``TextBody``, ``HtmlBody`` and the
base64 ``Attachments``.
"""

from __future__ import annotations

import base64
import binascii
from email.utils import formataddr
from typing import Any

from intake.config import Settings
from intake.inbound.base import Delivery, InboundRequest, Malformed, require_basic_auth, text_bytes
from intake.inbound.mime import Part, synthesize, with_fallbacks

PROVIDER = "postmark"
SPAM_HEADERS = ("x-spam-status", "x-spam-score", "x-spam-tests", "received-spf")


def verify(request: InboundRequest, settings: Settings) -> None:
    require_basic_auth(request, settings.inbound_basic_auth, "Postmark")


def receive(request: InboundRequest, settings: Settings) -> Delivery:
    verify(request, settings)
    if request.mimetype != "application/json":
        raise Malformed(f"expected Content-Type application/json, got {request.mimetype or 'none'}")
    payload = request.json()
    if not isinstance(payload, dict):
        raise Malformed("the JSON body must be an object")
    meta = _meta(payload)
    event_id = _str(payload.get("MessageID"))
    raw_email = payload.get("RawEmail")
    if isinstance(raw_email, str) and raw_email.strip():
        return Delivery(raw=text_bytes(raw_email), meta=meta, provider_event_id=event_id)
    if not any(key in payload for key in ("Headers", "From", "FromFull", "TextBody", "HtmlBody")):
        raise Malformed(
            "the JSON has neither 'RawEmail' nor the parsed fields "
            "('Headers', 'From', 'TextBody', 'HtmlBody')"
        )
    raw, dropped = rebuild(payload)
    if dropped:
        meta["dropped_headers"] = dropped
    meta["synthesized"] = True
    return Delivery(raw=raw, meta=meta, provider_event_id=event_id)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _full_address(entry: Any) -> str | None:
    if not isinstance(entry, dict) or not _str(entry.get("Email")):
        return None
    try:
        return formataddr((_str(entry.get("Name")) or "", entry["Email"]))
    except UnicodeError:  # formataddr refuses a non-ASCII address (EAI, or junk): keep it bare
        return entry["Email"]


def _address_list(payload: dict[str, Any], full_key: str, plain_key: str) -> str | None:
    entries = payload.get(full_key)
    if isinstance(entries, list):
        rendered = [a for a in (_full_address(e) for e in entries) if a]
        if rendered:
            return ", ".join(rendered)
    return _str(payload.get(plain_key))


def _header_pairs(payload: dict[str, Any]) -> list[tuple[str, str]]:
    headers = payload.get("Headers")
    pairs: list[tuple[str, str]] = []
    if isinstance(headers, list):
        for item in headers:
            if isinstance(item, dict) and _str(item.get("Name")):
                pairs.append((item["Name"], str(item.get("Value") or "")))
    return pairs


def rebuild(payload: dict[str, Any]) -> tuple[bytes, list[str]]:
    sender = _full_address(payload.get("FromFull")) or _str(payload.get("From"))
    headers = with_fallbacks(
        _header_pairs(payload),
        [
            ("From", sender),
            ("To", _address_list(payload, "ToFull", "To")),
            ("Cc", _address_list(payload, "CcFull", "Cc")),
            ("Reply-To", _str(payload.get("ReplyTo"))),
            ("Subject", _str(payload.get("Subject"))),
            ("Date", _str(payload.get("Date"))),
        ],
    )
    return synthesize(
        headers,
        text=_str(payload.get("TextBody")),
        html=_str(payload.get("HtmlBody")),
        attachments=_attachments(payload),
    )


def _attachments(payload: dict[str, Any]) -> list[Part]:
    parts = []
    items = payload.get("Attachments")
    for index, item in enumerate(items if isinstance(items, list) else [], start=1):
        if not isinstance(item, dict):
            continue
        try:
            data = base64.b64decode(item.get("Content") or item.get("Data") or "", validate=False)
        except (binascii.Error, ValueError, TypeError):
            # By position, not name: the error is kept in the receipt ledger, and a file name
            # ("Jane_Doe_passport.pdf") is personal data the ledger must not hold.
            raise Malformed(f"attachment {index} is not valid base64") from None
        parts.append(
            Part(
                data=data,
                filename=_str(item.get("Name")),
                content_type=_str(item.get("ContentType")) or "application/octet-stream",
                content_id=_str(item.get("ContentID")),
            )
        )
    return parts


def _meta(payload: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"provider": PROVIDER}
    for key in ("MailboxHash", "OriginalRecipient", "Tag", "MessageStream"):
        if _str(payload.get(key)):
            meta[key.lower()] = payload[key][:500]
    for name, value in _header_pairs(payload):
        if name.lower() in SPAM_HEADERS:
            meta[name.lower()] = value[:2000]
    return meta


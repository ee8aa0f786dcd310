"""``POST /inbound/mime`` (raw RFC 822, HMAC-signed) and the synthesis of a message from fields.

Where a provider sends only parsed fields (SendGrid without ``email``, Mailgun without
``body-mime``, Postmark without ``RawEmail``) we rebuild an RFC 822 message so that the store
still holds one kind of thing, raw bytes, and one parser handles everything. The rebuild uses the
standard library's ``EmailMessage`` (it encodes non-ASCII headers and bodies correctly) and treats
every field as untrusted: header names must be RFC 5322 field names, CR/LF never survive into a
header value, and the structural headers (Content-Type and friends) are always our own.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from email import policy as email_policy
from email.message import EmailMessage
from typing import Iterable

from intake.config import Settings
from intake.inbound.base import Delivery, InboundRequest, Malformed, Unauthorized, constant_time_in

log = logging.getLogger(__name__)

PROVIDER = "mime"
SIGNATURE_HEADER = "X-Intake-Signature"

# Printable US-ASCII except colon (RFC 5322 section 2.2).
_FIELD_NAME = re.compile(r"^[!-9;-~]{1,76}$")
# Ours to write: copying them from the original would describe a body we did not build.
STRUCTURAL_HEADERS = frozenset(
    {"content-type", "content-transfer-encoding", "mime-version", "content-disposition",
     "content-length"}
)
# Serialized with CRLF, the line ending of mail on the wire.
WIRE_POLICY = email_policy.default.clone(linesep="\r\n")
_ACCEPTED_MIME_TYPES = ("", "message/rfc822", "application/octet-stream", "text/plain")


@dataclass(frozen=True)
class Part:
    """An attachment to put into a synthesized message."""

    data: bytes
    filename: str | None = None
    content_type: str = "application/octet-stream"
    content_id: str | None = None


def header_value(value: str) -> str:
    """Unfold a header value and drop any CR/LF left, so a field can never add a header."""
    value = re.sub(r"\r?\n[ \t]+", " ", value)
    return value.replace("\r", " ").replace("\n", " ").strip()


def synthesize(
    headers: Iterable[tuple[str, str]],
    *,
    text: str | None = None,
    html: str | None = None,
    attachments: Iterable[Part] = (),
) -> tuple[bytes, list[str]]:
    """Build RFC 822 bytes from header pairs and bodies; returns (raw, names of dropped headers).

    A header is dropped, not fatal, when its name is not a field name or the value is one the
    email package refuses (a second ``From``); the caller records the names in the message meta.
    """
    msg = EmailMessage(policy=email_policy.default)
    dropped: list[str] = []
    for name, value in headers:
        name = (name or "").strip()
        if not _FIELD_NAME.match(name):
            dropped.append(name[:80])
            continue
        if name.lower() in STRUCTURAL_HEADERS:
            continue
        try:
            msg[name] = header_value(str(value))
        except Exception:  # noqa: BLE001 - the email package raises several types here
            dropped.append(name)
    _set_bodies(msg, text, html)
    parts = list(attachments)
    for part in parts:
        _attach(msg, part)
    _fix_boundaries(msg, text, html, parts)
    return msg.as_bytes(policy=WIRE_POLICY), dropped


def _fix_boundaries(msg: EmailMessage, text: str | None, html: str | None, parts: list[Part]) -> None:
    """Boundaries derived from the content, so a provider's retry rebuilds the same bytes.

    The email package picks random boundaries; then a message without a Message-ID would get a
    different sha256 on every retry and be stored twice.
    """
    digest = hashlib.sha256()
    for item in (str(msg.items()), text or "", html or ""):
        digest.update(item.encode("utf-8", "surrogatepass"))
    for part in parts:
        digest.update(hashlib.sha256(part.data).digest())
    seed = digest.hexdigest()[:24]
    for index, part in enumerate(msg.walk()):
        if part.is_multipart():
            part.set_boundary(f"=_intake_{seed}_{index}")


def _set_bodies(msg: EmailMessage, text: str | None, html: str | None) -> None:
    if text is not None:
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content("")


def _attach(msg: EmailMessage, part: Part) -> None:
    maintype, _, subtype = (part.content_type or "").partition(";")[0].strip().partition("/")
    if not maintype or not subtype or not _FIELD_NAME.match(maintype + subtype):
        maintype, subtype = "application", "octet-stream"
    filename = header_value(part.filename) if part.filename else None
    msg.add_attachment(
        part.data,
        maintype=maintype.lower(),
        subtype=subtype.lower(),
        filename=filename,
        cid=f"<{header_value(part.content_id).strip('<>')}>" if part.content_id else None,
    )


def has_header(headers: Iterable[tuple[str, str]], name: str) -> bool:
    lowered = name.lower()
    return any(h.lower() == lowered for h, _ in headers)


def with_fallbacks(
    headers: list[tuple[str, str]], fallbacks: Iterable[tuple[str, str | None]]
) -> list[tuple[str, str]]:
    """``headers`` plus each fallback (name, value) whose name is not already there."""
    result = list(headers)
    for name, value in fallbacks:
        if value and not has_header(result, name):
            result.append((name, value))
    return result


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

"""Building an RFC 822 message from fields, for mail that did not arrive as raw MIME.

Where a provider sends only parsed fields (SendGrid without ``email``, Mailgun without
``body-mime``, Postmark without ``RawEmail``), or an inquiry comes from Slack or a phone call,
intake builds a message so that the store still holds one kind of thing, raw bytes, and one
parser handles everything. The standard library's ``EmailMessage`` encodes non-ASCII headers and
bodies correctly; every field is untrusted: header names must be RFC 5322 field names, CR/LF
never survive into a header value, and the structural headers (Content-Type and friends) are
always our own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from email import policy as email_policy
from email.message import EmailMessage
from typing import Iterable

from .headers import clean_text, decode_words

# Printable US-ASCII except colon (RFC 5322 section 2.2).
_FIELD_NAME = re.compile(r"^[!-9;-~]{1,76}$")
# Ours to write: copying them from the original would describe a body we did not build.
STRUCTURAL_HEADERS = frozenset(
    {"content-type", "content-transfer-encoding", "mime-version", "content-disposition",
     "content-length"}
)
# Serialized with CRLF, the line ending of mail on the wire.
WIRE_POLICY = email_policy.default.clone(linesep="\r\n")


@dataclass(frozen=True)
class Part:
    """An attachment to put into a synthesized message."""

    data: bytes
    filename: str | None = None
    content_type: str = "application/octet-stream"
    content_id: str | None = None


def header_value(value: str) -> str:
    """Unfold a header value and drop any CR/LF left, so a field can never add a header.

    Lone surrogates (JSON can carry ``\\ud800``) and NUL become storable text first: the email
    package cannot encode them and would fail while writing the message.
    """
    value = re.sub(r"\r?\n[ \t]+", " ", clean_text(value))
    return value.replace("\r", " ").replace("\n", " ").strip()


def _writable(name: str, value: str) -> str:
    """The value as the email package will write it; an encoded-word hiding bytes that are not
    in its charset (``=?utf-8?q?=FF?=``) fails only when the message is written, so the value is
    folded here first and, if that fails, kept as its decoded text instead."""
    value = header_value(value)
    try:
        WIRE_POLICY.fold_binary(name, WIRE_POLICY.header_factory(name, value))
        return value
    except Exception:  # noqa: BLE001 - the email package raises several types here
        decoded = header_value(decode_words(value))
        WIRE_POLICY.fold_binary(name, WIRE_POLICY.header_factory(name, decoded))
        return decoded


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
    text = None if text is None else clean_text(text)
    html = None if html is None else clean_text(html)
    for name, value in headers:
        name = (name or "").strip()
        if not _FIELD_NAME.match(name):
            dropped.append(name[:80])
            continue
        if name.lower() in STRUCTURAL_HEADERS:
            continue
        try:
            msg[name] = _writable(name, str(value))
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
    content_id = header_value(part.content_id).strip("<>") if part.content_id else None
    msg.add_attachment(
        part.data,
        maintype=maintype.lower(),
        subtype=subtype.lower(),
        filename=filename,
        cid=f"<{content_id}>" if content_id else None,
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

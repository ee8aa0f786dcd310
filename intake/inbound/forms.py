"""Form bodies as raw bytes, so a message posted as a form field reaches the store byte for byte.

Flask's ``request.form`` decodes every field as UTF-8 and replaces what it cannot decode. That is
right for a web form and wrong here: SendGrid's ``email`` and Mailgun's ``body-mime`` carry raw
RFC 822 messages that may be 8-bit Latin-1 or worse, and SendGrid's parsed-mode fields arrive in
whatever charsets its ``charsets`` field names. So we parse the body ourselves, keeping bytes:
multipart with Werkzeug's sans-IO ``MultipartDecoder`` (the same well-tested parser Flask uses,
minus the decoding), url-encoded with ``urllib.parse.parse_qsl``, which keeps bytes when given
bytes.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

MAX_PARTS = 1000


class FormError(ValueError):
    """The body is not a form we can read; the message says what was wrong."""


@dataclass(frozen=True)
class FormFile:
    name: str
    filename: str | None
    content_type: str
    data: bytes


@dataclass
class FormData:
    fields: dict[str, list[bytes]] = field(default_factory=dict)
    files: list[FormFile] = field(default_factory=list)

    def get(self, name: str) -> bytes | None:
        """The first value of field ``name`` (a file's content counts too), or None."""
        values = self.fields.get(name)
        if values:
            return values[0]
        for item in self.files:
            if item.name == name:
                return item.data
        return None

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def names(self) -> list[str]:
        return list(self.fields) + [f.name for f in self.files]


def parse_form(content_type: str, body: bytes) -> FormData:
    """Parse a multipart or url-encoded body; ``FormError`` for anything else."""
    mimetype, options = parse_options_header(content_type or "")
    if mimetype == "multipart/form-data":
        boundary = options.get("boundary")
        if not boundary:
            raise FormError("multipart/form-data without a boundary parameter")
        return _parse_multipart(boundary.encode("latin-1", "replace"), body)
    if mimetype == "application/x-www-form-urlencoded":
        return _parse_urlencoded(body)
    shown = mimetype or "none"
    raise FormError(
        f"expected a form (multipart/form-data or application/x-www-form-urlencoded), "
        f"got Content-Type {shown}"
    )


def _parse_urlencoded(body: bytes) -> FormData:
    form = FormData()
    try:
        # Latin-1 maps each byte to one character and back, so percent-escapes and raw 8-bit
        # bytes both come out as the exact bytes that were sent.
        pairs = urllib.parse.parse_qsl(
            body.decode("latin-1"),
            keep_blank_values=True,
            max_num_fields=MAX_PARTS,
            encoding="latin-1",
        )
    except ValueError as exc:
        raise FormError(f"the url-encoded form could not be read: {exc}") from None
    for name, value in pairs:
        key = name.encode("latin-1").decode("utf-8", "replace")
        form.fields.setdefault(key, []).append(value.encode("latin-1"))
    return form


def _parse_multipart(boundary: bytes, body: bytes) -> FormData:
    decoder = MultipartDecoder(boundary, max_parts=MAX_PARTS)
    form = FormData()
    try:
        decoder.receive_data(body)
        decoder.receive_data(None)
        current: Field | File | None = None
        chunks: list[bytes] = []
        while True:
            event = decoder.next_event()
            if isinstance(event, (Field, File)):
                current, chunks = event, []
            elif isinstance(event, Data):
                chunks.append(event.data)
                if not event.more_data and current is not None:
                    _add_part(form, current, b"".join(chunks))
                    current = None
            elif isinstance(event, (Epilogue, NeedData)):
                break
    except (ValueError, RequestEntityTooLarge) as exc:
        raise FormError(f"the multipart form could not be read: {exc}") from None
    if not form.fields and not form.files:
        raise FormError("the multipart form has no parts (wrong boundary, or an empty body?)")
    return form


def _add_part(form: FormData, part: Field | File, data: bytes) -> None:
    if isinstance(part, File):
        headers: Headers = part.headers
        content_type = headers.get("Content-Type", "application/octet-stream")
        form.files.append(FormFile(part.name, part.filename, content_type, data))
    else:
        form.fields.setdefault(part.name, []).append(data)

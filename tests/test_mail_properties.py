"""Property tests: no input makes the mail layer raise anything but UnparseableMessage."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intake.mail import (
    ParsedEmail,
    UnparseableMessage,
    find_ticket_token,
    latest_reply,
    looks_like_message,
    normalize_address,
    parse,
    peek_message_id,
    thread_subject,
)

# INTAKE_HYPOTHESIS_EXAMPLES=5000 for a long hunt; 150 keeps the file at a few seconds.
FAST = settings(max_examples=int(os.environ.get("INTAKE_HYPOTHESIS_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])

HEADER_NAMES = st.sampled_from(
    ["From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Reply-To",
     "Return-Path", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
     "Auto-Submitted", "Precedence", "List-Id", "X-Autoreply", "MIME-Version"]
)
# Values that exercise the decoders: encoded-words, RFC 2231, charsets, brackets, 8-bit bytes.
VALUE_PIECES = st.sampled_from(
    [b"=?utf-8?B?w6k=?=", b"=?x-unknown?Q?caf=E9?=", b"=?utf-8?B?###?=", b"<a@b.example>", b"<>",
     b"multipart/mixed; boundary=B", b"text/plain; charset=x-klingon", b"message/rfc822",
     b"multipart/report; report-type=delivery-status", b"base64", b"quoted-printable",
     b"attachment; filename*=utf-8''%E2%82%AC.pdf", b"attachment; filename*0*=bad'", b"\xff\xfe",
     b"\x00", b" ", b",", b";", b"\"", b"\r\n ", b"Thu, 5 Nov 2026 08:00:00 +0000", b"99:99"]
)
VALUES = st.lists(st.one_of(VALUE_PIECES, st.binary(max_size=20)), max_size=6).map(b"".join)
BODY_PIECES = st.sampled_from(
    [b"--B\r\n", b"--B--\r\n", b"Content-Type: text/html\r\n\r\n<p>hi</p>", b"> quoted\n",
     b"On Mon, X wrote:\n", b"=C3=A9", b"w6k=\n", b"\r\n\r\n", b"From: inner@x\r\n\r\nbody"]
)
BODIES = st.lists(st.one_of(BODY_PIECES, st.binary(max_size=40)), max_size=8).map(b"".join)


@st.composite
def messages(draw) -> bytes:
    headers = draw(st.lists(st.tuples(HEADER_NAMES, VALUES), min_size=1, max_size=8))
    lines = b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers)
    return lines + b"\r\n" + draw(BODIES)


def _storable(text: str | None) -> bool:
    """PostgreSQL takes it: no NUL, and encodable as UTF-8 (no lone surrogates)."""
    if text is None:
        return True
    text.encode("utf-8")
    return "\x00" not in text


def assert_storable(parsed: ParsedEmail) -> None:
    """Every string the store writes can be written, whatever bytes came in."""
    strings = [parsed.message_id, parsed.in_reply_to, parsed.subject, parsed.return_path,
               parsed.text, parsed.html, parsed.latest_reply, *parsed.references, *parsed.defects,
               *parsed.automation.reasons]
    for address in [parsed.sender, parsed.reply_to, *parsed.to, *parsed.cc]:
        if address is not None:
            strings += [address.address, address.name]
    for name, value in parsed.headers:
        strings += [name, value]
    for attachment in parsed.attachments:
        strings += [attachment.filename, attachment.content_type, attachment.content_id]
    assert all(_storable(s) for s in strings)


def _parse_or_refuse(raw: bytes) -> None:
    try:
        result = parse(raw, max_attachment_bytes=16)
    except UnparseableMessage as exc:
        assert exc.reason
        return
    assert isinstance(result, ParsedEmail)
    assert_storable(result)
    assert result.date is None or result.date.tzinfo is not None
    assert all(a.content == b"" or a.size <= 16 for a in result.attachments)


@FAST
@given(st.binary(max_size=2000))
def test_parse_arbitrary_bytes(raw):
    _parse_or_refuse(raw)


@FAST
@given(messages())
def test_parse_generated_messages(raw):
    _parse_or_refuse(raw)


@FAST
@given(st.binary(max_size=2000))
def test_peek_and_looks_like_never_raise(raw):
    assert peek_message_id(raw) is None or isinstance(peek_message_id(raw), str)
    verdict = looks_like_message(raw)
    assert verdict is None or isinstance(verdict, str)


@FAST
@given(messages())
def test_peek_agrees_with_parse(raw):
    try:
        parsed = parse(raw)
    except UnparseableMessage:
        return
    if raw.find(b"\r\n\r\n") > 0 and b"\n\n" not in raw.split(b"\r\n\r\n")[0]:
        assert parsed.message_id == peek_message_id(raw)


@FAST
@given(st.text(max_size=300))
def test_thread_subject_is_idempotent(subject):
    once = thread_subject(subject)
    assert thread_subject(once) == once


@FAST
@given(
    st.lists(st.sampled_from(["Re:", "RE[2]:", "Re^3:", "Fwd:", "AW:", "[#12]", " ", "Sv:", "回复:"]), max_size=6),
    # No colon or brackets: the rest can never itself look like a prefix or a ticket token.
    st.text(alphabet=st.characters(blacklist_characters=":：[]^()", blacklist_categories=["Cs"]), max_size=40),
)
def test_thread_subject_ignores_prefixes(prefixes, rest):
    assert thread_subject(" ".join(prefixes) + " " + rest) == thread_subject(rest)


@FAST
@given(st.text(max_size=500))
def test_text_helpers_never_raise(text):
    assert isinstance(latest_reply(text), str)
    assert isinstance(normalize_address(text), str)
    token = find_ticket_token(text)
    assert token is None or token >= 0

"""Cheap byte-level checks (peek_message_id, looks_like_message) and address/subject helpers."""

from __future__ import annotations

import pytest

from intake.mail import (
    find_ticket_token,
    looks_like_message,
    normalize_address,
    not_mail_reason,
    peek_message_id,
    thread_subject,
)
from intake.mail.headers import header_field_names


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"Message-ID: <abc@x.example>\r\n\r\nbody", "abc@x.example"),
        (b"From: a@b\nmessage-id:\n  <folded@x.example>\nSubject: s\n\nbody", "folded@x.example"),
        (b"MESSAGE-ID:   bare-id@x.example  \n\n", "bare-id@x.example"),
        (b"Subject: s\n\nMessage-ID: <in-body@x.example>\n", None),  # body is not the header
        (b"Message-ID: <first@x>\nMessage-ID: <second@x>\n\n", "first@x"),
        (b"Message-ID: <>\n\n", None),
        (b"Message-ID: <caf\xe9@x>\n\n", "caf\xe9@x"),
        (b"", None),
        (b"\x00\xff" * 100, None),
    ],
)
def test_peek_message_id(raw, expected):
    assert peek_message_id(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty file"),
        (b" \r\n\t\n", "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data, not a message"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "binary data, not a message"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "binary data, not a message"),
        (bytes(range(256)) * 4, "binary data, not a message"),
        (b"Dear team, I would like to apply.\nThanks\n", "no header fields"),
        (b"Note: this is prose.\nIt just has a colon.\n", "no header fields"),
    ],
)
def test_looks_like_message_rejects(raw, reason):
    assert looks_like_message(raw) == reason


@pytest.mark.parametrize(
    "raw",
    [
        b"From: a@b.example\nSubject: hi\n\nbody",
        b"From: aperson@dom.ain\nTo: b@dom.ain\nSubject: x\ncounter to RFC 2822, no blank line\n",
        b"Content-Type: message/delivery-status\nMIME-Version: 1.0\n\nMIME-Version: 1.0\n",
        b"From MAILER-DAEMON Thu Nov  5 08:00:00 2026\nFrom: a@b.example\n\nmbox",
        b"\r\n\r\nReceived: from x\r\nFrom: a@b.example\r\n\r\nleading blank lines",
        b"X-Custom: 1\n\nbody",
        b"From: a@b.example\nSubject: has a NUL \x00 and \xff bytes\n\nbody\x00",
    ],
)
def test_looks_like_message_accepts(raw):
    assert looks_like_message(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"From: a@b.example\n\nonly a sender",
        b"Message-ID: <x@y.example>\n\nonly an id",
        b"Date: Tue, 03 Nov 2026 09:12:00 -0500\nSubject: hi\n\ndate and subject",
        b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=x\n\n--x--\n",  # a MIME fragment
        b"From MAILER-DAEMON Thu Nov  5 08:00:00 2026\nReturn-Path: <>\nFrom: a@b.example\n\nmbox",
        b"\r\n\r\nReceived: from x\r\nfrom: a@b.example\r\n\r\nlower-case field name",
        b"From: aperson@dom.ain\nSubject: x\ncounter to RFC 2822, no blank line\n",
    ],
)
def test_not_mail_reason_accepts_mail(raw):
    assert not_mail_reason(raw) is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"release: intake db upgrade\nweb: gunicorn app\nworker: intake worker\n",
         "not an email message: no From, Message-ID, MIME-Version, or Date and Subject header "
         "(its fields: release, web, worker)"),
        (b"Subject: a subject alone\n\nbody", "not an email message: no From, Message-ID, MIME-Version, "
         "or Date and Subject header (its fields: subject)"),
        (b"Date: Tue, 03 Nov 2026 09:12:00 -0500\nX-Note: 1\n\nno subject", "not an email message: no From, "
         "Message-ID, MIME-Version, or Date and Subject header (its fields: date, x-note)"),
        (b'[build-system]\nrequires = ["setuptools"]\n', "not an email message: no header fields"),
        (b"Dear team, I would like to apply.\n", "not an email message: no header fields"),
        (b"", "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data, not a message"),
    ],
)
def test_not_mail_reason_refuses_what_is_not_mail(raw, reason):
    assert not_mail_reason(raw) == reason


def test_header_field_names_skip_continuations_and_the_mbox_line():
    raw = b"From someone Thu Nov  5 08:00:00 2026\nSubject: a\n  folded\nFROM: x@y\n\nFrom: body@x\n"
    assert header_field_names(raw) == ["subject", "from"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  Ana <Ana.Souza@Example.ORG> ", "ana.souza@example.org"),
        ("<BOB@example.com>", "bob@example.com"),
        ("mailto:Desk@Civic.Example", "desk@civic.example"),
        ("plain@example.com", "plain@example.com"),
        ('"Doe, John" <john@example.com>', "john@example.com"),
        ("", ""),
    ],
)
def test_normalize_address(value, expected):
    assert normalize_address(value) == expected


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: Question", "question"),
        ("RE: re: Fwd: FW:  Question   about   visas", "question about visas"),
        ("AW: WG: Frage", "frage"),
        ("SV: VS: Fråga", "fråga"),
        ("RE[2]: Question", "question"),
        ("Re^2: Question", "question"),
        ("Re(3): Question", "question"),
        ("Antw: RV: RES: TR: Réf: Question", "question"),
        ("回复: 问题", "问题"),
        ("답장: 질문", "질문"),
        ("Re: [#123] Question", "question"),
        ("[#123] Re: Question", "question"),
        ("[civic-weekly] Re: Question", "[civic-weekly] question"),
        ("Re：Question", "question"),  # full-width colon
        ("Regarding: the stipend", "regarding: the stipend"),  # a word, not a prefix
        ("Re:", ""),
        ("", ""),
    ],
)
def test_thread_subject(subject, expected):
    assert thread_subject(subject) == expected
    assert thread_subject(expected) == expected  # idempotent


def test_thread_subject_is_fast_on_long_input():
    assert thread_subject("Re: " * 2000 + "x" * 5000) == "x" * 5000


@pytest.mark.parametrize(
    ("subject", "expected"),
    [("Re: [#42] Question", 42), ("[#7]", 7), ("Question #42", None), ("[#abc] [#9]", 9), ("", None)],
)
def test_find_ticket_token(subject, expected):
    assert find_ticket_token(subject) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=?utf-8?Q?Caf=C3=A9?= =?utf-8?Q?_au_lait?=", "Café au lait"),  # space between words dropped
        ("=?utf-8?Q?=E2=82?= =?utf-8?Q?=AC?=", "€"),  # a character split across two words
        ("a =?iso-8859-1?q?J=FCrgen?= b", "a Jürgen b"),
        ("=?utf-8?B?w6k?=", "é"),  # missing base64 padding
        ("=?utf-8?B?###?= x", "=?utf-8?B?###?= x"),  # broken word kept as written
        ("=?x-klingon?Q?caf=C3=A9?=", "café"),  # unknown charset: UTF-8 guess
        ("=?utf-8*en?Q?hi?=", "hi"),  # RFC 2231 language suffix
        ("Réf: =?utf-8?Q?=E2=82=AC?= ok", "Réf: € ok"),  # raw non-ASCII next to a word survives
    ],
)
def test_decode_encoded_words(value, expected):
    from intake.mail.headers import decode_words

    assert decode_words(value) == expected

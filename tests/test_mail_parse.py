"""parse() on hand-written fixtures (tests/fixtures/mail) and on synthetic bad input."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from pathlib import Path

import pytest

from intake.mail import ParsedEmail, UnparseableMessage, parse, peek_message_id

MAIL = Path(__file__).resolve().parent / "fixtures" / "mail"


def load(name: str) -> ParsedEmail:
    return parse((MAIL / name).read_bytes())


def test_plain_message_fields():
    m = load("plain.eml")
    assert m.message_id == "CAF1234.plain@mail.example.org"
    assert m.subject == "Question about the 2027 fellowship deadline"
    assert m.sender is not None
    assert m.sender.address == "ana.souza@example.org"  # normalized
    assert m.sender.name == "Souza, Ana"
    assert m.sender.domain == "example.org"
    assert [a.address for a in m.to] == ["fellowship@civic.example"]
    assert [a.address for a in m.cc] == ["mentor@example.org", "bo.li@example.org"]
    assert m.return_path == "ana.souza@example.org"
    assert m.date == dt.datetime(2026, 11, 3, 9, 14, tzinfo=dt.timezone.utc)
    assert m.date.tzinfo is not None
    assert "São Paulo" in m.text
    assert m.html is None
    assert m.attachments == []
    assert m.header("received").startswith("from mx.example.org")
    assert m.header("X-Missing") is None
    assert not m.automation.automated and not m.automation.suppress_auto_reply
    assert m.defects == []


def test_html_only_message_is_converted_to_text():
    m = load("html-only.eml")
    assert m.html is not None and "<b>sponsor two fellows</b>" in m.html
    assert "sponsor two fellows" in m.text
    assert "https://foundation.example/grants" in m.text  # link targets are kept
    assert "Café meeting" in m.text  # quoted-printable + iso-8859-1
    assert "<" not in m.text.replace("<https", "")  # no markup left
    assert "alert" not in m.text and "color: red" not in m.text  # script and style dropped


def test_reply_threading_headers_and_latest_reply():
    m = load("reply-en.eml")
    assert m.in_reply_to == "outbound-42-1@civic.example"
    assert m.references == ["CAF1234.plain@mail.example.org", "outbound-42-1@civic.example"]
    assert m.latest_reply == (
        "Thank you, that answers my question. I will submit my application this week."
    )
    assert "wrote:" in m.text  # the full text keeps the history


@pytest.mark.parametrize(
    ("name", "reply", "gone"),
    [
        ("reply-es.eml", "Muchas gracias por la respuesta, enviaré los documentos mañana.", "escribió"),
        ("reply-fr.eml", "Merci beaucoup, je vais postuler avant la date limite.", "a écrit"),
        ("reply-de.eml", "Vielen Dank, ich reiche meine Bewerbung diese Woche ein.", "schrieb"),
        ("reply-pt.eml", "Obrigado pela resposta, vou enviar os documentos amanhã.", "escreveu"),
    ],
)
def test_latest_reply_in_other_languages(name, reply, gone):
    m = load(name)
    assert m.latest_reply == reply
    assert gone in m.text and gone not in m.latest_reply


def test_html_reply_uses_the_quote_markup():
    m = load("reply-html-gmail.eml")
    assert m.latest_reply == "Tuesday at 10am works for me."
    assert "Could you do an interview" in m.text


def test_attachments_rfc2231_rfc2047_and_nested_message():
    m = load("attachment-rfc2231.eml")
    assert m.subject == "My application (CV attached)"  # RFC 2047 base64 subject
    assert m.text == "Please find my CV attached, and the forwarded recommendation."
    names = [a.filename for a in m.attachments]
    assert names == [
        "Lebenslauf Jürgen – 2026.pdf",  # RFC 2231 filename*=utf-8''...
        "Bild über uns.png",  # RFC 2047 in a filename (not standard, but common)
        "Recommendation letter.eml",  # the forwarded message itself
        "_.._etc_letter.txt",  # the forwarded message's attachment, path separators removed
    ]
    pdf, png, eml, inner = m.attachments
    assert pdf.content.startswith(b"%PDF-1.4") and pdf.size == 340
    assert pdf.sha256 == hashlib.sha256(pdf.content).hexdigest()
    assert not pdf.inline and png.inline and png.content_id == "logo@example.in"
    assert png.content.startswith(b"\x89PNG")
    assert eml.content_type == "message/rfc822" and eml.depth == 0
    assert b"Subject: Recommendation letter" in eml.content
    assert inner.depth == 1 and inner.content == b"I recommend Priya without reservation."
    assert "Here is my letter" not in m.text  # the forwarded body is not the message's body


def test_max_attachment_bytes_keeps_size_and_hash_but_not_content():
    raw = (MAIL / "attachment-rfc2231.eml").read_bytes()
    full = parse(raw)
    capped = parse(raw, max_attachment_bytes=300)
    pdf, png = capped.attachments[0], capped.attachments[1]
    assert pdf.content == b"" and pdf.content_omitted
    assert pdf.size == full.attachments[0].size == 340
    assert pdf.sha256 == full.attachments[0].sha256
    assert png.content == full.attachments[1].content and not png.content_omitted  # 264 <= 300


def test_unknown_charset_falls_back_and_records_a_defect():
    m = load("unknown-charset.eml")
    assert m.text == "Can I apply from the café in Zürich?"
    assert m.subject == "Café question"  # encoded-word with an unknown charset, read as UTF-8
    assert any("x-klingon" in d for d in m.defects)


def test_top_level_forward_body_becomes_text():
    raw = (
        b"From: a@example.com\nSubject: fwd\nContent-Type: message/rfc822\n\n"
        b"From: b@example.com\nSubject: inner\nContent-Type: text/plain\n\nInner body text\n"
    )
    m = parse(raw)
    assert m.subject == "fwd"
    assert m.text.strip() == "Inner body text"
    assert m.attachments[0].filename == "inner.eml"


def test_raw_8bit_and_nul_headers_are_decoded_best_effort():
    raw = (
        b"From: J\xfcrgen <J@Example.com>\r\nTo: x@example.com\r\n"
        b"Subject: caf\xc3\xa9 \x00ok\r\nX-Bad: \xff\xfe\xfd\r\n\r\nbody \x00\xff\r\n"
    )
    m = parse(raw)
    assert m.sender is not None and m.sender.name == "Jürgen"  # Latin-1 guessed
    assert m.subject == "café ok"  # UTF-8 header, NUL removed
    assert "\x00" not in m.text and m.text.startswith("body")
    assert m.header("x-bad")  # kept, replacement-decoded
    assert any("From" in d for d in m.defects)


def test_header_only_message_parses():
    m = parse(b"From: a@example.com\r\nSubject: only headers\r\n")
    assert m.subject == "only headers" and m.text == "" and m.latest_reply == ""


def test_many_recipients_and_long_subject_are_fast():
    rcpts = ", ".join(f"User {i} <user{i}@example.com>" for i in range(10_000))
    raw = f"From: a@b.example\r\nTo: {rcpts}\r\nSubject: {'x' * 5000}\r\n\r\nhi\r\n".encode()
    start = time.perf_counter()
    m = parse(raw)
    assert time.perf_counter() - start < 5
    assert len(m.to) == 10_000 and m.to[-1].address == "user9999@example.com"
    assert len(m.subject) == 5000


def test_dates_are_aware_or_none():
    assert parse(b"From: a@b.example\nDate: yesterday-ish\n\nx").date is None
    naive = parse(b"From: a@b.example\nDate: Thu, 5 Nov 2026 08:00:00 -0000\n\nx").date
    assert naive is not None and naive.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize("raw", [b"", b"   \n\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"just prose\n"])
def test_not_a_message_raises_unparseable(raw):
    with pytest.raises(UnparseableMessage) as info:
        parse(raw)
    assert info.value.reason and isinstance(info.value, ValueError)


def test_message_id_agrees_with_peek():
    for path in sorted(MAIL.glob("*.eml")):
        raw = path.read_bytes()
        assert parse(raw).message_id == peek_message_id(raw), path.name


def test_absurd_nesting_is_unparseable_not_a_crash():
    raw = b"From: a@b.example\nSubject: deep\nContent-Type: multipart/mixed; boundary=b0\n\n"
    for i in range(2000):
        raw += f"--b{i}\nContent-Type: multipart/mixed; boundary=b{i + 1}\n\n".encode()
    with pytest.raises(UnparseableMessage, match="nested too deeply"):
        parse(raw)


def test_ten_thousand_attachments():
    parts = b"".join(
        b"--B\nContent-Type: application/octet-stream\nContent-Disposition: attachment; "
        b"filename=f%d.bin\n\nabc\n" % i for i in range(10_000)
    )
    m = parse(b"From: a@b.example\nContent-Type: multipart/mixed; boundary=B\n\n" + parts + b"--B--\n")
    assert len(m.attachments) == 10_000 and m.attachments[-1].filename == "f9999.bin"


def test_undecodable_bytes_everywhere_stay_storable():
    raw = (
        b"From: \xff\xfe <a\xff@b.example>\nSubject: =?utf-8?B?/w==?= \xed\xa0\x80\n"
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\n"
        b"Content-Type: image/\xff\x00x; name=\"\xed\xa0\x80.png\"\nContent-ID: <\xff@x>\n\n\x00\xff\n--B--\n"
    )
    m = parse(raw)
    from tests.test_mail_properties import assert_storable

    assert_storable(m)
    assert m.attachments and "\x00" not in m.attachments[0].content_type


def test_empty_plain_alternative_falls_back_to_html():
    raw = (
        b"From: a@b.example\nSubject: x\nContent-Type: multipart/alternative; boundary=B\n\n"
        b"--B\nContent-Type: text/plain\n\n \n--B\nContent-Type: text/html\n\n"
        b"<p>Real content here.</p><blockquote>old</blockquote>\n--B--\n"
    )
    m = parse(raw)
    assert m.text.startswith("Real content here.")
    assert m.latest_reply == "Real content here."

"""Building messages from untrusted text, SMTP_URL parsing, saved replies and suggested answers."""

from __future__ import annotations

import dataclasses
import tomllib
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from intake.config import Settings
from intake.outbound import (
    InvalidAddress,
    OutboundConfigError,
    header_text,
    reply_subject,
    reply_templates,
    smtp_settings,
    suggest_answer,
    validate_address,
)
from intake.outbound.compose import Draft, clean_msgid, compose, references_chain
from intake.outbound.knowledge import DEFAULT_KNOWLEDGE_BASE
from intake.outbound.templates import first_name, render
from tests.smtp_servers import FIXTURES


def draft(**kw) -> Draft:
    base = dict(from_address="fellowship@intake.example", to_address="a@example.org", subject="Hi", body="Body")
    return Draft(**{**base, **kw})


@pytest.mark.parametrize("value", [
    "Hello\r\nBcc: victim@example.com",
    "Hello\nBcc: victim@example.com",
    "Hello\rBcc: victim@example.com",
    "Hello\u2028Bcc: victim@example.com",
    "Hello\x85Bcc: victim@example.com",
    "Hello\x00\x0bBcc: victim@example.com",
])
def test_line_breaks_never_reach_a_header(value):
    composed = compose(draft(subject=value, to_name=value, from_name=value))
    head = composed.raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = [line.split(":", 1)[0] for line in head.split("\r\n") if not line.startswith((" ", "\t"))]
    assert "Bcc" not in names
    parsed = message_from_bytes(composed.raw, policy=default_policy)
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "Hello Bcc: victim@example.com"
    assert [a.addr_spec for a in parsed["To"].addresses] == ["a@example.org"]


@pytest.mark.parametrize("address", [
    "victim@example.com\r\nBcc: other@example.com",
    "a@example.org, b@example.org",
    "not-an-address",
    "a@localhost",
    "\"quoted local\"@example.org",
    "a@[127.0.0.1]",
    "a@exa mple.org",
    "",
    None,
    "x" * 250 + "@example.org",
])
def test_bad_addresses_are_refused(address):
    with pytest.raises(InvalidAddress):
        validate_address(address)
    with pytest.raises(InvalidAddress):
        compose(draft(to_address=address))


def test_good_addresses_are_normalized():
    assert validate_address("  María <maria.lopez+fellowship@example.org> ") == "maria.lopez+fellowship@example.org"
    assert validate_address("o'brien@sub.example.co.uk") == "o'brien@sub.example.co.uk"


def test_display_names_are_rfc2047_encoded():
    composed = compose(draft(to_name="María José Núñez", from_name="Fellowship Desk"))
    head = composed.raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"=?utf-8?" in head
    parsed = message_from_bytes(composed.raw, policy=default_policy)
    assert parsed["To"].addresses[0].display_name == "María José Núñez"
    assert str(parsed["From"]) == "Fellowship Desk <fellowship@intake.example>"


def test_body_survives_and_wire_is_seven_bit():
    body = "Hola María,\n\n. a line starting with a dot\nFrom the start of a line\n" + "x" * 1200
    composed = compose(draft(body=body))
    assert all(b < 128 for b in composed.raw)
    assert all(len(line) <= 998 for line in composed.raw.split(b"\r\n"))
    content = message_from_bytes(composed.raw, policy=default_policy).get_content()
    assert content.replace("\r\n", "\n").rstrip("\n") == body


@given(st.text(max_size=300), st.text(max_size=100))
@hsettings(max_examples=150, deadline=None)
def test_any_text_keeps_the_header_structure(subject, name):
    composed = compose(draft(subject=subject, to_name=name))
    head = composed.raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = [line.split(":", 1)[0] for line in head.split("\r\n") if not line.startswith((" ", "\t"))]
    assert names == ["From", "To", "Subject", "Date", "Message-ID", "Content-Type",
                     "Content-Transfer-Encoding", "MIME-Version"]
    parsed = message_from_bytes(composed.raw, policy=default_policy)
    assert [a.addr_spec for a in parsed["To"].addresses] == ["a@example.org"]
    assert "\n" not in parsed["Subject"] and "\r" not in parsed["Subject"]


def test_reply_subject():
    assert reply_subject("Question", 7) == "Re: Question [#7]"
    assert reply_subject("RE: Re: AW: Fwd: Question [#7]", 7) == "Re: Question [#7]"
    assert reply_subject("Re: Question [#3]", 7) == "Re: Question [#7]"
    assert reply_subject("", 7) == "Re: Your inquiry [#7]"
    assert reply_subject(None, 7) == "Re: Your inquiry [#7]"
    assert reply_subject("Line\r\nBcc: x@example.com", 7) == "Re: Line Bcc: x@example.com [#7]"
    assert len(reply_subject("word " * 200, 7)) < 220


def test_message_ids_and_references():
    assert clean_msgid("<abc@example.org>") == "abc@example.org"
    assert clean_msgid("abc@example.org>\r\nBcc: x@y.z") is None
    assert clean_msgid("no-at-sign") is None
    assert clean_msgid("a b@example.org") is None
    assert references_chain("<r1@x.org> <r2@x.org>", "<p@x.org>") == ["r1@x.org", "r2@x.org", "p@x.org"]
    assert references_chain(None, "p@x.org") == ["p@x.org"]
    chain = references_chain([f"r{i}@x.org" for i in range(50)], "p@x.org")
    assert len(chain) == 20 and chain[0] == "r0@x.org" and chain[-1] == "p@x.org"


def test_header_text():
    assert header_text("  a\tb\r\n c  ") == "a b c"
    assert header_text("x" * 500, 10) == "x" * 9 + "…"
    assert header_text(None) == ""


@pytest.mark.parametrize("url,expected", [
    ("smtp://u:p%40ss@mail.example.org:587", ("mail.example.org", 587, "starttls", "u", "p@ss")),
    ("smtp://u:p@mail.example.org", ("mail.example.org", 587, "starttls", "u", "p")),
    ("smtp://mail.example.org:25", ("mail.example.org", 25, "opportunistic", None, None)),
    ("smtp://mail.example.org:25?starttls=required", ("mail.example.org", 25, "starttls", None, None)),
    ("smtp://relay:2525?starttls=never", ("relay", 2525, "none", None, None)),
    ("smtps://u:p@mail.example.org", ("mail.example.org", 465, "ssl", "u", "p")),
])
def test_smtp_url(url, expected):
    cfg = smtp_settings(url)
    assert (cfg.host, cfg.port, cfg.security, cfg.username, cfg.password) == expected
    assert cfg.password is None or f":{cfg.password}@" not in cfg.describe()


@pytest.mark.parametrize("url", ["http://mail.example.org", "smtp://", "smtp://h:x", "smtp://h?starttls=maybe"])
def test_bad_smtp_url_says_how_to_fix_it(url):
    with pytest.raises(OutboundConfigError, match="SMTP_URL"):
        smtp_settings(url)


def test_smtp_url_without_from_address_is_an_error():
    from intake.outbound import load_options

    with pytest.raises(OutboundConfigError, match="INTAKE_FROM_ADDRESS"):
        load_options(Settings.from_env({"SMTP_URL": "smtp://h:25"}))


def test_templates_render_only_known_placeholders():
    text = render("Hi {first_name} {nope} {{x}} {subject}", {"first_name": "{subject}", "subject": "S"})
    assert text == "Hi {subject} {nope} {{x}} S"  # a value is never re-expanded
    assert first_name("Doe, Jane") == "Jane"
    assert first_name("Daniel Reyes, Office of Innovation") == "Daniel"  # not "Office"
    assert first_name("\"María López\"") == "María"
    assert first_name(None) == first_name("a@b.org") == "there"


def test_reply_templates_defaults_and_operator_file():
    settings = Settings.from_env({})
    general = reply_templates(settings, None)
    application = reply_templates(settings, "application")
    assert general and len(application) == len(general) + 1
    assert application[-1][0] == "Application: see the FAQ"
    operator = dataclasses.replace(settings, toml={**settings.toml, "templates": [
        {"name": "Hello", "body": "Hello {first_name}"},
        {"name": "Press kit", "category": "press", "body": "Here is our press kit."},
    ]})
    assert reply_templates(operator, "press") == [("Hello", "Hello {first_name}"), ("Press kit", "Here is our press kit.")]
    assert reply_templates(operator, "application") == [("Hello", "Hello {first_name}")]


@pytest.mark.parametrize("text,category,key", [
    ("When is the deadline to apply for next year's cohort?", "application", "deadline"),
    ("Do you sponsor H-1B visas? I live in India.", "application", "visa"),
    ("How much are fellows paid?", None, "stipend"),
    ("Can I apply without a college degree?", "application", "eligibility"),
    ("Our county department would like to host a fellow next year", "partnership", "partnership"),
])
def test_default_knowledge_base_suggestions(text, category, key):
    suggestion = suggest_answer(Settings.from_env({}), text, category)
    assert suggestion is not None and suggestion.key == key
    assert 0 < suggestion.score <= 1 and suggestion.answer and suggestion.question


@pytest.mark.parametrize("text,category", [
    ("I loved the demo day, the footer link on your site is broken though", "feedback"),
    ("hi", None),
    ("", None),
    ("When is the deadline?", "partnership"),  # the deadline entry is not for partners
])
def test_no_suggestion_below_the_minimum_or_outside_the_category(text, category):
    assert suggest_answer(Settings.from_env({}), text, category) is None


def test_operator_knowledge_base_replaces_the_default(tmp_path):
    config = FIXTURES / "intake.toml"
    settings = Settings.from_env({"INTAKE_CONFIG": str(config)})
    assert tomllib.loads(config.read_text())["knowledge_base"]
    suggestion = suggest_answer(settings, "Is there parking at the demo day venue?", "events")
    assert suggestion is not None and suggestion.key == "parking"
    assert suggest_answer(settings, "When is the application deadline?", "application") is None
    assert len(DEFAULT_KNOWLEDGE_BASE) == 5

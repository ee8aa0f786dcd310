"""latest_reply() and html_to_text() on their own."""

from __future__ import annotations

import time

import pytest

from intake.mail import html_to_text, latest_reply


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Yes, Tuesday works.\n\nOn Mon, Nov 2, 2026 at 9:00 AM Desk <d@civic.example> wrote:\n> Tuesday?\n",
         "Yes, Tuesday works."),
        ("Sounds good.\n\n-----Original Message-----\nFrom: Desk\nSent: Monday\nTo: Ana\nSubject: x\n\nold text\n",
         "Sounds good."),
        ("Sounds good.\n\nFrom: Desk <d@civic.example>\nSent: Monday, November 2, 2026 9:00 AM\n"
         "To: Ana <a@example.org>\nSubject: RE: visas\n\nold text\n", "Sounds good."),
        ("Hello team, a question about stipends.\n\nSent from my iPhone\n",
         "Hello team, a question about stipends."),
        ("감사합니다 확인했습니다.\n\n2026년 11월 4일 (수) 오후 5:00, Desk 님이 작성하였습니다:\n> 질문\n",
         "감사합니다 확인했습니다."),
        ("Merci !\n\nLe 4 nov. 2026 à 17:00, Desk <d@civic.example> a écrit :\n> Bonjour\n", "Merci !"),
    ],
)
def test_latest_reply_text(body, expected):
    assert latest_reply(body) == expected


def test_latest_reply_keeps_a_body_that_is_all_quote():
    body = "> only a quote\n> nothing new\n"
    assert latest_reply(body) == body.strip()


def test_latest_reply_does_not_cut_a_long_message_at_thanks():
    body = "Hi,\n\nThanks, that helps.\n" + "".join(f"Question {i} about housing?\n" for i in range(12))
    assert "Question 11 about housing?" in latest_reply(body)


def test_latest_reply_signature_dash_separator():
    assert latest_reply("See you Tuesday.\n\n-- \nAna Souza\nData scientist\n") == "See you Tuesday."


def test_latest_reply_html_with_outlook_markup():
    html = (
        "<div>Confirmed, thank you.</div><div id=\"divRplyFwdMsg\"><b>From:</b> Desk<br>"
        "<b>Sent:</b> Monday<br><b>Subject:</b> RE: visas</div><div>old text here</div>"
    )
    reply = latest_reply(html_to_text(html), html)
    assert reply == "Confirmed, thank you."


@pytest.mark.parametrize(
    "body",
    [
        "a" * 5000 + "\n" + ("On " + "x " * 3000 + "\n") * 20,  # quadratic "On ... wrote:" lines
        "\n" * 30_000,  # blank runs: 95 s in mail-parser-reply before the input was normalized
        "\xa0\n" * 15_000,  # blank to str.strip() but not to [ \t]
        "Thanks,\n" * 4000,
    ],
    ids=["long-on-lines", "newlines", "nbsp-lines", "sign-offs"],
)
def test_latest_reply_is_fast_on_hostile_input(body):
    start = time.perf_counter()
    assert isinstance(latest_reply(body), str)
    assert time.perf_counter() - start < 5


def test_html_to_text():
    text = html_to_text(
        "<html><head><style>.x{}</style></head><body><h1>Hi</h1><p>One &amp; two</p>"
        "<ul><li>first</li><li>second</li></ul><a href='https://x.example/a'>link</a>"
        "<img src='cid:logo' alt='logo'></body></html>"
    )
    assert "One & two" in text and "first" in text and "https://x.example/a" in text
    assert ".x{}" not in text and "cid:logo" not in text
    assert html_to_text("") == "" and html_to_text("   ") == ""
    assert html_to_text("<p>unclosed <b>tags <div>") .startswith("unclosed")


def test_bottom_posted_answers_are_kept():
    body = (
        "Hi,\nOn Tue, Nov 3, 2026 at 9:00 AM Desk <d@civic.example> wrote:\n"
        "> Which cohort are you applying to?\n>\n> And from which city?\n\n"
        "The 2027 cohort, starting in September.\n\n> Anything else?\n\n"
        "I will be applying from Lagos.\n\n> --\n> The desk\n\n"
        "________________________\nlist footer\n"
    )
    reply = latest_reply(body)
    assert reply.startswith("Hi,")
    assert "The 2027 cohort, starting in September." in reply and "Lagos" in reply
    assert "Which cohort" not in reply and "wrote:" not in reply and "list footer" not in reply


def test_top_posted_reply_ignores_text_below_the_quote():
    body = (
        "Thanks, the 2027 cohort is the one I meant and I will send my documents.\n\n"
        "On Tue, Nov 3, 2026 at 9:00 AM Desk <d@civic.example> wrote:\n> Which cohort?\n\nstray\n"
    )
    assert "stray" not in latest_reply(body)

"""Automation signals: who must never get an auto-acknowledgment, and what is certainly a robot."""

from __future__ import annotations

from pathlib import Path

import pytest

from intake.mail import parse

MAIL = Path(__file__).resolve().parent / "fixtures" / "mail"


def signals(headers: str, body: str = "Hello, I have a question about the fellowship.\n"):
    raw = ("From: Person <person@example.org>\nTo: desk@civic.example\n" + headers + "\n" + body)
    return parse(raw.encode()).automation


def test_person_writing_is_not_automated():
    s = signals("Subject: Question about the program\n")
    assert not s.automated and not s.suppress_auto_reply and s.kind is None and s.reasons == []


def test_dsn_fixture_is_a_bounce_with_readable_reasons():
    s = parse((MAIL / "dsn.eml").read_bytes()).automation
    assert s.automated and s.kind == "bounce" and s.suppress_auto_reply
    for reason in (
        "structure: multipart/report delivery-status",
        "header: Auto-Submitted: auto-replied",
        "sender: mailer-daemon",
        "envelope: null return path <>",
    ):
        assert reason in s.reasons


def test_out_of_office_by_subject_only():
    s = parse((MAIL / "ooo-subject-only.eml").read_bytes()).automation
    assert s.automated and s.kind == "auto_reply" and s.reasons == ["subject: out-of-office"]


def test_mailing_list_suppresses_but_is_not_certain():
    s = parse((MAIL / "list.eml").read_bytes()).automation
    assert s.is_list and s.suppress_auto_reply and not s.automated and s.kind == "list"
    assert "header: List-Id" in s.reasons


def test_calendar_invitation():
    s = parse((MAIL / "calendar.eml").read_bytes()).automation
    assert s.automated and s.kind == "calendar"


@pytest.mark.parametrize(
    ("headers", "kind", "reason"),
    [
        ("Auto-Submitted: auto-replied\n", "auto_reply", "header: Auto-Submitted: auto-replied"),
        ("Auto-Submitted: auto-generated\n", "auto_generated", "header: Auto-Submitted: auto-generated"),
        ("X-Autoreply: yes\n", "auto_reply", "header: X-Autoreply: yes"),
        ("X-Autorespond: Vacation\n", "auto_reply", "header: X-Autorespond: Vacation"),
        ("Precedence: auto_reply\n", "auto_reply", "header: Precedence: auto_reply"),
        ("X-Failed-Recipients: a@b.example\n", "bounce", "header: X-Failed-Recipients"),
        ("Return-Path: <>\n", "auto_generated", "envelope: null return path <>"),
    ],
)
def test_certain_headers(headers, kind, reason):
    s = signals("Subject: hello\n" + headers)
    assert s.automated and s.kind == kind and reason in s.reasons and s.suppress_auto_reply


def test_auto_submitted_no_is_a_person():
    assert not signals("Subject: hi\nAuto-Submitted: no\n").automated


@pytest.mark.parametrize("headers", ["X-Auto-Response-Suppress: All\n", "Precedence: bulk\n",
                                     "Precedence: junk\n", "List-Unsubscribe: <mailto:x@y.example>\n"])
def test_hints_only_suppress(headers):
    s = signals("Subject: hi\n" + headers)
    assert s.suppress_auto_reply and not s.automated and s.reasons


@pytest.mark.parametrize(
    ("sender", "kind", "reason"),
    [
        ("MAILER-DAEMON@mx.example.com", "bounce", "sender: mailer-daemon"),
        ("postmaster@example.com", "bounce", "sender: postmaster"),
        ("no-reply@accounts.example.com", "notification", "sender: no-reply address"),
        ("noreply@example.com", "notification", "sender: no-reply address"),
        ("do-not-reply@example.com", "notification", "sender: no-reply address"),
        ("alerts-noreply@example.com", "notification", "sender: no-reply address"),
    ],
)
def test_robot_senders(sender, kind, reason):
    raw = f"From: {sender}\nTo: desk@civic.example\nSubject: hello\n\nbody\n".encode()
    s = parse(raw).automation
    assert s.automated and s.kind == kind and reason in s.reasons


def test_similar_human_addresses_are_not_robots():
    for sender in ("replyguy@example.com", "noreen@example.com", "postmasters-union@example.org"):
        raw = f"From: {sender}\nSubject: hello\n\nbody\n".encode()
        assert not parse(raw).automation.automated, sender


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Question", "Automatic reply: Your inquiry", "Autoreply: hi",
        "Abwesenheitsnotiz: Frage", "Automatische Antwort: Frage", "Réponse automatique : Question",
        "Absence: votre message", "Respuesta automática: Pregunta", "Fuera de la oficina",
        "Resposta automática: Dúvida", "Ausente", "자동 응답: 문의", "Undeliverable: Your inquiry",
        "Delivery Status Notification (Failure)", "Mail delivery failed: returning message",
        "Returned mail: see transcript for details",
    ],
)
def test_auto_reply_subjects(subject):
    s = signals(f"Subject: {subject}\n")
    assert s.automated and s.kind in ("auto_reply", "bounce"), subject
    assert any(r.startswith("subject: ") for r in s.reasons)


@pytest.mark.parametrize(
    "subject",
    ["Re: Automatic reply: Your inquiry", "Absence of documents in my application",
     "Question about being out of office during the fellowship", "Ausente por enfermedad el lunes?"],
)
def test_human_subjects_that_mention_absence(subject):
    assert not signals(f"Subject: {subject}\n").automated, subject


def test_multipart_report_kinds():
    def report(kind: str):
        raw = (
            "From: a@b.example\nSubject: x\nMIME-Version: 1.0\n"
            f"Content-Type: multipart/report; report-type={kind}; boundary=B\n\n"
            "--B\nContent-Type: text/plain\n\nreport\n--B--\n"
        )
        return parse(raw.encode()).automation

    assert report("delivery-status").kind == "bounce"
    assert report("disposition-notification").kind == "receipt"
    assert report("feedback-report").kind == "complaint"
    assert report("disposition-notification").automated


def test_mailer_daemon_without_a_domain():
    s = parse(b"From: MAILER-DAEMON\nSubject: failure notice\n\nbody\n").automation
    assert s.automated and "sender: mailer-daemon" in s.reasons


# --- One detector: rules that once lived only in the classifier's or the loop checks' copy ---

@pytest.mark.parametrize(
    ("subject", "kind"),
    [
        ("[External] Automatic reply: Your inquiry", "auto_reply"),
        ("Automatic response: hosting", "auto_reply"),
        ("Auto: Question", "auto_reply"),
        ("Absence du bureau : Question", "auto_reply"),
        ("Ausência temporária", "auto_reply"),
        ("자동 회신: 문의", "auto_reply"),
        ("Autoantwort: Frage", "auto_reply"),
        ("Delivery Notification: Delivery has failed", "bounce"),
        ("Undelivered: hello", "bounce"),
        ("Non distribuable: Question", "bounce"),
        ("Not read: Your inquiry", "receipt"),
        ("Abuse report for 192.0.2.1", "complaint"),
        ("Invitation: Standup @ Tue 3 Jun 2025 10am (EDT)", "calendar"),
    ],
)
def test_every_readers_subjects_are_the_mail_layers(subject, kind):
    s = signals(f"Subject: {subject}\n")
    assert s.automated and s.kind == kind, (subject, s)


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ("X-MS-Exchange-Message-Is-Ndr: \n", "bounce"),
        ("Feedback-Type: abuse\n", "complaint"),
        ("X-Autogenerated: Reply\n", "auto_generated"),
        ("X-Auto-Reply-From: person@example.org\n", "auto_reply"),
        ("Precedence: auto-reply\n", "auto_reply"),
    ],
)
def test_headers_the_other_copies_knew(headers, kind):
    s = signals("Subject: hello\n" + headers)
    assert s.automated and s.kind == kind, s


@pytest.mark.parametrize("headers", ["X-Loop: desk@civic.example\n", "List-Post: <mailto:l@x.example>\n",
                                     "X-Mailing-List: fellows@x.example\n"])
def test_more_hints_that_only_suppress(headers):
    s = signals("Subject: hi\n" + headers)
    assert s.suppress_auto_reply and not s.automated


def test_x_auto_response_suppress_counts_only_for_the_values_that_ask_it():
    assert signals("Subject: hi\nX-Auto-Response-Suppress: OOF, AutoReply\n").suppress_auto_reply
    assert not signals("Subject: hi\nX-Auto-Response-Suppress: None\n").suppress_auto_reply


@pytest.mark.parametrize(
    ("sender", "automated", "is_list"),
    [
        ("bounces+abc=civic.example@lists.example.com", True, False),
        ("autoresponder@example.com", True, False),
        ("calendar-notification@google.com", True, False),
        ("postmaster-relay@example.com", True, False),
        # Role and list mailboxes: never answered automatically, but a person may write from one.
        ("nobody@webform.example.org", False, False),
        ("abuse@example.net", False, False),
        ("fellows-request@lists.example.org", False, True),
        ("majordomo@lists.example.org", False, True),
    ],
)
def test_robot_and_role_mailboxes(sender, automated, is_list):
    raw = f"From: {sender}\nTo: desk@civic.example\nSubject: hello\n\nbody\n".encode()
    s = parse(raw).automation
    assert s.automated is automated and s.suppress_auto_reply and s.is_list is is_list, s


def test_human_subjects_stay_human_with_the_merged_lists():
    for subject in ("Abwesenheitsbescheinigung für das Programm", "Reading list for fellows",
                    "Accepted: my offer letter", "Invitation to speak at our conference",
                    "Autumn cohort question", "Delivery of the signed agreement"):
        assert not signals(f"Subject: {subject}\n").suppress_auto_reply, subject


@pytest.mark.parametrize("name", ["dsn.eml", "ooo-subject-only.eml", "list.eml", "calendar.eml", "plain.eml",
                                  "reply-en.eml"])
def test_the_three_readers_agree(name):
    """Parser, classifier and loop checks ask the same rules: what the parser finds certain the
    classifier calls automated, and whatever the parser finds at all the loop checks refuse."""
    from intake.classify.automated import automated_reasons
    from intake.classify.document import Document
    from intake.mail.types import AutomationSignals
    from intake.outbound.loops import facts_from_raw, header_blockers

    raw = (MAIL / name).read_bytes()
    parsed = parse(raw)
    headers_only = Document.from_parsed(parsed)
    headers_only.automation = AutomationSignals()  # the classifier's own reading, not the parser's
    assert bool(automated_reasons(headers_only)) is parsed.automation.automated, name
    facts = facts_from_raw(raw)
    assert bool(header_blockers(facts, ["desk@civic.example"])) is parsed.automation.suppress_auto_reply, name

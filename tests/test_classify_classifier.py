"""The classifier's decisions without a database: automated mail, rules, model, spam caution,
the operator's taxonomy and review flags. Uses the seed model (fitted once per process)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from intake.classify import Classifier, Document
from intake.classify.document import Verdict
from intake.config import Settings
from intake.mail import parse
from intake.mail.types import AutomationSignals

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "classify"

APPLICATION = Document(
    subject="Eligibility question",
    body="Hello, am I eligible to apply for the fellowship without a degree? "
         "When is the application deadline for the next cohort?",
    sender_address="rosa.delgado@example.com",
)
PHISHING = Document(
    subject="Your mailbox will be suspended",
    body="Dear user, verify your password within 24 hours by clicking here "
         "http://mail-verify-account.example.info/login or your account will be locked.",
    sender_address="security@mail-verify-account.example.info",
)


def settings_with(tmp_path: Path, toml: str) -> Settings:
    path = tmp_path / "intake.toml"
    path.write_text(toml, encoding="utf-8")
    return Settings.from_env({"INTAKE_CONFIG": str(path)})


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(Settings.from_env({}))


def test_an_ordinary_question_goes_to_the_model_with_word_reasons(classifier):
    verdict = classifier.classify(APPLICATION)
    assert isinstance(verdict, Verdict)
    assert verdict.category == "application"
    assert verdict.source == "model"
    assert verdict.model_version and verdict.model_version.startswith("seed-")
    assert not verdict.automated
    assert 0.5 <= verdict.confidence <= 1.0 and not verdict.needs_review
    words = [r for r in verdict.reasons if r.startswith("words: ")]
    assert words and any(w in words[0] for w in ("apply", "eligible", "deadline", "cohort"))


def test_mail_layer_signals_decide_automated_first(classifier):
    doc = Document(subject="Re: Eligibility question", body="Thanks for your message.",
                   automation=AutomationSignals(automated=True, kind="auto_reply",
                                                reasons=["header: Auto-Submitted: auto-replied"]))
    verdict = classifier.classify(doc)
    assert (verdict.category, verdict.source, verdict.automated) == ("automated", "automated", True)
    assert "header: Auto-Submitted: auto-replied" in verdict.reasons
    assert verdict.model_version.startswith("seed-")  # the version in force is always recorded


@pytest.mark.parametrize("doc", [
    Document(subject="Hello", body="Hi", headers=[("Auto-Submitted", "auto-generated")]),
    Document(subject="Hello", body="Hi", headers=[("Content-Type", "multipart/report; report-type=delivery-status")]),
    Document(subject="Undeliverable: Eligibility question", body="Your message couldn't be delivered."),
    Document(subject="Automatic reply: hosting", body="Thank you for your email."),
    Document(subject="Re: hosting", body="I am out of the office until June 9 with limited access to email."),
    Document(subject="Re: hosting", body="Je suis absente jusqu'au 3 juin. Je vous répondrai à mon retour."),
    Document(subject="Status", body="Your message was received.", sender_address="no-reply@portal.example.org"),
])
def test_certain_automation_from_headers_sender_subject_or_text(classifier, doc):
    verdict = classifier.classify(doc)
    assert verdict.source == "automated" and verdict.category == "automated" and verdict.automated


@pytest.mark.parametrize("body", [
    "I was out of the office last week, sorry for the slow reply. Is the deadline still March 1?",
    "My email to the city bounced, see below. Could you forward my application question to them?\n"
    "> Delivery to the following recipient failed permanently",
])
def test_people_mentioning_absence_or_bounces_are_not_automated(classifier, body):
    verdict = classifier.classify(Document(subject="Question", body=body, sender_address="a.person@example.com"))
    assert verdict.source != "automated" and not verdict.automated


def test_operator_rules_beat_the_model(tmp_path):
    settings = settings_with(tmp_path, """
[[classifier.rules]]
category = "partnership"
sender_domains = ["gov"]
keywords = ["fellowship"]
reason = "sender domain .gov"
order = 5
""")
    ruled = Classifier(settings)
    doc = Document(subject=APPLICATION.subject, body=APPLICATION.body, sender_address="clerk@springfield.gov")
    assert Classifier(Settings.from_env({})).classify(doc).category == "application"  # the model's view
    verdict = ruled.classify(doc)
    assert (verdict.category, verdict.source) == ("partnership", "rule")
    assert verdict.reasons[0] == "rule: sender domain .gov"
    # Both conditions must hold: the same text from a non-.gov sender is left to the model.
    assert ruled.classify(APPLICATION).source == "model"


def test_rules_run_in_order_and_bad_rules_are_skipped_with_an_error(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        settings = settings_with(tmp_path, """
[[classifier.rules]]
category = "no_such_category"
keywords = ["deadline"]

[[classifier.rules]]
category = "press"
regexes = ["(unclosed"]

[[classifier.rules]]
category = "general"
keywords = ["deadline"]
order = 20

[[classifier.rules]]
category = "funding"
address_patterns = ["rosa.*@example.com"]
order = 10
reason = "known donor"
""")
        ruled = Classifier(settings)
    assert "no_such_category" in caplog.text and "bad regex" in caplog.text
    verdict = ruled.classify(APPLICATION)
    assert (verdict.category, verdict.reasons[0]) == ("funding", "rule: known donor")


def test_spam_needs_a_high_probability_and_a_nameable_sign(classifier):
    verdict = classifier.classify(PHISHING)
    assert verdict.category == "spam" and verdict.confidence >= 0.8
    assert any(r.startswith("spam signs: ") for r in verdict.reasons)


def test_a_provider_spam_flag_alone_never_buries_a_real_applicant(classifier):
    flagged = Document(subject=APPLICATION.subject, body=APPLICATION.body,
                       sender_address=APPLICATION.sender_address,
                       headers=[("X-Spam-Status", "Yes, score=7.9 required=5.0")],
                       meta={"spam_score": "8.2", "X-Mailgun-Sflag": "Yes"})
    verdict = classifier.classify(flagged)
    assert verdict.category == "application"
    assert any(r.startswith("provider: spam score") for r in verdict.reasons)


def test_unsure_spam_falls_back_to_a_person_with_review(tmp_path):
    strict = Classifier(settings_with(tmp_path, "[classifier]\nspam_threshold = 1.01\n"))
    verdict = strict.classify(PHISHING)
    assert verdict.category != "spam"
    assert verdict.needs_review and verdict.confidence < 0.5
    assert any(r.startswith("maybe spam") for r in verdict.reasons)


def test_a_category_missing_from_the_taxonomy_is_never_returned(tmp_path):
    names = ["application", "applicant_status", "partnership", "press", "general", "spam"]
    toml = "\n".join(f'[[categories]]\nname = "{n}"\ndescription = "x"\n' for n in names)
    narrow = Classifier(settings_with(tmp_path, toml))
    docs = [
        Document(subject="Demo next week?", body="Our platform helps agencies ship faster. "
                 "Can I book 15 minutes for a demo and send pricing?", sender_address="sales@vendor.example.com"),
        Document(subject="Volunteering", body="How can I volunteer or mentor fellows?"),
        Document(subject="Automatic reply: hi", body="I am out of the office until Monday.",
                 headers=[("Auto-Submitted", "auto-replied")]),
    ]
    verdicts = narrow.classify_many(docs)
    assert all(v.category in names for v in verdicts)
    assert verdicts[2].automated  # still known to be automated, filed under an existing category


def test_low_confidence_marks_needs_review(tmp_path):
    cautious = Classifier(settings_with(tmp_path, "[classifier]\nreview_threshold = 0.9999\n"))
    verdict = cautious.classify(Document(subject="hi", body="quick question"))
    assert verdict.needs_review and verdict.source == "model"


def test_classify_many_matches_one_by_one(classifier):
    docs = [APPLICATION, PHISHING, Document(subject="Out of Office", body="Back Monday.")]
    many = classifier.classify_many(docs)
    assert [v.category for v in many] == [classifier.classify(d).category for d in docs]
    assert [v.category for v in many] == ["application", "spam", "automated"]


def test_documents_from_parsed_mail_use_the_latest_reply():
    parsed = parse((FIXTURES / "messages" / "volunteer_reply.eml").read_bytes())
    doc = Document.from_parsed(parsed, {"spam_score": 0.1})
    assert doc.sender_address == "ben.carter@example.com"
    assert "sign up as a volunteer" in doc.body
    assert "We run hack days" not in doc.body and "We run hack days" in doc.full_text
    assert doc.meta == {"spam_score": 0.1}


def test_a_renamed_category_keeps_its_seed_examples_through_aliases(tmp_path):
    tables = [("application", ""), ("media", 'aliases = ["press"]'), ("general", ""), ("spam", "")]
    toml = "\n".join(f'[[categories]]\nname = "{n}"\ndescription = "x"\n{extra}\n' for n, extra in tables)
    renamed = Classifier(settings_with(tmp_path, toml))
    verdict = renamed.classify(Document(
        subject="Interview request", body="I'm a reporter at the Tribune writing a story about the "
        "fellowship and would like to interview your director before my Friday deadline."))
    assert verdict.category == "media"
    assert set(renamed.model().classes) == {"application", "media", "general", "spam"}


def test_a_two_category_taxonomy_still_works(tmp_path):
    toml = '[[categories]]\nname = "general"\ndescription = "x"\n\n[[categories]]\nname = "spam"\ndescription = "y"\n'
    tiny = Classifier(settings_with(tmp_path, toml))
    legit, phishing = tiny.classify_many([APPLICATION, PHISHING])
    assert legit.category == "general" and 0 <= legit.confidence <= 1
    assert phishing.category == "spam" and phishing.reasons[0].startswith("words: ")


def test_a_model_made_with_other_features_is_refused_with_advice(classifier):
    import io

    import joblib

    from intake.classify.model import ModelBundle

    payload = joblib.load(io.BytesIO(classifier.model().dumps()))
    assert ModelBundle.loads(classifier.model().dumps()).version == classifier.model().version
    payload["features"] = -1
    buffer = io.BytesIO()
    joblib.dump(payload, buffer)
    with pytest.raises(ValueError, match="intake train"):
        ModelBundle.loads(buffer.getvalue())

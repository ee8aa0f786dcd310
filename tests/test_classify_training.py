"""Learning from staff on a real database (SQLite and PostgreSQL): labels, `intake train`,
versioned models that workers pick up, the margin guard and the fallback for a broken model."""

from __future__ import annotations

import hashlib
import logging

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from intake.classify import Document, get_classifier, record_staff_label
from intake.classify.commands import train_command
from intake.classify.model import seed_model
from intake.classify.training import staff_examples, train
from intake.config import Settings
from intake.db import Database
from intake.models import Inquiry, Message, ModelVersion
from intake.jobs import InlineQueue
from intake.runtime import Runtime

# The comms team decides that public-records requests are theirs ("press"); the seed set files
# them under general. Eight corrections, then a ninth request none of them saw.
RECORDS_REQUESTS = [
    ("Public records request", "Under the state open records act I request copies of all contracts between your organization and Dayton."),
    ("FOIA request - fellowship emails", "Pursuant to FOIA, please provide emails between your staff and the county clerk from 2023."),
    ("Records request: meeting minutes", "I am requesting, under public records law, the minutes of your advisory board meetings for 2022 to 2024."),
    ("Open records request", "This is an open records request for any memoranda of understanding signed with city agencies."),
    ("Request for public records", "Please consider this a formal public records request for invoices paid by the city to your program."),
    ("FOIA", "Freedom of Information request: all reports your fellows delivered to the transit authority."),
    ("Records request regarding data sharing", "Under the public records act I request the data sharing agreements signed with the health department."),
    ("Public information request", "I'm filing a public information request for correspondence about the permit system project."),
]
PROBE = Document(
    subject="Public records request for correspondence",
    body="Under the public records act I am requesting copies of the correspondence between your staff and the parks department.",
    sender_address="requester@example.net",
)


@pytest.fixture
def live_rt(db_url, tmp_path) -> Runtime:
    """A runtime whose classifier checks for a new model on every call (reload_seconds = 0)."""
    config = tmp_path / "intake.toml"
    config.write_text("[classifier]\nreload_seconds = 0\n", encoding="utf-8")
    settings = Settings.from_env({"DATABASE_URL": db_url, "INTAKE_CONFIG": str(config)})
    runtime = Runtime(settings, Database.from_settings(settings), queue=InlineQueue())
    yield runtime
    runtime.db.dispose()


def add_inquiry(session, subject: str, body: str, sender: str) -> int:
    inquiry = Inquiry(subject=subject, thread_subject=subject.lower())
    session.add(inquiry)
    session.flush()
    raw = f"From: {sender}\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode()
    session.add(Message(
        inquiry_id=inquiry.id, direction="inbound", dedupe_key="sha:" + hashlib.sha256(raw).hexdigest(),
        subject=subject, text_body=body, latest_reply=body, sender_address=sender, raw=raw,
        sha256=hashlib.sha256(raw).hexdigest(), size=len(raw), parse_status="parsed", state="processed",
    ))
    session.flush()
    return inquiry.id


def test_a_staff_label_is_stored_with_its_actor_and_message(rt):
    with rt.db.session() as session:
        inquiry_id = add_inquiry(session, "Hosting a fellow", "Can our city host a fellow?", "cio@city.example.gov")
        row = record_staff_label(session, inquiry_id, "partnership", "U024BE7LH")
        assert (row.source, row.confidence, row.actor, row.category) == ("staff", 1.0, "U024BE7LH", "partnership")
        first = session.scalar(select(Message.id).where(Message.inquiry_id == inquiry_id))
        assert row.message_id == first
        # The latest correction of an inquiry is the one training uses.
        record_staff_label(session, inquiry_id, "events", "U0G9QF9C6")
    with rt.db.session() as session:
        examples = staff_examples(session)
    assert [(e.category, e.subject, e.origin) for e in examples] == [("events", "Hosting a fellow", "staff")]


def test_staff_corrections_plus_train_change_the_prediction_and_workers_pick_it_up(live_rt):
    classifier = get_classifier(live_rt)
    before = classifier.classify(PROBE)
    assert before.category != "press" and before.model_version.startswith("seed-")
    with live_rt.db.session() as session:
        for subject, body in RECORDS_REQUESTS:
            inquiry_id = add_inquiry(session, subject, body, "requests@muckrock.example.com")
            record_staff_label(session, inquiry_id, "press", "U024BE7LH")

    result = train(live_rt)
    assert result.stored and result.staff_labels == len(RECORDS_REQUESTS)
    assert result.macro_f1 >= 0.8 and result.tested_on > 100

    after = classifier.classify(PROBE)  # the same process-wide classifier, no restart
    assert after.category == "press"
    assert after.model_version == result.version
    with live_rt.db.session() as session:
        rows = session.scalars(select(ModelVersion)).all()
        assert [(r.version, r.active) for r in rows] == [(result.version, True)]
        assert rows[0].metrics["macro_f1"] == pytest.approx(result.macro_f1, abs=1e-3)
        assert rows[0].trained_on > 700


def store_version(rt, version: str, blob: bytes, macro_f1: float) -> None:
    with rt.db.session() as session:
        session.add(ModelVersion(version=version, blob=blob, metrics={"macro_f1": macro_f1},
                                 trained_on=1, active=True))


def test_train_refuses_a_worse_model_unless_forced(rt, db_url, caplog):
    seed = seed_model(rt.settings.category_names)
    store_version(rt, "v-excellent", seed.dumps(), macro_f1=0.999)
    runner = CliRunner()
    env = {"DATABASE_URL": db_url, "INTAKE_CONFIG": ""}
    caplog.set_level(logging.INFO, logger="intake.classify.training")

    refused = runner.invoke(train_command, ["--margin", "0.05"], env=env)
    assert refused.exit_code == 1
    assert "not stored" in refused.output and "--force" in refused.output
    with rt.db.session() as session:
        assert session.scalar(select(func.count()).select_from(ModelVersion)) == 1
    # Stage lines while it works (tens of seconds): a stored model is the bar, so 3 stages.
    assert "[1/3] fitting a candidate on" in caplog.text and "[1/3] done in" in caplog.text
    assert "[2/3]" not in caplog.text  # refused before the final fit
    caplog.clear()

    forced = runner.invoke(train_command, ["--force"], env=env)
    assert forced.exit_code == 0, forced.output
    assert "macro-F1" in forced.output and "stored v" in forced.output
    assert "[2/3] fitting the final model on all" in caplog.text
    assert "[3/3] storing v" in caplog.text
    with rt.db.session() as session:
        rows = session.scalars(select(ModelVersion).order_by(ModelVersion.id)).all()
        assert [(r.version == "v-excellent", r.active) for r in rows] == [(True, False), (False, True)]


def test_train_explains_an_unreachable_database():
    result = CliRunner().invoke(train_command, [], env={
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "INTAKE_CONFIG": ""})
    assert result.exit_code != 0
    assert "DATABASE_URL" in result.output and "Traceback" not in result.output


def test_a_corrupted_stored_model_falls_back_to_the_seed_model(rt, caplog):
    store_version(rt, "v-broken", b"this is not a joblib file", macro_f1=0.9)
    with caplog.at_level(logging.ERROR, logger="intake.classify.classifier"):
        verdict = get_classifier(rt).classify(PROBE)
        again = get_classifier(rt).classify(PROBE)
    assert verdict.model_version.startswith("seed-") and again.category == verdict.category
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "v-broken" in errors[0].getMessage()
    assert "seed model" in errors[0].getMessage()


def test_the_first_fit_of_a_seed_model_says_so_and_the_cached_one_does_not(caplog):
    """The seed model's fit is the slow part of a newcomer's first `intake ingest`: it is
    announced, timed, and not repeated once cached on disk."""
    from intake.classify import model

    categories = ("press", "spam", "general")  # a taxonomy no other test fits
    caplog.set_level(logging.INFO, logger="intake.classify.model")
    model.seed_model(categories)
    assert "fitting the classifier's seed model on" in caplog.text and "(first run only" in caplog.text
    assert "seed model fitted in" in caplog.text
    caplog.clear()
    model._seed_models.clear()  # a new process: only the disk cache is left
    model.seed_model(categories)
    assert "fitting" not in caplog.text

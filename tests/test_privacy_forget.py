"""Erasing a person, on both databases, through the real pipeline: after `forget` the address and
the text of their messages are nowhere in the database files, other people's inquiries are
untouched, and a message that arrives afterwards starts a new inquiry."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import func, select

from intake import inquiries, outbound
from intake.keys import secret_key
from intake.models import (
    Attachment,
    Classification,
    Contact,
    Event,
    Inquiry,
    Message,
    ModelVersion,
    Receipt,
    utcnow,
)
from intake.privacy import actions, erasure, footprint, run
from tests.privacy_helpers import (
    ATTACHMENT_PHRASE,
    BOB,
    JANE,
    JANE_NAME,
    MARY,
    PHRASE,
    email,
    ingest,
    leftovers_postgres,
    leftovers_sqlite,
)


def leftovers(rt, needles):
    if rt.db.is_sqlite:
        return leftovers_sqlite(rt.settings.database_url, needles)
    return leftovers_postgres(rt.settings.database_url, needles)


@pytest.fixture
def desk(rt):
    """Jane's inquiry (follow-up, attachment, note, staff label, our reply), Bob's inquiry that
    cc'd her and that she answered in, and Mary's, whose address contains Jane's."""
    first = ingest(rt, email(
        sender=f"{JANE_NAME} <{JANE}>", subject="Deferral for health reasons",
        body=f"Hello, I need to defer my fellowship. My {PHRASE} volunteering starts in May.",
        message_id="<jane-1@mail.example>",
        attachment=("cv.txt", f"Jane Doe CV: {ATTACHMENT_PHRASE}".encode()),
    ))
    ingest(rt, email(
        sender=f"{JANE_NAME} <{JANE}>", subject="Re: Deferral for health reasons",
        body=f"Also: the {PHRASE} needs me until June.", in_reply_to="<jane-1@mail.example>",
    ))
    with rt.db.session() as session:
        inquiries.add_note(session, first.inquiry_id, f"Called her back about the {PHRASE}.", "U100")
        inquiries.reclassify(session, first.inquiry_id, "applicant_status", "U100")
    outbound.send_reply(rt, first.inquiry_id, "Dear Jane, your deferral is approved.", "U100")
    bob = ingest(rt, email(
        sender=f"Bob Builder <{BOB}>", subject="Hosting two fellows at the city",
        body=f"Our council wants to host fellows. I copied {JANE_NAME} ({JANE}), who knows us.",
        cc=f"{JANE_NAME} <{JANE}>", message_id="<bob-1@city.example>",
    ))
    ingest(rt, email(
        sender=f"{JANE_NAME} <{JANE}>", subject="Re: Hosting two fellows at the city",
        body=f"Bob is great; my {PHRASE} worked with him.", cc=BOB, in_reply_to="<bob-1@city.example>",
    ))
    mary = ingest(rt, email(sender=f"Mary Jane <{MARY}>", subject="Stipend question",
                            body="What is the stipend for the 2027 cohort?"))
    return {"jane": first.inquiry_id, "bob": bob.inquiry_id, "mary": mary.inquiry_id}


def test_forget_erases_everything_about_the_person(rt, desk):
    with rt.db.session() as session:
        bob_messages_before = session.scalar(select(func.count(Message.id)).where(
            Message.inquiry_id == desk["bob"], Message.direction == "inbound"))
        jane_message_ids = [m.id for m in session.scalars(
            select(Message).where(Message.inquiry_id == desk["jane"]))]
        # Jane's reply-all sits in Bob's conversation (with Bob's email and our acknowledgment).
        assert bob_messages_before == 2
        assert any(m.sender_address == JANE for m in session.scalars(select(Message).where(Message.inquiry_id == desk["bob"])))
        assert session.scalar(select(func.count(Message.id)).where(Message.direction == "outbound", Message.to_address == JANE)) >= 1
    assert leftovers(rt, [JANE, PHRASE, ATTACHMENT_PHRASE]), "the fixture should hold Jane's data"

    result = run.forget_person(rt, JANE, "cli:tester")

    assert result.audit_event_id is not None
    assert result.inquiry_ids == [desk["jane"]]
    assert leftovers(rt, [JANE, PHRASE, ATTACHMENT_PHRASE, JANE_NAME]) == []
    with rt.db.session() as session:
        assert session.get(Inquiry, desk["jane"]) is None
        assert session.scalar(select(Contact).where(Contact.address == JANE)) is None
        assert session.scalar(select(func.count(Message.id)).where(Message.id.in_(jane_message_ids))) == 0
        # Bob's conversation stays, without Jane's reply and without her address.
        bob = session.get(Inquiry, desk["bob"])
        assert bob is not None and bob.contact.address == BOB
        remaining = list(session.scalars(select(Message).where(
            Message.inquiry_id == desk["bob"], Message.direction == "inbound")))
        assert len(remaining) == bob_messages_before - 1
        assert all(m.sender_address == BOB for m in remaining)
        assert b"Cc: [erased] <[erased]>" in remaining[0].raw
        assert "copied [erased] ([erased])" in remaining[0].text_body
        assert remaining[0].recipients == ["fellowship@civic.example", "[erased]"]
        # Mary's address contains Jane's and is left alone.
        assert session.get(Inquiry, desk["mary"]).contact.address == MARY
        # The audit trail: a keyed hash, who, counts; never the address.
        audit = session.get(Event, result.audit_event_id)
        assert audit.kind == "person_erased" and audit.actor == "cli:tester" and audit.inquiry_id is None
        assert audit.detail["address_hmac"] == erasure.address_hash(secret_key(session), JANE)
        assert audit.detail["counts"]["inquiries"] == 1
        assert audit.detail["counts"]["messages"] == len(jane_message_ids) + 1
        assert audit.detail["counts"]["contacts"] == 1
        # Receipts keep size, hash and outcome of what arrived, and nothing else.
        erased = list(session.scalars(select(Receipt).where(Receipt.erased_at.is_not(None), Receipt.message_id.is_(None))))
        assert len(erased) == 3  # Jane's three emails (notes and replies have no receipt)
        assert all(r.sha256 and r.size and r.outcome == "stored" for r in erased)
        assert all(r.provider_event_id.startswith("hmac:") for r in erased)
        # Bob's email was rewritten (her address replaced): its receipt keeps the original hash.
        altered = session.scalars(select(Receipt).where(Receipt.message_id == remaining[0].id)).one()
        assert altered.erased_at is not None and altered.sha256 != remaining[0].sha256
        assert altered.size != remaining[0].size


def test_forget_counts_what_goes_and_leaves_other_people_alone(rt, desk):
    with rt.db.session() as session:
        before = {i.id: (i.subject, i.status, i.category) for i in session.scalars(select(Inquiry))}
        mary_raw = list(session.scalars(select(Message.raw).where(Message.inquiry_id == desk["mary"]).order_by(Message.id)))
    with rt.db.read_session() as session:
        preview = actions.preview_forget(session, JANE)
    assert [i["id"] for i in preview.inquiries] == [desk["jane"]]
    assert preview.messages_elsewhere == 1 and preview.mentions == 1 and preview.attachments == 1
    run.forget_person(rt, JANE, "cli:tester")
    with rt.db.session() as session:
        after = {i.id: (i.subject, i.status, i.category) for i in session.scalars(select(Inquiry))}
        assert list(session.scalars(select(Message.raw).where(Message.inquiry_id == desk["mary"]).order_by(Message.id))) == mary_raw
    before.pop(desk["jane"])
    assert after == before


def test_follow_up_after_erasure_starts_a_new_inquiry(rt, desk):
    run.forget_person(rt, JANE, "cli:tester")
    again = ingest(rt, email(
        sender=f"{JANE_NAME} <{JANE}>", subject=f"Re: Deferral for health reasons [#{desk['jane']}]",
        body="Did you get my message?", in_reply_to="<jane-1@mail.example>",
    ))
    assert again.status == "new"
    assert again.inquiry_id not in desk.values()


def test_models_that_learned_from_their_labels_are_withdrawn(rt, desk):
    import datetime as dt

    with rt.db.session() as session:
        label_time = session.scalar(select(Classification.created_at).where(
            Classification.inquiry_id == desk["jane"], Classification.source == "staff"))
        older = ModelVersion(version="v-before", blob=b"seed words", active=False,
                             created_at=label_time - dt.timedelta(days=1))
        tainted = ModelVersion(version="v-after", blob=f"vocabulary: {PHRASE}".encode(), active=True,
                               created_at=label_time + dt.timedelta(minutes=5))
        session.add_all([older, tainted])
    result = run.forget_person(rt, JANE, "cli:tester")
    assert result.counts["models_withdrawn"] == 1
    with rt.db.session() as session:
        versions = {v.version: v.active for v in session.scalars(select(ModelVersion))}
    assert versions == {"v-before": True}


def test_an_unprocessed_message_of_theirs_is_erased_too(rt):
    raw = email(sender=f"{JANE_NAME} <{JANE}>", subject="Not processed yet", body=f"My {PHRASE}.")
    with rt.db.session() as session:
        stored = inquiries.store_raw(session, raw, provider="test")
    with rt.db.read_session() as session:
        assert footprint.find(session, JANE).message_ids == [stored.message_id]
    result = run.forget_person(rt, JANE, "cli:tester")
    assert result.counts["messages"] == 1
    assert leftovers(rt, [JANE, PHRASE]) == []


def test_nothing_held_means_nothing_recorded(rt, desk):
    result = run.forget_person(rt, "nobody@example.org", "cli:tester")
    assert result.audit_event_id is None
    with rt.db.session() as session:
        assert session.scalar(select(func.count(Event.id)).where(Event.kind == "person_erased")) == 0


def test_address_must_be_an_address():
    with pytest.raises(footprint.NotAnAddress):
        footprint.normalized("not an address")
    assert footprint.normalized("  Jane Doe <Jane.Doe@Example.ORG> ") == JANE


def test_delete_removes_one_inquiry_and_its_contact(rt, desk):
    result = run.delete_inquiry(rt, desk["mary"], "cli:tester")
    assert result.counts["inquiries"] == 1 and result.counts["contacts"] == 1
    with rt.db.session() as session:
        assert session.get(Inquiry, desk["mary"]) is None
        assert session.scalar(select(Contact).where(Contact.address == MARY)) is None
        assert session.get(Inquiry, desk["jane"]) is not None
        audit = session.scalars(select(Event).where(Event.kind == "inquiry_deleted")).one()
        assert audit.detail["inquiry"] == desk["mary"] and audit.actor == "cli:tester"
    with pytest.raises(LookupError):
        run.delete_inquiry(rt, desk["mary"], "cli:tester")
    assert leftovers(rt, [MARY, "stipend for the 2027 cohort"]) == []


def test_receipt_ledger_keeps_no_address():
    from intake.inquiries.store import LEDGER_ADDRESS

    assert LEDGER_ADDRESS.sub("[address]", "bad header From: <ann@example.org>, ok") == \
        "bad header From: <[address]>, ok"


def test_attachment_rows_and_bytes_go(rt, desk):
    with rt.db.session() as session:
        assert session.scalar(select(func.count(Attachment.id))) == 1
    run.forget_person(rt, JANE, "cli:tester")
    with rt.db.session() as session:
        assert session.scalar(select(func.count(Attachment.id))) == 0
    assert leftovers(rt, [base64.b64encode(f"Jane Doe CV: {ATTACHMENT_PHRASE}".encode()).decode()[:24]]) == []


def test_secret_key_prefers_the_environment(db):
    generated = secret_key(db, env={})
    assert len(generated) >= 32 and secret_key(db, env={}) == generated  # made once, kept
    assert secret_key(db, env={"INTAKE_SECRET_KEY": "from-env, older"}) == b"from-env"
    assert utcnow()  # the clock the audit uses is timezone-aware


@pytest.mark.corpus
def test_forget_on_the_real_corpus(rt):
    """The whole shared corpus loaded, then its busiest sender erased: the address and a phrase
    only they wrote are gone from the files, everyone else's inquiries remain."""
    from intake import mail
    from tests.conftest import corpus_dir

    for path in sorted(p for p in corpus_dir().rglob("*") if p.is_file()):
        raw = path.read_bytes()
        if mail.looks_like_message(raw) is None:
            ingest(rt, raw)
    with rt.db.session() as session:
        busiest = session.execute(
            select(Contact.address, func.count(Inquiry.id)).join(Inquiry, Inquiry.contact_id == Contact.id)
            .group_by(Contact.address).order_by(func.count(Inquiry.id).desc(), Contact.address).limit(1)
        ).one()
        address = busiest.address
        others = {i for i in session.scalars(select(Inquiry.id).join(Contact).where(Contact.address != address))}
        stored = [(m.sender_address, m.text_body or "", m.raw.lower()) for m in session.scalars(select(Message))]
    # A phrase of theirs that appears in nobody else's message, parsed or raw.
    theirs = [words for sender, text, _ in stored if sender == address for words in [text.split()]]
    candidates = [" ".join(words[i:i + 4]) for words in theirs for i in range(0, max(0, len(words) - 4), 4)]
    phrase = next(c for c in candidates if len(c) > 15 and not any(
        c in text or c.lower().encode() in raw for sender, text, raw in stored if sender != address))
    allowed = tuple({s for s, _, _ in stored if s and address in s and s != address})
    run.forget_person(rt, address, "cli:tester")
    found = (leftovers_sqlite(rt.settings.database_url, [address, phrase], allowed=allowed) if rt.db.is_sqlite
             else leftovers_postgres(rt.settings.database_url, [address, phrase], allowed=allowed))
    assert found == []
    with rt.db.session() as session:
        assert set(session.scalars(select(Inquiry.id).where(Inquiry.id.in_(others)))) == others


def test_intake_own_address_is_not_a_person(rt):
    with pytest.raises(footprint.NotAnAddress, match="intake's own address"):
        run.forget_person(rt, "Intake <intake@intake.invalid>", "cli:tester")


def test_groups_that_held_them_are_relabelled_or_dissolved(rt, desk):
    """A group's label is one member's question in their words: an erased member's words go."""
    from intake.models import Delivery, GroupMember, InquiryGroup

    other = ingest(rt, email(sender="Olga Other <olga@example.org>", subject="Stipend amount",
                             body="What is the stipend for the 2027 cohort?")).inquiry_id
    with rt.db.session() as session:
        big = InquiryGroup(category="application", label=f"Can my {PHRASE} count?", size=3)
        small = InquiryGroup(category="application", label=f"Is the {PHRASE} ok?", size=2)
        session.add_all([big, small])
        session.flush()
        session.add_all([GroupMember(inquiry_id=desk["jane"], group_id=big.id),
                         GroupMember(inquiry_id=desk["mary"], group_id=big.id),
                         GroupMember(inquiry_id=other, group_id=big.id)])
        ids = (big.id, small.id)
    # Jane's second group: her second inquiry and Bob's.
    second = ingest(rt, email(sender=f"{JANE_NAME} <{JANE}>", subject="Another question",
                              body=f"Is the {PHRASE} ok?")).inquiry_id
    with rt.db.session() as session:
        session.add_all([GroupMember(inquiry_id=desk["bob"], group_id=ids[1]),
                         GroupMember(inquiry_id=second, group_id=ids[1])])
    run.forget_person(rt, JANE, "cli:tester")
    with rt.db.session() as session:
        big, small = session.get(InquiryGroup, ids[0]), session.get(InquiryGroup, ids[1])
        assert big.size == 2 and big.dissolved_at is None and big.label == "What is the stipend for the 2027 cohort?"
        members = set(session.scalars(select(GroupMember.inquiry_id).where(GroupMember.group_id == big.id)))
        assert members == {desk["mary"], other}
        assert session.scalar(select(func.count(Delivery.id)).where(Delivery.key == f"group_card:{big.id}")) == 1
    assert small.dissolved_at is not None and small.size == 0  # only Bob was left
    assert small.label == "Hosting two fellows at the city"  # Bob's subject (his body asks no question)
    assert leftovers(rt, [PHRASE]) == []

"""The domain: storing, deduplicating, threading and the staff lifecycle, on both databases."""

from __future__ import annotations

import datetime as dt
import hashlib
import multiprocessing
from email.utils import format_datetime

import pytest
from sqlalchemy import func, select

from intake import inquiries
from intake.models import Classification, Event, Inquiry, Message, Receipt
from intake.jobs import InlineQueue
from intake.runtime import Runtime

from tests.conftest import REPO


def make_email(
    *,
    sender="Ana Lopez <ana@example.org>",
    subject="How do I apply?",
    body="Hello, how do I apply to the fellowship? Thanks, Ana",
    message_id="<m1@example.org>",
    in_reply_to=None,
    references=None,
    to="fellowship@civicfellows.example",
    cc=None,
    extra="",
) -> bytes:
    lines = [f"From: {sender}", f"To: {to}"]
    if cc:
        lines.append(f"Cc: {cc}")
    lines += [f"Subject: {subject}", "Date: Mon, 16 Nov 2026 09:12:44 -0500"]
    if message_id:
        lines.append(f"Message-ID: {message_id}")
    if in_reply_to:
        lines.append(f"In-Reply-To: {in_reply_to}")
    if references:
        lines.append(f"References: {references}")
    if extra:
        lines.append(extra.rstrip("\n"))
    lines += ["MIME-Version: 1.0", 'Content-Type: text/plain; charset="utf-8"', "", body, ""]
    return "\r\n".join(lines).encode("utf-8")


def ingest(rt, raw: bytes, provider="test"):
    """Store and process in the domain alone (the jobs that follow are the pipeline's business)."""
    with rt.db.session() as session:
        stored = inquiries.store_raw(session, raw, provider=provider)
    if stored.duplicate:
        return "duplicate", stored
    with rt.db.session() as session:
        return inquiries.process_message(session, rt, stored.message_id), stored


def test_raw_bytes_are_kept_byte_exact(rt):
    raw = make_email() + b"\xff\xfe trailing junk \x00 kept as is"
    result, stored = ingest(rt, raw)
    with rt.db.session() as session:
        message = session.get(Message, stored.message_id)
        assert message.raw == raw
        assert message.sha256 == hashlib.sha256(raw).hexdigest()
        assert message.size == len(raw)
        receipt = session.scalars(select(Receipt).where(Receipt.message_id == message.id)).one()
        assert receipt.outcome == "stored"


def test_byte_identical_redelivery_is_a_duplicate_and_gets_a_receipt(rt):
    raw = make_email()
    first, _ = ingest(rt, raw)
    assert first.status == "new"
    status, stored = ingest(rt, raw)  # a provider's retry re-sends the same bytes
    assert status == "duplicate"
    assert stored.inquiry_id == first.inquiry_id
    with rt.db.session() as session:
        assert session.scalar(select(func.count(Message.id)).where(Message.direction == "inbound")) == 1
        outcomes = sorted(session.scalars(select(Receipt.outcome)))
        assert outcomes == ["duplicate", "stored"]


def test_store_many_stores_each_new_message_once_in_order_with_its_receipt(rt):
    """`intake ingest`'s chunk store: new bytes stored, bytes stored before and bytes repeated in
    the same call are duplicates of the one row, every delivery has its receipt, all in three
    statements."""
    from sqlalchemy import event

    earlier, _ = ingest(rt, make_email(message_id="<before@example.org>"))
    raws = [make_email(message_id=f"<many-{n}@example.org>", body=f"Question {n}") for n in range(3)]
    deliveries = [(raws[0], "a"), (make_email(message_id="<before@example.org>"), "b"), (raws[1], "c"),
                  (raws[0], "d"), (raws[2], "e")]
    statements = []
    event.listen(rt.db.engine, "before_cursor_execute", lambda conn, cur, stmt, *a: statements.append(stmt))
    with rt.db.session() as session:
        stored = inquiries.store_many(session, deliveries, provider="cli")
    assert [s.duplicate for s in stored] == [False, True, False, True, False]
    assert stored[1].inquiry_id == earlier.inquiry_id and stored[3].message_id == stored[0].message_id
    assert len({s.message_id for s in stored}) == 4
    assert len([s for s in statements if not s.startswith(("BEGIN", "COMMIT"))]) == 3
    with rt.db.session() as session:
        by_id = {m.id: m for m in session.scalars(select(Message).where(Message.direction == "inbound"))}
        assert len(by_id) == 4 and by_id[stored[4].message_id].raw == raws[2]
        assert by_id[stored[0].message_id].message_id == "many-0@example.org"  # peeked, normalized
        receipts = session.execute(select(Receipt.provider_event_id, Receipt.outcome, Receipt.message_id)
                                   .where(Receipt.provider == "cli").order_by(Receipt.id)).all()
    assert [(r.provider_event_id, r.outcome, r.message_id) for r in receipts] == [
        (event_id, "duplicate" if s.duplicate else "stored", s.message_id)
        for (_, event_id), s in zip(deliveries, stored)]


def test_different_messages_sharing_a_message_id_are_all_kept(rt):
    """Contact forms and some mailers reuse one Message-ID for different messages: each is mail."""
    results = []
    for n in range(5):
        raw = make_email(sender=f"Person {n} <p{n}@example.org>", subject=f"Question {n}",
                         body=f"Different question number {n}", message_id="<form@contact.example>")
        status, _ = ingest(rt, raw)
        results.append(status)
    assert "duplicate" not in results
    assert {r.status for r in results} == {"new"}
    assert len({r.inquiry_id for r in results}) == 5
    with rt.db.session() as session:
        assert session.scalar(select(func.count(Message.id)).where(Message.direction == "inbound")) == 5
        detail = inquiries.inquiry_detail(session, results[0].inquiry_id)
    # `intake show` says the Message-ID is shared, so nobody mistakes one for the other.
    assert detail["messages"][0]["message_id_shared_with"] == 4


def test_same_message_id_from_the_same_sender_threads_by_the_normal_rules(rt):
    first, _ = ingest(rt, make_email())
    second, _ = ingest(rt, make_email(body="Sorry, one more thing: is it remote?"))
    assert second.status == "follow-up"
    assert second.inquiry_id == first.inquiry_id


def test_without_message_id_the_sha256_dedupes(rt):
    raw = make_email(message_id=None)
    first, _ = ingest(rt, raw)
    assert first.status == "new"
    status, _ = ingest(rt, raw)
    assert status == "duplicate"
    other, _ = ingest(rt, make_email(message_id=None, body="A different question entirely."))
    assert other != "duplicate"


def _store_in_process(url: str, raw: bytes, barrier, out) -> None:
    from intake.config import Settings
    from intake.db import Database

    db = Database(Settings.from_env({"DATABASE_URL": url}).database_url)
    barrier.wait()
    with db.session() as session:
        stored = inquiries.store_raw(session, raw, provider="race")
    out.put(stored.duplicate)
    db.dispose()


def test_two_processes_storing_the_same_message_store_it_once(db_url, db):
    raw = make_email(message_id="<race@example.org>")
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_store_in_process, args=(db_url, raw, barrier, out)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    results = sorted(out.get(timeout=5) for _ in procs)
    assert results == [False, True, True, True]
    with db.session() as session:
        assert session.scalar(select(func.count(Message.id)).where(Message.direction == "inbound")) == 1
        assert session.scalar(select(func.count(Receipt.id))) == 4


def test_reply_with_in_reply_to_from_the_contact_is_a_follow_up(rt):
    first, _ = ingest(rt, make_email())
    reply = make_email(
        subject="Something else entirely",
        message_id="<m2@example.org>",
        in_reply_to="<m1@example.org>",
        references="<m1@example.org>",
        body="One more question about references.",
    )
    second, _ = ingest(rt, reply)
    assert second.status == "follow-up"
    assert second.inquiry_id == first.inquiry_id


def test_a_stranger_quoting_a_message_id_does_not_join(rt):
    first, _ = ingest(rt, make_email())
    stranger = make_email(
        sender="Mallory <mallory@evil.example>",
        subject="Re: How do I apply?",
        message_id="<x1@evil.example>",
        in_reply_to="<m1@example.org>",
    )
    second, _ = ingest(rt, stranger)
    assert second.status == "new"
    assert second.inquiry_id != first.inquiry_id


def test_a_participant_on_cc_may_join_by_reference(rt):
    first, _ = ingest(rt, make_email(cc="Bo Chen <bo.chen@example.org>"))
    colleague = make_email(
        sender="Bo Chen <BO.CHEN@example.org>",
        subject="Re: How do I apply?",
        message_id="<bo1@example.org>",
        in_reply_to="<m1@example.org>",
    )
    second, _ = ingest(rt, colleague)
    assert second.status == "follow-up"
    assert second.inquiry_id == first.inquiry_id


@pytest.mark.parametrize("prefix", ["Re:", "RE[2]:", "AW: Fwd:", "SV:", "Re: RE:"])
def test_same_sender_and_subject_threads_without_references(rt, prefix):
    first, _ = ingest(rt, make_email())
    again = make_email(subject=f"{prefix} How do I apply?", message_id="<m9@example.org>")
    second, _ = ingest(rt, again)
    assert second.status == "follow-up"
    assert second.inquiry_id == first.inquiry_id


def test_subject_fallback_expires_after_30_days(rt):
    first, _ = ingest(rt, make_email())
    with rt.db.session() as session:
        inquiry = session.get(Inquiry, first.inquiry_id)
        inquiry.last_message_at = inquiry.last_message_at - dt.timedelta(days=31)
    later, _ = ingest(rt, make_email(subject="Re: How do I apply?", message_id="<late@example.org>"))
    assert later.status == "new"


def test_ticket_token_in_subject_joins_for_the_contact(rt):
    first, _ = ingest(rt, make_email())
    token = make_email(subject=f"Totally new words [#{first.inquiry_id}]", message_id="<t1@example.org>")
    second, _ = ingest(rt, token)
    assert second.status == "follow-up"
    assert second.inquiry_id == first.inquiry_id


def test_follow_up_reopens_a_closed_inquiry(rt):
    first, _ = ingest(rt, make_email())
    with rt.db.session() as session:
        inquiries.close(session, first.inquiry_id, "U1")
    ingest(rt, make_email(subject="Re: How do I apply?", message_id="<m3@example.org>"))
    with rt.db.session() as session:
        inquiry = session.get(Inquiry, first.inquiry_id)
        assert inquiry.status == "open"
        assert inquiry.closed_at is None
        kinds = [e.kind for e in inquiry.events]
        assert kinds[-2:] == ["closed", "follow_up"]
        # The follow-up says it reopened the inquiry (its thread line shows that).
        assert inquiry.events[-1].detail["reopened"] is True


def test_unparseable_message_is_kept_and_listed(rt):
    # Declares a header block but is binary junk after a plausible first line.
    raw = b"Subject: hi\r\nContent-Type: multipart/mixed\r\n\r\n" + bytes(range(256)) * 4
    result, stored = ingest(rt, raw)
    assert result.status in ("new", "unparseable")
    with rt.db.session() as session:
        listed = inquiries.list_inquiries(session)
        assert [i.id for i in listed] == [result.inquiry_id]
        message = session.get(Message, stored.message_id)
        assert message.raw == raw


def test_processing_twice_is_idempotent(rt):
    result, stored = ingest(rt, make_email())
    with rt.db.session() as session:
        again = inquiries.process_message(session, rt, stored.message_id)
    assert (again.status, again.inquiry_id) == ("new", result.inquiry_id)
    with rt.db.session() as session:
        assert session.scalar(select(func.count(Inquiry.id))) == 1
        assert session.scalar(select(func.count(Classification.id))) == 1


def test_new_inquiry_is_classified_with_reasons_and_language(rt):
    result, _ = ingest(rt, (REPO / "examples" / "02-city-partnership.eml").read_bytes())
    with rt.db.session() as session:
        inquiry = session.get(Inquiry, result.inquiry_id)
        assert inquiry.category == "partnership"
        assert inquiry.language == "en"
        label = inquiry.classifications[0]
        assert label.source in ("model", "rule")
        assert label.reasons


def test_automated_mail_is_closed_quietly(rt):
    result, _ = ingest(rt, (REPO / "examples" / "04-out-of-office.eml").read_bytes())
    with rt.db.session() as session:
        inquiry = session.get(Inquiry, result.inquiry_id)
        assert inquiry.category == "automated"
        assert inquiry.status == "closed"


def test_staff_lifecycle_records_events_and_labels(rt):
    result, _ = ingest(rt, make_email())
    inquiry_id = result.inquiry_id
    with rt.db.session() as session:
        assert inquiries.claim(session, inquiry_id, "U_ANA").kind == "claimed"
        inquiries.assign(session, inquiry_id, "U_BO", "U_ANA")
        inquiries.reclassify(session, inquiry_id, "press", "U_BO", categories=rt.settings.category_names)
        inquiries.add_note(session, inquiry_id, "Called her back; she will write again.", "U_BO")
        inquiries.mark_spam(session, inquiry_id, "U_BO")
        inquiries.mark_not_spam(session, inquiry_id, "U_BO")
        inquiries.close(session, inquiry_id, "U_BO")
        inquiries.reopen(session, inquiry_id, "U_ANA")
    with rt.db.session() as session:
        inquiry = session.get(Inquiry, inquiry_id)
        assert inquiry.assignee == "U_BO"
        assert inquiry.status == "open"
        assert inquiry.category == "press"  # not-spam restores the last real label
        staff_events = [e for e in inquiry.events if not e.kind.startswith("ack_")]
        kinds = [e.kind for e in staff_events]
        assert kinds == ["received", "claimed", "assigned", "reclassified", "note", "marked_spam",
                         "marked_not_spam", "closed", "reopened"]
        assert {e.actor for e in staff_events[1:]} == {"U_ANA", "U_BO"}
        staff = [c for c in inquiry.classifications if c.source == "staff"]
        assert [c.category for c in staff] == ["press", "spam", "press"]
        assert all(c.actor == "U_BO" and c.confidence == 1.0 for c in staff)
        note = [m for m in inquiry.messages if m.kind == "note"][0]
        assert note.direction == "internal" and note.author == "U_BO"


def test_reclassify_refuses_an_unknown_category(rt):
    result, _ = ingest(rt, make_email())
    with rt.db.session() as session, pytest.raises(inquiries.InvalidAction):
        inquiries.reclassify(session, result.inquiry_id, "nonsense", "U1", categories=rt.settings.category_names)


def test_synthesized_message_cannot_inject_headers(rt):
    raw = inquiries.synthesize_message(
        subject="Hello\r\nBcc: victim@example.com",
        body="Logged from a phone call",
        sender_address="caller@example.org\r\nX-Evil: 1",
        sender_name="Caller\nX-Injected: yes",
    )
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    names = [line.split(b":", 1)[0].lower() for line in header_block.split(b"\r\n") if line and not line[:1].isspace()]
    assert b"bcc" not in names and b"x-evil" not in names and b"x-injected" not in names
    result, _ = ingest(rt, raw)
    assert result.status == "new"


def test_search_finds_by_words_in_body_and_subject(rt):
    ingest(rt, make_email())
    ingest(rt, make_email(sender="x@press.example", subject="Podcast", message_id="<p@x>", body="We run a civic podcast."))
    with rt.db.session() as session:
        found = inquiries.search_inquiries(session, "CIVIC podcast")
        assert [i.subject for i in found] == ["Podcast"]


def test_attachments_are_stored_with_their_digest_and_capped_content(rt, settings):
    from intake.models import Attachment
    from tests.conftest import FIXTURES

    raw = (FIXTURES / "mail" / "attachment-rfc2231.eml").read_bytes()
    result, stored = ingest(rt, raw)
    with rt.db.session() as session:
        rows = session.scalars(select(Attachment).where(Attachment.message_id == stored.message_id)).all()
        assert rows, "the fixture has attachments"
        for row in rows:
            assert len(row.sha256) == 64 and row.size >= 0
            if row.content is not None:
                assert hashlib.sha256(row.content).hexdigest() == row.sha256
        names = {row.filename for row in rows}
        assert "Lebenslauf Jürgen – 2026.pdf" in names  # RFC 2231, decoded
        assert not any(name and "/" in name for name in names)  # no path survives into a name

    # Over the configured limit: the digest and size stay, the content lives only in the raw bytes.
    from dataclasses import replace

    small = Runtime(replace(settings, max_attachment_bytes=1), rt.db, queue=InlineQueue())
    again = raw.replace(b"Message-ID: <", b"Message-ID: <second-", 1)
    if again == raw:
        again = b"Message-ID: <second-copy@example.org>\r\n" + raw
    with small.db.session() as session:
        second = inquiries.store_raw(session, again, provider="test")
    with small.db.session() as session:
        inquiries.process_message(session, small, second.message_id)
    with small.db.session() as session:
        capped = session.scalars(select(Attachment).where(Attachment.message_id == second.message_id)).all()
        assert capped and all(row.content is None for row in capped if row.size > 1)

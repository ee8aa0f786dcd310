"""Processing in batches: a deep queue is processed several messages per transaction, with the
same inquiries as one message at a time, and one message that fails never holds up the rest."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event, func, select

from intake import inquiries, pipeline
from intake.models import Delivery, Event, Inquiry, Message
from intake.jobs import InlineQueue
from intake.runtime import Runtime
from tests.conftest import database_url
from tests.test_app_inbound import inbound_settings, sns  # noqa: F401 (fixtures)
from tests.test_inquiries import make_email


def _stream() -> list[bytes]:
    """Mail whose threading depends on what came before it in the same batch."""
    return [
        make_email(sender="Ana <ana@example.org>", subject="How do I apply?", message_id="<a1@x>"),
        make_email(sender="Bob <bob@example.org>", subject="Partnership", message_id="<b1@x>",
                   body="Our city would like to host a fellow next year."),
        # A stranger quoting Bob's message does not join it...
        make_email(sender="Carol <carol@example.org>", subject="Re: Partnership", message_id="<c1@x>",
                   in_reply_to="<b1@x>", body="I saw this thread, can I join?"),
        # ...until Bob copies her in; then her reply joins.
        make_email(sender="Bob <bob@example.org>", subject="Re: Partnership", message_id="<b2@x>",
                   in_reply_to="<b1@x>", cc="carol@example.org", body="Adding Carol from our office."),
        make_email(sender="Carol <carol@example.org>", subject="Re: Partnership", message_id="<c2@x>",
                   in_reply_to="<b2@x>", body="Thanks Bob, here are our dates."),
        # Same sender, same subject, no references: the fallback joins Ana's new inquiry.
        make_email(sender="Ana <ana@example.org>", subject="RE: How do I apply?", message_id="<a2@x>",
                   body="Sorry, one more thing: is there an age limit?"),
        b"no header block here, just words that are not a message\r\n",
        # Eve continues the inquiry she opened before this batch.
        make_email(sender="Eve <eve@example.org>", subject="Re: Visa question", message_id="<e2@x>",
                   in_reply_to="<e1@x>", body="Following up on my visa question."),
    ]


EARLIER = make_email(sender="Eve <eve@example.org>", subject="Visa question", message_id="<e1@x>",
                     body="Do you sponsor visas for international fellows?")


def _store(rt: Runtime, raws: list[bytes]) -> list[int]:
    ids = []
    for raw in raws:
        with rt.db.session() as session:
            ids.append(inquiries.store_raw(session, raw, provider="test").message_id)
    return ids


def _outcome(rt: Runtime, ids: list[int]) -> list[tuple]:
    """Per message: the first message of its inquiry (positions, not ids), its status and
    category, the inquiry's events and deliveries: comparable across two databases."""
    with rt.db.session() as session:
        rows = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids)))}
        outcome = []
        for message_id in ids:
            message = rows[message_id]
            inquiry = session.get(Inquiry, message.inquiry_id)
            first = session.scalar(select(func.min(Message.id)).where(Message.inquiry_id == inquiry.id))
            # Sorted: one message at a time, the inline queue delivers each one's acknowledgment
            # before the next is processed, so events interleave differently; the facts are equal.
            events = sorted(e.kind for e in session.scalars(select(Event).where(Event.inquiry_id == inquiry.id)))
            owed = sorted(d.kind for d in session.scalars(select(Delivery).where(Delivery.inquiry_id == inquiry.id)))
            position = ids.index(first) if first in ids else "earlier"
            outcome.append((position, message.state, message.parse_status, inquiry.status, inquiry.category,
                            events, owed))
        return outcome


@pytest.fixture
def second_rt(request, settings, tmp_path):
    """A runtime on a second fresh database of the same backend."""
    import dataclasses

    from intake.db import Database

    backend = "postgresql" if settings.database_url.startswith("postgresql") else "sqlite"
    (tmp_path / "second").mkdir()
    with database_url(backend, tmp_path / "second") as url:
        db = Database(url)
        yield Runtime(dataclasses.replace(settings, database_url=url), db, queue=InlineQueue())
        db.dispose()


def test_a_batch_threads_exactly_like_one_message_at_a_time(rt, second_rt):
    for runtime in (rt, second_rt):
        pipeline.process_stored(runtime, _store(runtime, [EARLIER])[0])

    one_by_one = _store(rt, _stream())
    for message_id in one_by_one:
        pipeline.process_stored(rt, message_id)

    batched = _store(second_rt, _stream())
    with second_rt.db.read_session() as reader:
        waiting = inquiries.waiting_messages(reader, limit=50)
    assert [message_id for message_id, _, _ in waiting] == batched
    results = pipeline.process_batch(second_rt, waiting, None)
    assert [r.message_id for r in results] == batched

    expected = _outcome(rt, one_by_one)
    assert _outcome(second_rt, batched) == expected
    # The stream is not trivial: Ana's two messages, Bob's and Carol's thread, Eve's follow-up.
    positions = [row[0] for row in expected]
    assert positions == [0, 1, 2, 1, 1, 0, 6, "earlier"]
    assert expected[6][2] == "unparseable"


def test_a_deep_queue_is_drained_in_batches(rt, monkeypatch):
    monkeypatch.setattr(pipeline, "BATCH", 4)
    ids = _store(rt, [make_email(sender=f"P{n} <p{n}@example.org>", subject=f"Question {n}",
                                 message_id=f"<q{n}@x>") for n in range(10)])
    done = pipeline.process_waiting(rt, ids[7])
    assert sorted(r.message_id for r in done) == ids
    # One transaction per batch (a batch's messages share their processing time): the job's own
    # message with the four oldest, then four, then the last one.
    assert [r.message_id for r in done] == [ids[0], ids[1], ids[2], ids[3], ids[7], ids[4], ids[5], ids[6],
                                            ids[8], ids[9]]
    with rt.db.session() as session:
        stamps = [session.get(Message, r.message_id).processed_at for r in done]
        assert [len(set(stamps[:5])), len(set(stamps[5:9])), len(set(stamps))] == [1, 1, 3]
        assert session.scalar(select(func.count()).select_from(Inquiry)) == 10
        assert session.scalar(select(func.count()).select_from(Message).where(Message.state == "received")) == 0


def test_a_job_for_a_message_already_processed_here_asks_the_database_nothing(rt):
    ids = _store(rt, [make_email(sender=f"P{n} <p{n}@example.org>", subject=f"Question {n}",
                                 message_id=f"<r{n}@x>") for n in range(3)])
    assert pipeline.process_message_job(rt, ids[0]) == "processed 3"
    statements = []
    event.listen(rt.db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    assert pipeline.process_message_job(rt, ids[2]) == "processed"
    assert statements == []


def test_one_failing_message_does_not_hold_up_its_batch(rt, monkeypatch):
    """A fault injected into the processing of one message: the batch is retried one message at
    a time, the others are processed, the failure is counted and later batches skip it."""
    ids = _store(rt, [make_email(sender=f"P{n} <p{n}@example.org>", subject=f"Question {n}",
                                 message_id=f"<f{n}@x>") for n in range(4)])
    real_fill = inquiries.processing._fill_message

    def fill(session, message, parsed, limit):
        if parsed.subject == "Question 2":
            raise RuntimeError("injected fault")
        real_fill(session, message, parsed, limit)

    monkeypatch.setattr(inquiries.processing, "_fill_message", fill)
    done = pipeline.process_waiting(rt)
    assert sorted(r.message_id for r in done) == [ids[0], ids[1], ids[3]]
    with rt.db.session() as session:
        stuck = session.get(Message, ids[2])
        assert (stuck.state, stuck.attempts) == ("received", 1)
        assert "injected fault" in stuck.last_error
    # Asked for by id (its job's retry, the sweeper), it is tried and raised again, and counted.
    with pytest.raises(RuntimeError):
        pipeline.process_waiting(rt, ids[2])
    with rt.db.session() as session:
        assert session.get(Message, ids[2]).attempts == 2
        session.get(Message, ids[2]).attempts = inquiries.processing.MAX_BATCH_ATTEMPTS
    assert pipeline.process_waiting(rt) == []  # batches no longer pick it up
    monkeypatch.setattr(inquiries.processing, "_fill_message", real_fill)
    assert [r.message_id for r in pipeline.process_waiting(rt, ids[2])] == [ids[2]]


def test_a_burst_of_webhooks_rings_for_processing_once_per_window_and_loses_nothing(db, inbound_settings, sns,
                                                                                    monkeypatch):
    """Ten messages stored within the doorbell's window: one job at once, one trailing job after
    the window; running them processes all ten."""
    from intake.app import create_app
    from intake.queue import HueyQueue
    from tests.fixtures.inbound import helpers as h
    from tests.test_app_inbound import mime_request

    queue = HueyQueue(inbound_settings, name="doorbelltest")
    rt = Runtime(inbound_settings, db, queue=queue)
    monkeypatch.setattr(pipeline._Doorbell, "WINDOW", 2.0)  # the ten requests fit in it on a busy machine
    client = create_app(rt=rt, sns_fetch=sns.fetch).test_client()
    for n in range(10):
        path, kwargs = mime_request(make_email(sender=f"B{n} <b{n}@example.org>", subject=f"Burst {n}",
                                               message_id=f"<burst{n}@x>"), sns)
        assert client.post(path, **kwargs).status_code == 200
    assert queue.huey.pending_count() == 1
    deadline = time.monotonic() + 10
    while queue.huey.pending_count() < 2:
        assert time.monotonic() < deadline, "no trailing ring"
        time.sleep(0.05)
    for task in queue.huey.pending():
        queue.huey.execute(task)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Message).where(Message.state == "processed")) == 10
        assert session.scalar(select(func.count()).select_from(Inquiry)) == 10


def _blocking_work(seen: list[list[int]], started: threading.Event, release: threading.Event):
    """Work that records its first ids and, the first time, holds the drainer until released."""
    def work(first_ids: list[int]) -> list[int]:
        seen.append(list(first_ids))
        if len(seen) == 1:
            started.set()
            assert release.wait(10)
        return list(first_ids)
    return work


def test_a_drain_asked_for_while_another_thread_drains_is_left_to_that_thread():
    """A worker's second consumer thread does not parse the batch the first is draining: its job
    returns at once, and the running drainer takes its message up before letting go."""
    drainer = pipeline._Drainer(None)
    seen: list[list[int]] = []
    started, release = threading.Event(), threading.Event()
    work = _blocking_work(seen, started, release)
    first: dict[str, list[int]] = {}
    running = threading.Thread(target=lambda: first.setdefault("done", drainer.drain(work, 1)))
    running.start()
    assert started.wait(10)
    assert drainer.drain(work, 2) == []  # left to the running drainer
    release.set()
    running.join(10)
    assert seen == [[1], [2]] and first["done"] == [1, 2]


def test_an_inline_drain_waits_for_the_running_one_and_then_runs_its_own():
    """With jobs run inline the caller expects its message processed on return: it waits."""
    drainer = pipeline._Drainer(None)
    seen: list[list[int]] = []
    started, release = threading.Event(), threading.Event()
    work = _blocking_work(seen, started, release)
    running = threading.Thread(target=lambda: drainer.drain(work, 1))
    running.start()
    assert started.wait(10)
    waited: dict[str, list[int]] = {}
    inline = threading.Thread(target=lambda: waited.setdefault("done", drainer.drain(work, 2, wait=True)))
    inline.start()
    time.sleep(0.2)
    assert "done" not in waited  # still waiting for the running drainer
    release.set()
    running.join(10)
    inline.join(10)
    assert 2 in waited["done"]

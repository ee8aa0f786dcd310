"""The huey queue: jobs by name, retries with exponential backoff, periodic jobs, SQLite and Redis.

In-process tests drive huey's own execution path (``dequeue`` + ``execute``) rather than a
consumer thread, so retries and schedules are observed exactly; the consumer itself runs in the
process tests (``test_serve_process.py``) and in the Redis worker test here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import subprocess
import sys
import uuid

import pytest
import redis
from sqlalchemy import select

from intake import inquiries
from intake.jobs import REGISTRY, job, periodic
from intake.models import Message
from intake.queue import HueyQueue, every, make_huey
from intake.runtime import Runtime

from tests.fixtures.inbound import helpers as h

REDIS_URL = os.environ.get("INTAKE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

CALLS: list[tuple] = []
FAILURES_LEFT: dict[str, int] = {}


@job("testq.record", retries=3, retry_delay=2)
def record_job(rt, value):
    """Fails while FAILURES_LEFT says so, then records the call."""
    if FAILURES_LEFT.get(value, 0) > 0:
        FAILURES_LEFT[value] -= 1
        raise RuntimeError(f"planned failure for {value}")
    CALLS.append((value, rt.settings.database_url))


@pytest.fixture(autouse=True)
def _reset():
    CALLS.clear()
    FAILURES_LEFT.clear()


@pytest.fixture
def queue_rt(settings, db):
    queue = HueyQueue(settings, name=f"qt-{uuid.uuid4().hex[:8]}")
    return Runtime(settings, db, queue=queue)


def run_pending(queue: HueyQueue) -> int:
    """Execute every task that is ready now, as a consumer would; returns how many ran."""
    ran = 0
    while (task := queue.huey.dequeue()) is not None:
        queue.huey.execute(task)
        ran += 1
    return ran


def test_every_registered_job_is_a_huey_task(queue_rt):
    assert set(REGISTRY) <= set(queue_rt.queue.tasks)
    assert "pipeline.process_message" in queue_rt.queue.tasks
    periodic = {t.__name__ for t in queue_rt.queue.huey._registry._periodic_tasks}
    assert "pipeline.sweep" in periodic


def test_enqueue_runs_the_job_with_the_runtime(queue_rt):
    record_job.enqueue(queue_rt, "a")
    assert queue_rt.queue.huey.pending_count() == 1
    assert run_pending(queue_rt.queue) == 1
    assert CALLS == [("a", queue_rt.settings.database_url)]


def test_retries_back_off_exponentially(queue_rt):
    FAILURES_LEFT["b"] = 2
    huey = queue_rt.queue.huey
    record_job.enqueue(queue_rt, "b")
    delays = []
    for _ in range(2):
        run_pending(queue_rt.queue)
        [scheduled] = huey.scheduled()
        delays.append((scheduled.eta - dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).total_seconds())
        # Make the retry due now and move it onto the queue, as the consumer's scheduler does.
        huey.storage.flush_schedule()
        scheduled.eta = None
        huey.enqueue(scheduled)
    assert CALLS == []
    run_pending(queue_rt.queue)
    assert [c[0] for c in CALLS] == ["b"]
    assert 1.5 < delays[0] <= 2.1 and 3.5 < delays[1] <= 4.1  # 2 s, then doubled


def test_delayed_enqueue_is_scheduled(queue_rt):
    record_job.enqueue(queue_rt, "later", delay=60)
    task = queue_rt.queue.huey.dequeue()  # the consumer moves it to the schedule until its eta
    due_in = (task.eta - dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).total_seconds()
    assert 58 < due_in <= 60
    assert CALLS == []


def test_unknown_job_is_an_error(queue_rt):
    with pytest.raises(LookupError, match="no job called"):
        queue_rt.queue.enqueue("nope.missing")


def test_a_job_is_an_importable_handle_registered_by_name(queue_rt):
    """``@job`` returns a handle: callable as the function, enqueued through the runtime's queue
    under its registered name (the name is what crosses to a worker process)."""
    from intake.jobs import JobHandle
    from intake.pipeline import process_message_job, sweep

    assert isinstance(record_job, JobHandle) and REGISTRY["testq.record"] is record_job
    assert REGISTRY[process_message_job.name] is process_message_job
    assert sweep.every_seconds and REGISTRY["pipeline.sweep"] is sweep
    record_job(queue_rt, "called")  # runs here, not on the queue
    assert CALLS == [("called", queue_rt.settings.database_url)]
    assert queue_rt.queue.huey.pending_count() == 0
    record_job.enqueue(queue_rt, "queued")
    assert [t.name for t in queue_rt.queue.huey.pending()] == ["testq.record"]


def test_every_validator():
    five = every(300)
    assert five(dt.datetime(2026, 1, 1, 10, 5)) and not five(dt.datetime(2026, 1, 1, 10, 6))
    assert all(every(30)(dt.datetime(2026, 1, 1, 10, m)) for m in range(60))


@periodic("testq.nightly", every_seconds=24 * 3600)
def nightly_job(rt):
    CALLS.append(("nightly", None))


def test_periodic_jobs_are_enqueued_at_consumer_start(queue_rt):
    """A restarted worker sweeps at once; jobs due this minute are left to huey's scheduler."""
    queue_rt.queue.enqueue_periodic_now()
    names = []
    while (task := queue_rt.queue.huey.dequeue()) is not None:
        names.append(type(task).__name__)
    if dt.datetime.utcnow().strftime("%H:%M") != "00:00":
        assert "testq.nightly" in names
    assert "pipeline.sweep" not in names  # every minute: the scheduler enqueues it at start


def test_sqlite_queue_is_shared_between_instances(settings, db):
    """The web process enqueues, a worker process dequeues: same file, different objects."""
    name = f"qt-{uuid.uuid4().hex[:8]}"
    web = HueyQueue(settings, name=name)
    worker = HueyQueue(settings, name=name)
    Runtime(settings, db, queue=worker)
    web.enqueue("testq.record", "shared")
    assert run_pending(worker) == 1
    assert CALLS[0][0] == "shared"


# --- Redis -------------------------------------------------------------------------------------


def redis_available() -> None:
    """Skip (fail under CI) when the test Redis does not answer."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} is not reachable: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable: {exc}")


@pytest.fixture
def redis_settings(settings):
    redis_available()
    return dataclasses.replace(settings, redis_url=REDIS_URL)


@pytest.fixture
def redis_name(redis_settings):
    name = f"intake-test-{uuid.uuid4().hex[:10]}"
    yield name
    # huey drops the hyphens from the name in its keys: let huey find them.
    make_huey(redis_settings, name).flush()


def huey_keys(name: str) -> list[bytes]:
    """Every Redis key huey made for the queue ``name`` (its keys carry the name without "-")."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "", name)
    return list(redis.Redis.from_url(REDIS_URL).scan_iter(f"huey.*{cleaned}*"))


def test_the_webhook_benchmark_leaves_no_jobs_in_redis(redis_settings, redis_name, db):
    """bench/webhook.py deleted keys matching the hyphenated name, which huey never uses."""
    from bench.webhook import clear_queue

    web = HueyQueue(redis_settings, name=redis_name)
    web.enqueue("testq.record", "left behind")
    web.enqueue("testq.record", "later", delay=3600)
    assert huey_keys(redis_name)
    clear_queue(REDIS_URL, redis_name)
    assert huey_keys(redis_name) == []


def test_redis_queue_round_trip(redis_settings, redis_name, db):
    web = HueyQueue(redis_settings, name=redis_name)
    worker = HueyQueue(redis_settings, name=redis_name)
    Runtime(redis_settings, db, queue=worker)
    web.enqueue("testq.record", "via-redis")
    web.ping()
    assert web.huey.pending_count() == 1
    assert run_pending(worker) == 1
    assert CALLS[0][0] == "via-redis"


def test_redis_worker_process_runs_the_pipeline(redis_settings, redis_name, db, tmp_path):
    """A real `intake worker` on Redis processes a stored message into an inquiry."""
    with db.session() as session:
        stored = inquiries.store_raw(session, h.fixture_bytes("apply.eml"), provider="test")
    web = HueyQueue(redis_settings, name=redis_name)
    web.enqueue("pipeline.process_message", stored.message_id)
    env = dict(
        os.environ,
        DATABASE_URL=redis_settings.database_url,
        REDIS_URL=REDIS_URL,
        INTAKE_QUEUE_NAME=redis_name,
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "intake.serve", "worker", "--workers", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.log", "wb"),
    )
    try:
        def processed():
            with db.session() as session:
                return session.scalar(select(Message.state).where(Message.id == stored.message_id)) == "processed"

        h.wait_for(processed, timeout=90, what="the worker to process the message")
        with db.session() as session:
            assert session.scalar(select(Message.inquiry_id).where(Message.id == stored.message_id)) is not None
    finally:
        worker.terminate()
        worker.wait(20)

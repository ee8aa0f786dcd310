"""Real processes: `intake serve` (gunicorn + embedded consumer), `intake worker`, and faults.

Each test starts its own server or worker on a free port with the parametrized database (SQLite
file or an isolated PostgreSQL schema) and stops it at the end. Faults are real: a consumer or
worker killed with SIGKILL, PostgreSQL backends terminated with ``pg_terminate_backend`` between
and during requests (the machine's PostgreSQL itself is never stopped).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select, text, update

from intake.db import Database
from intake.models import Classification, Inquiry, Message, Receipt
from intake.queue import HueyQueue, make_huey
from intake.config import Settings

from tests.conftest import REPO
from tests.fixtures.inbound import helpers as h
from tests.test_app_inbound import mailgun_request, mime_request, postmark_request, sendgrid_request

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc, so no extra dependency)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def base_env(db_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTAKE_", "SLACK_", "REDIS_URL", "SMTP_"))}
    env.update(
        DATABASE_URL=db_url,
        INTAKE_QUEUE_PATH=str(tmp_path / "queue.db"),
        INBOUND_BASIC_AUTH=h.BASIC_AUTH,
        MAILGUN_SIGNING_KEY=h.MAILGUN_KEY,
        INBOUND_HMAC_SECRET=h.HMAC_SECRET,
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}"

    def post(self, path: str, kwargs: dict) -> requests.Response:
        headers = dict(kwargs.get("headers") or {})
        headers["Content-Type"] = kwargs["content_type"]
        return requests.post(self.url + path, data=kwargs["data"], headers=headers, timeout=30)

    def consumer_pids(self) -> list[int]:
        return [pid for pid in children(self.proc.pid) if "intake.serve worker" in cmdline(pid)]

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str], tmp_path: Path, port: int, name: str = "server"):
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    server = Server(proc, port, log)
    try:
        def healthy():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{server.logs()}")
            try:
                return requests.get(server.url + "/healthz", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        h.wait_for(healthy, timeout=60, what=f"{name} to answer /healthz")
        yield server
    finally:
        kids = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in kids:  # nothing may outlive the server
            h.wait_for(lambda: not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid), timeout=15,
                       what=f"child {pid} to exit")


def _state(pid: int) -> str:
    try:
        return "zombie" if (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] == "Z" else "alive"
    except OSError:
        return "gone"


def serve(db_url: str, tmp_path: Path, **env: str):
    port = free_port()
    command = [sys.executable, "-m", "intake.serve", "serve", "--port", str(port), "--workers", "2"]
    return running(command, base_env(db_url, tmp_path, **env), tmp_path, port)


def message(n: int, subject: str = "How do I apply?") -> bytes:
    return (
        f"From: Applicant {n} <applicant{n}@example.org>\r\nTo: fellowship@intake.example.org\r\n"
        f"Subject: {subject} ({n})\r\nMessage-ID: <serve-{n}-{uuid.uuid4().hex[:8]}@example.org>\r\n"
        f"Date: Tue, 03 Nov 2026 09:12:00 -0500\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello, what is the deadline to apply for the fellowship? Thanks, applicant {n}\r\n"
    ).encode()


def processed_count(db: Database) -> int:
    with db.session() as session:
        return session.scalar(
            select(func.count()).select_from(Message).where(Message.direction == "inbound", Message.state == "processed")
        )


@pytest.fixture
def database(db_url):
    database = Database(db_url)
    yield database
    database.dispose()


def test_serve_scenario_every_provider_end_to_end(db_url, database, tmp_path):
    """One command is a working system: webhooks answer, the embedded worker processes."""
    with serve(db_url, tmp_path) as server:
        assert len(server.consumer_pids()) == 1, server.logs()
        builders = [sendgrid_request, mailgun_request, postmark_request, mime_request]
        for n, build in enumerate(builders):
            path, kwargs = build(message(n), None)
            response = server.post(path, kwargs)
            assert response.status_code == 200, (path, response.text)
            assert response.json()["status"] == "stored"
        # A provider retrying one delivery three times: one message, one inquiry.
        retried = message(99)
        for _ in range(3):
            path, kwargs = mime_request(retried, None)
            assert server.post(path, kwargs).status_code == 200
        # Refusals over real HTTP too.
        path, kwargs = mime_request(message(100), None)
        kwargs["headers"] = {"X-Intake-Signature": "sha256=" + "0" * 64}
        assert server.post(path, kwargs).status_code == 401
        assert requests.head(server.url + "/inbound/mime", timeout=5).status_code == 200
        h.wait_for(lambda: processed_count(database) == 5, timeout=120, what="5 processed messages")
        with database.session() as session:
            assert session.scalar(select(func.count()).select_from(Inquiry)) == 5
            assert session.scalar(select(func.count()).select_from(Message).where(Message.direction == "inbound")) == 5


def test_embedded_consumer_is_restarted_after_sigkill(db_url, database, tmp_path):
    with serve(db_url, tmp_path) as server:
        [first] = server.consumer_pids()
        os.kill(first, signal.SIGKILL)
        h.wait_for(lambda: server.consumer_pids() and server.consumer_pids() != [first], timeout=20,
                   what="a new consumer")
        path, kwargs = mime_request(message(1), None)
        assert server.post(path, kwargs).status_code == 200
        h.wait_for(lambda: processed_count(database) == 1, timeout=90, what="the message to be processed")


def test_procfile_web_command_serves_the_app(db_url, tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
               "--no-control-socket", "intake.app:create_app()"]
    with running(command, base_env(db_url, tmp_path), tmp_path, port, name="gunicorn") as server:
        path, kwargs = mime_request(message(7), None)
        response = server.post(path, kwargs)
        assert response.status_code == 200 and response.json()["status"] == "stored"


# --- faults ------------------------------------------------------------------------------------


def _pg_only(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("terminating server backends is a PostgreSQL fault")


def test_database_backend_killed_between_and_during_requests(db_url, database, tmp_path):
    """pg_terminate_backend on the app's connections: the next request reconnects; one caught
    mid-transaction answers 503 and leaves nothing half-stored."""
    _pg_only(db_url)
    app_name = f"intake-fault-{uuid.uuid4().hex[:8]}"
    app_url = db_url + f"&application_name={app_name}"
    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
    locking = create_engine(db_url)
    terminate = text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :name"
    )
    try:
        with serve(app_url, tmp_path, INTAKE_QUEUE_PATH=str(tmp_path / "q.db")) as server:
            path, kwargs = mime_request(message(1), None)
            assert server.post(path, kwargs).status_code == 200
            with admin.connect() as conn:
                assert conn.execute(terminate, {"name": app_name}).scalar() >= 1
            # Between requests: the pooled connection is dead; pre-ping replaces it.
            path, kwargs = mime_request(message(2), None)
            assert server.post(path, kwargs).status_code == 200

            # During a request: hold the receipts table so the request blocks after inserting
            # its message row, then kill its backend.
            doomed = message(3)
            result: dict[str, requests.Response] = {}
            with locking.connect() as locker, admin.connect() as killer:
                tx = locker.begin()
                locker.execute(text("LOCK TABLE receipts IN ACCESS EXCLUSIVE MODE"))
                path, kwargs = mime_request(doomed, None)
                thread = threading.Thread(target=lambda: result.setdefault("r", server.post(path, kwargs)))
                thread.start()
                waiting = text(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = :name AND wait_event_type = 'Lock'"
                )
                pid = h.wait_for(lambda: killer.execute(waiting, {"name": app_name}).scalar(), timeout=20,
                                 what="the request to block on the lock")
                killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                thread.join(30)
                tx.rollback()
            assert result["r"].status_code == 503, result["r"].text
            assert "database is unavailable" in result["r"].json()["error"]
            with database.session() as session:
                digest = hashlib.sha256(doomed).hexdigest()
                assert session.scalar(select(func.count()).select_from(Message).where(Message.sha256 == digest)) == 0
                assert session.scalar(select(func.count()).select_from(Receipt).where(Receipt.outcome == "stored")) == 2
            # The provider's retry then succeeds.
            path, kwargs = mime_request(doomed, None)
            assert server.post(path, kwargs).status_code == 200
    finally:
        admin.dispose()
        locking.dispose()


def test_worker_killed_mid_job_finishes_it_exactly_once_after_restart(db_url, database, tmp_path):
    """SIGKILL while pipeline.process_message runs; the restarted worker's sweep finishes it once."""
    from intake import inquiries

    settings = Settings.from_env({"DATABASE_URL": db_url, "INTAKE_QUEUE_PATH": str(tmp_path / "queue.db")})
    with database.session() as session:
        stored = inquiries.store_raw(session, message(1), provider="test")
    queue = HueyQueue(settings)
    queue.enqueue("pipeline.process_message", stored.message_id)
    env = base_env(db_url, tmp_path)
    command = [sys.executable, "-m", "intake.serve", "worker", "--workers", "1"]
    locker_engine = create_engine(db_url) if not database.is_sqlite else None

    # Hold a lock the job needs, so it is caught mid-job (dequeued, running, not committed).
    lock_conn = (locker_engine or database.engine).connect()
    lock_conn.begin()  # on SQLite, db.py makes this BEGIN IMMEDIATE: the write lock
    if not database.is_sqlite:
        lock_conn.execute(text("LOCK TABLE inquiries IN ACCESS EXCLUSIVE MODE"))
    worker = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=open(tmp_path / "w1.log", "wb"),
                              stderr=subprocess.STDOUT)

    def job_taken() -> bool:
        return not any(type(t).__name__ == "pipeline.process_message" for t in queue.huey.pending())

    try:
        h.wait_for(job_taken, timeout=60, what="the worker to take the job")
        time.sleep(1.0)  # well inside the job, blocked on our lock
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        lock_conn.rollback()
        lock_conn.close()
        if locker_engine is not None:
            locker_engine.dispose()
    with database.session() as session:
        row = session.get(Message, stored.message_id)
        assert row.state == "received"
        assert session.scalar(select(func.count()).select_from(Inquiry)) == 0
        # Age the row past the sweeper's "stuck" threshold instead of waiting for it.
        row.created_at = row.created_at - dt.timedelta(minutes=10)
    worker = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=open(tmp_path / "w2.log", "wb"),
                              stderr=subprocess.STDOUT)
    try:
        h.wait_for(lambda: processed_count(database) == 1, timeout=120, what="the restarted worker to finish the job")
        time.sleep(1.5)  # give a duplicate run, if there were one, the time to show
        with database.session() as session:
            assert session.scalar(select(func.count()).select_from(Inquiry)) == 1
            assert session.scalar(select(func.count()).select_from(Classification)) == 1
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def test_serve_with_redis_runs_no_embedded_worker(db_url, tmp_path):
    """With REDIS_URL the web process only enqueues; `intake worker` processes elsewhere."""
    import redis as redis_client

    from tests.test_queue_huey import REDIS_URL

    try:
        redis_client.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis_client.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL} is not reachable: {exc}")
    name = f"intake-test-{uuid.uuid4().hex[:10]}"
    try:
        with serve(db_url, tmp_path, REDIS_URL=REDIS_URL, INTAKE_QUEUE_NAME=name) as server:
            assert server.consumer_pids() == []
            path, kwargs = mime_request(message(1), None)
            assert server.post(path, kwargs).status_code == 200
            settings = Settings.from_env({"DATABASE_URL": db_url, "REDIS_URL": REDIS_URL})
            assert HueyQueue(settings, name=name).huey.pending_count() == 1
    finally:
        # huey drops the hyphens from the name in its keys: let huey find them.
        make_huey(Settings.from_env({"REDIS_URL": REDIS_URL}), name).flush()


def test_embedded_consumer_exits_when_serve_is_killed(db_url, tmp_path):
    """SIGKILL on the gunicorn master leaves no orphaned consumer behind."""
    with serve(db_url, tmp_path) as server:
        [consumer] = server.consumer_pids()
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        h.wait_for(lambda: _state(consumer) in ("gone", "zombie"), timeout=20, what="the orphaned consumer to exit")


# --- a newcomer's `intake serve`: one warning each, a clean stop, a fresh folder -----------------


@contextlib.contextmanager
def own_group_server(tmp_path: Path, **extra: str):
    """`intake serve` on a fresh SQLite file, in its own process group (so the test can signal
    the whole group the way Ctrl-C or a platform's shutdown does), logging to a file."""
    port = free_port()
    env = base_env(f"sqlite:///{tmp_path / 'fresh.db'}", tmp_path, **extra)
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "intake.serve", "serve", "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(proc, port, log)
    try:
        h.wait_for(lambda: proc.poll() is None and _healthy(server), timeout=60, what="serve to answer")
        h.wait_for(lambda: "Huey consumer started" in log.read_text(errors="replace"), timeout=60,
                   what="the embedded consumer to start")
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _healthy(server: Server) -> bool:
    try:
        return requests.get(server.url + "/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_serve_on_a_fresh_folder_warns_once_per_missing_credential(tmp_path):
    """Two web workers, one warning per endpoint (it used to be one per worker), and the empty
    SQLite file migrated before the consumer's first sweep (which used to fail on no table)."""
    unset = dict(INBOUND_BASIC_AUTH="", MAILGUN_SIGNING_KEY="", INBOUND_HMAC_SECRET="")
    with own_group_server(tmp_path, **unset) as server:
        assert requests.get(server.url + "/", timeout=5).status_code == 200
        time.sleep(1.0)  # both workers have booted and built their app
        logs = server.log.read_text(errors="replace")
    for endpoint in ("/inbound/sendgrid", "/inbound/mailgun", "/inbound/postmark", "/inbound/ses", "/inbound/mime"):
        assert logs.count(f"no credentials configured for {endpoint} ") == 1, logs
    assert "no such table" not in logs


@pytest.mark.parametrize(("signum", "whole_group"), [
    (signal.SIGTERM, False),  # `kill PID`
    (signal.SIGTERM, True),   # a platform stopping the dyno: every process at once
    (signal.SIGINT, True),    # Ctrl-C in the terminal
])
def test_serve_stops_cleanly(tmp_path, signum, whole_group):
    with own_group_server(tmp_path) as server:
        [consumer] = server.consumer_pids()
        if whole_group:
            os.killpg(server.proc.pid, signum)
        else:
            server.proc.send_signal(signum)
        assert server.proc.wait(30) == 0
        h.wait_for(lambda: _state(consumer) in ("gone", "zombie"), timeout=20, what="the consumer to exit")
        logs = server.log.read_text(errors="replace")
    assert "restarting" not in logs, logs
    assert "Aborted!" not in logs, logs
    assert "Traceback" not in logs, logs
    assert "Consumer exiting" in logs or "job consumer stopped" in logs


def test_worker_logs_each_job_at_info_and_honours_intake_log_level(tmp_path):
    """`intake worker` printed nothing at all: the CLI configured WARNING before it read
    INTAKE_LOG_LEVEL."""
    exe = Path(sys.executable).parent / "intake"
    for level, expect_jobs in (("", True), ("WARNING", False)):
        env = base_env(f"sqlite:///{tmp_path / 'w.db'}", tmp_path, INTAKE_LOG_LEVEL=level)
        log = tmp_path / f"worker-{level or 'default'}.log"
        proc = subprocess.Popen([str(exe), "worker"], env=env, cwd=tmp_path, stdout=open(log, "ab"),
                                stderr=subprocess.STDOUT)
        try:
            # At start the consumer runs the periodic sweep once: a job line at INFO.
            if expect_jobs:
                h.wait_for(lambda: "Executing intake.queue.pipeline.sweep" in log.read_text(errors="replace"),
                           timeout=60, what="a job line")
            else:
                time.sleep(6)
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 0
        text = log.read_text(errors="replace")
        assert ("INFO" in text) is expect_jobs, text
        assert "Aborted!" not in text


def test_readme_curl_command_posts_a_message(db_url, database, tmp_path):
    """The README's curl example, run as written (bash, openssl, curl) against `intake serve`."""
    import shutil

    missing = [tool for tool in ("bash", "openssl", "curl") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{', '.join(missing)} not installed (.ci/run installs them)")
        pytest.skip(f"{', '.join(missing)} not installed")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    snippet = readme.split("<!-- curl-example -->", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    assert "--data-binary @message.eml" in snippet
    (tmp_path / "message.eml").write_bytes(message(5, subject="Sent with curl"))
    with serve(db_url, tmp_path) as server:
        script = snippet.replace("http://127.0.0.1:8000", server.url)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True,
                              text=True, env={**os.environ, "INBOUND_HMAC_SECRET": h.HMAC_SECRET}, timeout=60)
        assert done.returncode == 0, done.stderr
        assert '"status":"stored"' in done.stdout.replace(" ", ""), done.stdout
        h.wait_for(lambda: processed_count(database) == 1, timeout=90, what="the curled message to be processed")
    with database.session() as session:
        assert session.scalar(select(Message.subject)) == "Sent with curl (5)"

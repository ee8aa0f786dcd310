"""The IMAP reader against a real Dovecot: exactly once through crashes, drops and resets.

Dovecot is started once for the module (tests/imap_servers.py); each test reads its own user's
mailbox. Tests that touch the database run on SQLite and PostgreSQL (``db_url``).
"""

from __future__ import annotations

import email.utils
import hashlib
import re
import logging
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from intake.cli import main
from intake.imap import ledger
from intake.imap.connection import ImapSetupError, connect
from intake.imap.oauth import TokenError, TokenSource
from intake.imap.reader import MailboxReader
from intake.imap.runner import MailboxRunner
from intake.imap.settings import ImapSettings, parse_mailbox_url
from intake.models import ImapLedger, Inquiry, Message, Receipt
from tests.conftest import FIXTURES, REPO, corpus_dir
from tests.imap_servers import Dovecot, CuttingProxy, TokenServer

EXAMPLES = sorted((REPO / "examples").glob("0[1-6]-*.eml"))


@pytest.fixture(scope="module")
def tokens():
    server = TokenServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dovecot(tokens):
    server = Dovecot(tokens).start()
    yield server
    server.stop()


@pytest.fixture
def user(dovecot):
    return dovecot.new_user()


def synthetic(n: int, *, tag: str = "", size: int = 0) -> list[bytes]:
    """Distinct small messages (a unique Message-ID each); ``size`` pads the body."""
    pad = ("x" * 76 + "\r\n") * (size // 78)
    return [
        (f"From: Person {i} <person{i}@example.org>\r\nTo: fellows@example.org\r\n"
         f"Subject: Question {tag}{i}\r\nDate: {email.utils.formatdate()}\r\n"
         f"Message-ID: <q{i}.{tag}{os.urandom(4).hex()}@example.org>\r\n\r\n"
         f"How do I apply to the fellowship? ({i})\r\n{pad}").encode()
        for i in range(n)
    ]


def on_server(raw: bytes) -> bytes:
    """The bytes an IMAP server holds after APPEND: lines end in CRLF (imaplib converts)."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", raw)


def mailbox(dovecot, user, **kw):
    return parse_mailbox_url(dovecot.url(user, **kw))


def read_once(rt, dovecot, box, *, ssl_context=None, tokens=None, **options):
    connection = connect(box, tokens, ssl_context=ssl_context)
    try:
        return MailboxReader(rt, box, connection.client, **options).run_pass()
    finally:
        connection.close()


def detached(db, statement) -> list:
    """Rows loaded and detached, readable after the session is gone."""
    with db.read_session() as session:
        rows = session.scalars(statement).all()
        session.expunge_all()
    return rows


def stored_rows(db, provider="imap"):
    return detached(db, select(Message).where(Message.provider == provider).order_by(Message.id))


def stored_count(db) -> int:
    with db.read_session() as session:
        return session.scalar(select(func.count()).select_from(Message).where(Message.provider == "imap"))


def ledger_rows(db, box):
    return detached(db, select(ImapLedger).where(ImapLedger.mailbox == box.name))


def ca_context(dovecot) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(dovecot.cafile))


# --- settings ---------------------------------------------------------------------------------

def test_imap_url_forms():
    box = parse_mailbox_url("imaps://fellows@example.org:p%40ss%2Cword@imap.example.org/INBOX?processed=Done")
    assert (box.host, box.port, box.security) == ("imap.example.org", 993, "tls")
    assert (box.username, box.password, box.folder, box.processed_folder) == (
        "fellows@example.org", "p@ss,word", "INBOX", "Done")
    assert box.keyword == "$Intake" and "p@ss" not in repr(box)
    plain = parse_mailbox_url("imap://a:b@localhost/Some%20Folder?starttls=never")
    assert (plain.port, plain.security, plain.folder) == (143, "none", "Some Folder")
    assert parse_mailbox_url("imap://a:b@host:1143").security == "starttls"
    several = ImapSettings.from_env({"IMAP_URL": "imaps://a:b@h1/INBOX, imap://c:d@h2/Support"})
    assert [m.name for m in several.mailboxes] == ["a@h1:993/INBOX", "c@h2:143/Support"]


@pytest.mark.parametrize("url, complaint", [
    ("pop3://a:b@h/INBOX", "imaps:// or imap://"),
    ("imaps://a:b@h/INBOX?procesed=X", "unknown parameters procesed"),
    ("imaps://a:b@h/INBOX?starttls=never", "only applies to imap://"),
    ("imaps://a@h/INBOX", "needs OAuth2"),
    ("imaps://a:b@h/INBOX?processed=INBOX", "another folder"),
    ("imaps://:b@h/INBOX", "no user name"),
])
def test_imap_url_mistakes_are_explained(url, complaint):
    from intake.config import ConfigError

    with pytest.raises(ConfigError, match=complaint) as info:
        ImapSettings.from_env({"IMAP_URL": url})
    assert ":b@" not in str(info.value)


def test_oauth2_presets_and_mailboxes_without_password():
    env = {"IMAP_URL": "imaps://fellows@example.org@outlook.office365.com/INBOX",
           "IMAP_OAUTH2_CLIENT_ID": "cid", "IMAP_OAUTH2_REFRESH_TOKEN": "rt-secret",
           "IMAP_OAUTH2_CLIENT_SECRET": "cs-secret", "IMAP_OAUTH2_PROVIDER": "microsoft",
           "IMAP_OAUTH2_TENANT": "contoso.onmicrosoft.com"}
    settings = ImapSettings.from_env(env)
    assert settings.mailboxes[0].uses_oauth2
    assert settings.oauth2.token_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    assert "IMAP.AccessAsUser.All" in settings.oauth2.scope
    assert "secret" not in repr(settings)
    google = ImapSettings.from_env({**env, "IMAP_OAUTH2_PROVIDER": "google"}).oauth2
    assert google.token_url == "https://oauth2.googleapis.com/token" and google.scope is None


def test_a_missing_dovecot_skips_locally_and_fails_under_ci(monkeypatch):
    import tests.imap_servers as servers

    monkeypatch.setattr(servers.shutil, "which", lambda _name: None)
    monkeypatch.setattr(servers.os.path, "exists", lambda _path: False)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="dovecot is not installed"):
        servers.require_dovecot()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="dovecot is not installed"):
        servers.require_dovecot()


# --- OAuth2 tokens ----------------------------------------------------------------------------

def test_access_tokens_are_refreshed_before_expiry_and_rotation_is_followed(tokens):
    from intake.imap.settings import OAuth2Client

    server = TokenServer(lifetime=2, rotate_refresh_token=True)
    try:
        client = OAuth2Client(server.client_id, server.client_secret, server.refresh_token,
                              f"{server.url}/token", None)
        source = TokenSource(client, margin=1.0)
        first = source.token()
        assert source.token() is first  # 2 s of life, 1 s margin: still good
        time.sleep(1.1)
        second = source.token()
        assert second.value != first.value and source.refreshes == 2
        assert second.value == server.issued[-1]  # the rotated refresh token was used
        assert first.value not in repr(first)
    finally:
        server.stop()


def test_a_refused_refresh_token_says_why_without_secrets(tokens):
    from intake.imap.settings import OAuth2Client

    client = OAuth2Client(tokens.client_id, "wrong-secret-123", "rt-wrong-456", f"{tokens.url}/token", None)
    with pytest.raises(TokenError) as info:
        TokenSource(client).token()
    assert "400" in str(info.value) and "expired or revoked" in str(info.value)
    assert "wrong-secret-123" not in str(info.value) and "rt-wrong-456" not in str(info.value)


# --- connecting -------------------------------------------------------------------------------

def test_no_credentials_in_clear_when_the_server_offers_no_starttls(tmp_path):
    """A server without STARTTLS (or a downgrade attack stripping it) never sees the password."""
    import socket as socketlib

    listener = socketlib.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = []

    def serve():
        conn, _ = listener.accept()
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")
        conn.settimeout(3)
        try:
            while chunk := conn.recv(4096):
                received.append(chunk)
                tag = chunk.split(b" ", 1)[0].decode()
                if b"CAPABILITY" in chunk:
                    conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag.encode() + b" OK done\r\n")
                elif b"LOGOUT" in chunk:
                    conn.sendall(b"* BYE\r\n" + tag.encode() + b" OK bye\r\n")
                    break
        except OSError:
            pass
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    box = parse_mailbox_url(f"imap://someone:hunter2@127.0.0.1:{port}/INBOX")
    with pytest.raises(ImapSetupError, match="does not offer STARTTLS"):
        connect(box, timeout=5)
    thread.join(5)
    listener.close()
    assert b"hunter2" not in b"".join(received) and b"LOGIN" not in b"".join(received)


def test_starttls_and_implicit_tls_verify_the_certificate(dovecot, user):
    for security in ("starttls", "tls"):
        box = mailbox(dovecot, user, security=security)
        connection = connect(box, ssl_context=ca_context(dovecot))
        assert connection.client.select_folder("INBOX")[b"UIDVALIDITY"]
        connection.close()
        with pytest.raises(ssl.SSLError):  # an unknown CA is refused
            connect(box, ssl_context=ssl.create_default_context())


# --- exactly once -----------------------------------------------------------------------------

def test_messages_are_stored_once_processed_and_flagged(rt, dovecot, user):
    raws = [on_server(p.read_bytes()) for p in EXAMPLES]
    dovecot.append(user, raws)
    box = mailbox(dovecot, user, security="tls")
    report = read_once(rt, dovecot, box, ssl_context=ca_context(dovecot))
    assert (report.stored, report.duplicates, report.settled) == (len(raws), 0, len(raws))
    rows = stored_rows(rt.db)
    assert sorted(r.raw for r in rows) == sorted(raws)  # byte for byte
    # The same pipeline as the webhooks (the test runtime runs jobs inline): threaded, classified.
    assert all(r.state == "processed" and r.inquiry_id for r in rows)
    with rt.db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(Inquiry)) >= len(raws) - 1
    receipts = detached(rt.db, select(Receipt).where(Receipt.provider == "imap"))
    assert {r.outcome for r in receipts} == {"stored"} and all("UID=" in r.provider_event_id for r in receipts)
    flags = dovecot.flags(user)
    assert all(b"$Intake" in f for f in flags.values())
    assert not any(b"\\Seen" in f for f in flags.values())  # a person's unread mail stays unread
    assert {r.state for r in ledger_rows(rt.db, box)} == {"done"}
    again = read_once(rt, dovecot, box, ssl_context=ca_context(dovecot))
    assert (again.stored, again.duplicates) == (0, 0)
    assert len(stored_rows(rt.db)) == len(raws)


def test_processed_folder_over_starttls(rt, dovecot, user):
    dovecot.append(user, synthetic(7))
    box = mailbox(dovecot, user, security="starttls", processed="Intake Done")
    handed = []
    connection = connect(box, ssl_context=ca_context(dovecot))
    try:
        report = MailboxReader(rt, box, connection.client, batch_size=3,
                               handoff=lambda _rt, mid: handed.append(mid)).run_pass()
    finally:
        connection.close()
    assert report.stored == 7 and sorted(handed) == sorted(r.id for r in stored_rows(rt.db))
    assert dovecot.uids(user) == [] and len(dovecot.uids(user, "Intake Done")) == 7
    dovecot.append(user, synthetic(2, tag="later"))
    assert read_once(rt, dovecot, box, ssl_context=ca_context(dovecot)).stored == 2
    assert len(stored_rows(rt.db)) == 9 and len(dovecot.uids(user, "Intake Done")) == 9


def test_crash_between_commit_and_move_rereads_and_recognises_the_duplicate(rt, dovecot, user):
    raws = synthetic(4)
    dovecot.append(user, raws)
    box = mailbox(dovecot, user, processed="Done")

    class CrashBeforeMove(MailboxReader):
        def _settle(self, uids):
            raise ConnectionResetError("crashed after the commit, before the move")

    connection = connect(box)
    with pytest.raises(ConnectionResetError):
        CrashBeforeMove(rt, box, connection.client, handoff=lambda *_: None).run_pass()
    connection.close()
    assert {r.state for r in ledger_rows(rt.db, box)} == {"stored"} and dovecot.uids(user) == [1, 2, 3, 4]
    report = read_once(rt, dovecot, box, handoff=lambda *_: None)
    assert (report.stored, report.duplicates, report.settled) == (0, 4, 4)
    assert len(stored_rows(rt.db)) == 4 and dovecot.uids(user) == []
    assert {r.state for r in ledger_rows(rt.db, box)} == {"done"}
    with rt.db.read_session() as session:
        outcomes = session.scalars(select(Receipt.outcome).where(Receipt.provider == "imap")).all()
    assert sorted(outcomes) == ["duplicate"] * 4 + ["stored"] * 4


def test_uidvalidity_change_rereads_without_duplicates(rt, dovecot, user):
    dovecot.append(user, synthetic(3))
    box = mailbox(dovecot, user)
    first = read_once(rt, dovecot, box, handoff=lambda *_: None)
    assert first.stored == 3
    dovecot.append(user, synthetic(1, tag="new"))
    dovecot.set_uidvalidity(user, first.uidvalidity + 1000)
    report = read_once(rt, dovecot, box, handoff=lambda *_: None)
    assert report.uidvalidity == first.uidvalidity + 1000 and "UIDVALIDITY changed" in report.reread_reason
    assert (report.stored, report.duplicates) == (1, 3)
    assert len(stored_rows(rt.db)) == 4
    with rt.db.read_session() as session:
        point = ledger.resume_point(session, box.name, report.uidvalidity)
    assert point.watermark == 4 and point.pending == () and not point.validity_changed
    assert read_once(rt, dovecot, box).stored == 0


def test_a_message_deleted_by_a_person_while_the_reader_runs(rt, dovecot, user):
    dovecot.append(user, synthetic(5))
    box = mailbox(dovecot, user, processed="Done")
    deleted = []

    def person_deletes(_rt, message_id):
        # While the reader works on the first batch, a person deletes the message just stored
        # (before it is moved) and one the reader has not fetched yet.
        if not deleted:
            deleted.extend([1, 4])
            dovecot.delete(user, deleted)

    report = read_once(rt, dovecot, box, batch_size=2, handoff=person_deletes)
    assert (report.stored, report.gone) == (4, 1)  # UID 1 was stored before it was deleted
    assert dovecot.uids(user) == [] and len(dovecot.uids(user, "Done")) == 3
    assert {r.uid: r.state for r in ledger_rows(rt.db, box)} == {1: "done", 2: "done", 3: "done", 5: "done"}
    assert len(stored_rows(rt.db)) == 4


def test_too_large_messages_stay_in_the_mailbox_with_a_receipt(rt, dovecot, user, settings):
    from dataclasses import replace

    small, big = synthetic(1)[0], synthetic(1, size=20_000)[0]
    dovecot.append(user, [small, big])
    rt.settings = replace(settings, max_message_bytes=10_000)
    box = mailbox(dovecot, user, processed="Done")
    report = read_once(rt, dovecot, box, handoff=lambda *_: None)
    assert (report.stored, report.skipped) == (1, 1)
    assert dovecot.uids(user) == [2]
    [receipt] = detached(rt.db, select(Receipt).where(Receipt.outcome == "too_large"))
    assert "UID 2" in receipt.detail and receipt.size == len(big)
    assert read_once(rt, dovecot, box).skipped == 0  # refused once, not again each pass


def test_shared_corpus_appended_and_read_once(rt, dovecot, user):
    files = sorted(p for p in corpus_dir().rglob("*.eml"))
    assert files
    raws = [on_server(p.read_bytes()) for p in files]
    dovecot.append(user, raws)
    box = mailbox(dovecot, user, processed="Done")
    handed = []
    report = read_once(rt, dovecot, box, handoff=lambda _rt, mid: handed.append(mid))
    rows = stored_rows(rt.db)
    # Byte-identical copies of one message are one message: the dedupe key.
    assert report.stored == len(rows) == len({r.dedupe_key for r in rows}) and report.stored > 0
    assert report.stored + report.duplicates == len(raws) and sorted(handed) == sorted(r.id for r in rows)
    assert {r.sha256 for r in rows} <= {hashlib.sha256(raw).hexdigest() for raw in raws}
    assert dovecot.uids(user) == [] and len(ledger_rows(rt.db, box)) == len(raws)
    assert read_once(rt, dovecot, box).stored == 0


# --- OAuth2 against Dovecot's oauth2 passdb ----------------------------------------------------

def test_xoauth2_login_with_refreshed_tokens_never_logged(rt, dovecot, tokens, caplog):
    dovecot.append(tokens.username, synthetic(2, tag="oauth"))
    env = {"IMAP_URL": f"imap://{tokens.username}@127.0.0.1:{dovecot.port}/INBOX?starttls=never",
           **tokens.env()}
    settings = ImapSettings.from_env(env)
    box = settings.mailboxes[0]
    assert box.uses_oauth2
    tokens.lifetime = 2
    source = TokenSource(settings.oauth2, margin=1.0)
    caplog.set_level(logging.DEBUG)
    first = read_once(rt, dovecot, box, tokens=source, handoff=lambda *_: None)
    time.sleep(1.1)
    dovecot.append(tokens.username, synthetic(1, tag="oauth-later"))
    second = read_once(rt, dovecot, box, tokens=source, handoff=lambda *_: None)
    tokens.lifetime = 3600
    assert (first.stored, second.stored) == (2, 1)
    assert source.refreshes == 2 and tokens.introspected[-2:] == tokens.issued[-2:]
    logged = caplog.text
    assert "imapclient" in logged or "OAuth2" in logged  # the debug log did run
    for secret in [*tokens.issued, tokens.refresh_token, tokens.client_secret]:
        assert secret not in logged
    import base64
    for token in tokens.issued:
        sasl = base64.b64encode(f"user={tokens.username}\1auth=Bearer {token}\1\1".encode()).decode()
        assert sasl not in logged


def test_a_revoked_token_is_a_clear_error_from_the_command(dovecot, tokens, settings, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("INTAKE_QUEUE_PATH", settings.queue_path)
    monkeypatch.setenv("IMAP_URL", f"imap://{tokens.username}@127.0.0.1:{dovecot.port}/INBOX?starttls=never")
    for key, value in {**tokens.env(), "IMAP_OAUTH2_REFRESH_TOKEN": "rt-revoked"}.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["imap", "--once"])
    assert result.exit_code == 1
    assert "expired or revoked" in result.output and "rt-revoked" not in result.output


# --- the long-running reader ------------------------------------------------------------------

def no_processing(_rt, _message_id) -> None:
    """Hand-off for tests about reading: the pipeline itself is tested above and in serve."""


def run_in_thread(runner: MailboxRunner) -> threading.Thread:
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    return thread


def wait_for(condition, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_idle_delivers_a_new_message_within_seconds(rt, dovecot, user):
    dovecot.append(user, synthetic(1))
    box = mailbox(dovecot, user)
    stop = threading.Event()
    # A poll interval far beyond the test: only IDLE can bring the second message in time.
    runner = MailboxRunner(rt, box, stop, poll_seconds=600, idle_seconds=600, handoff=no_processing)
    thread = run_in_thread(runner)
    try:
        wait_for(lambda: stored_count(rt.db) == 1 and runner.passes >= 2, 60,
                 "the first pass and an empty one (the reader is then in IDLE)")
        time.sleep(0.2)
        dovecot.append(user, synthetic(1, tag="idle"))
        elapsed = wait_for(lambda: stored_count(rt.db) == 2, 15, "IDLE to deliver")
    finally:
        stop.set()
        thread.join(10)
    # Polling is 10 minutes away and the IDLE window as long: only IDLE brings it this fast.
    assert elapsed < 8 and runner.connections == 1 and runner.passes >= 2


def test_without_idle_or_move_it_polls_and_moves_with_uidplus(rt, dovecot, user):
    dovecot.append(user, synthetic(2))
    box = parse_mailbox_url(dovecot.url(user, host=Dovecot.BASIC_HOST, processed="Done"))
    stop = threading.Event()
    runner = MailboxRunner(rt, box, stop, poll_seconds=0.5, idle_seconds=600, handoff=no_processing)
    thread = run_in_thread(runner)
    try:
        wait_for(lambda: len(dovecot.uids(user, "Done")) == 2, 60, "the first two moved")
        dovecot.append(user, synthetic(1, tag="polled"))
        wait_for(lambda: len(dovecot.uids(user, "Done")) == 3, 20, "a poll to bring the third")
    finally:
        stop.set()
        thread.join(10)
    assert runner.connections == 1 and runner.failures == 0 and runner.passes >= 3
    assert dovecot.uids(user) == [] and stored_count(rt.db) == 3


def test_the_server_dropping_the_connection_mid_fetch(rt, dovecot, user):
    raws = synthetic(12, size=8_000)
    dovecot.append(user, raws)
    # Cut the first connection ~40 KB into the server's answers: inside the first FETCH.
    proxy = CuttingProxy(dovecot.port, cut_after=40_000)
    box_via_proxy = parse_mailbox_url(dovecot.url(user, processed="Done").replace(str(dovecot.port), str(proxy.port)))
    stop = threading.Event()
    runner = MailboxRunner(rt, box_via_proxy, stop, poll_seconds=600, idle_seconds=600, backoff_max=1,
                           handoff=no_processing)
    thread = run_in_thread(runner)
    try:
        wait_for(lambda: len(dovecot.uids(user, "Done")) == 12, 60, "every message moved")
    finally:
        stop.set()
        thread.join(10)
        proxy.stop()
    assert proxy.cuts >= 1 and runner.failures >= 1 and runner.connections >= 2
    rows = stored_rows(rt.db)
    assert sorted(r.raw for r in rows) == sorted(raws)
    assert len(ledger_rows(rt.db, box_via_proxy)) == 12


def _reader_env(settings, imap_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAP_", "REDIS_URL"))}
    env.update(DATABASE_URL=settings.database_url, INTAKE_QUEUE_PATH=settings.queue_path,
               IMAP_URL=imap_url, PYTHONUNBUFFERED="1")
    return env


def test_sigkill_mid_batch_then_restart_loses_nothing_and_stores_nothing_twice(db, settings, dovecot, user):
    total = 300
    raws = synthetic(total, size=1_000)
    dovecot.append(user, raws)
    env = _reader_env(settings, dovecot.url(user))
    command = [sys.executable, "-m", "intake.imap.command", "--once", "--batch-size", "5"]
    reader = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Killed as soon as its first batch is committed: 60 batches remain, each a commit and
        # a flag away, so the kill lands mid-run whatever the machine's speed.
        wait_for(lambda: stored_count(db) >= 1, 60, "the reader's first commit")
    finally:
        reader.send_signal(signal.SIGKILL)
        out, err = reader.communicate(timeout=10)
    at_kill = stored_count(db)
    assert reader.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert 1 <= at_kill < total, "the reader finished before it was killed"
    flagged_at_kill = len(dovecot.uids(user, criteria=["KEYWORD", "$Intake"]))
    assert flagged_at_kill <= at_kill  # never flagged before it was stored
    rerun = subprocess.run(command, env=env, capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    rows = stored_rows(db)
    assert len(rows) == total and sorted(r.raw for r in rows) == sorted(raws)
    assert len(dovecot.uids(user, criteria=["KEYWORD", "$Intake"])) == total
    box = mailbox(dovecot, user)
    assert sorted(r.uid for r in ledger_rows(db, box)) == list(range(1, total + 1))
    assert {r.state for r in ledger_rows(db, box)} == {"done"}


# --- the command ------------------------------------------------------------------------------

def test_backfill_since_a_date_in_batches(settings, db, dovecot, user, monkeypatch):
    import datetime as dt

    old, recent = synthetic(3, tag="old"), synthetic(4, tag="recent")
    dovecot.append(user, old, msg_time=dt.datetime(2020, 1, 15, 12, 0, tzinfo=dt.timezone.utc))
    dovecot.append(user, recent, msg_time=dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.timezone.utc))
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("INTAKE_QUEUE_PATH", settings.queue_path)
    monkeypatch.setenv("IMAP_URL", dovecot.url(user))
    runner = CliRunner()
    result = runner.invoke(main, ["imap", "--backfill", "--since", "2024-01-01", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "4 stored" in result.output
    assert sorted(r.raw for r in stored_rows(db)) == sorted(recent)
    again = runner.invoke(main, ["imap", "--backfill", "--since", "2019-01-01"])
    assert again.exit_code == 0 and "3 stored, 0 duplicate" in again.output
    assert len(stored_rows(db)) == 7
    assert runner.invoke(main, ["imap", "--backfill"]).exit_code == 2
    monkeypatch.delenv("IMAP_URL")
    missing = runner.invoke(main, ["imap", "--once"])
    assert missing.exit_code == 1 and "IMAP_URL is not set" in missing.output


@pytest.mark.slow
def test_serve_runs_the_reader_beside_the_embedded_consumer(db_url, db, tmp_path, dovecot, user):
    from tests.test_serve_process import children, cmdline, processed_count, serve

    # The run's model cache, so the consumer loads the seed model instead of fitting it again.
    with serve(db_url, tmp_path, IMAP_URL=dovecot.url(user, processed="Done"),
               INTAKE_CACHE_DIR=os.environ["INTAKE_CACHE_DIR"]) as server:
        def readers():
            return [pid for pid in children(server.proc.pid) if "intake.imap.command" in cmdline(pid)]

        wait_for(lambda: len(readers()) == 1, 90, "the IMAP reader process")
        dovecot.append(user, synthetic(2, tag="serve"))
        wait_for(lambda: processed_count(db) == 2, 180, "both messages stored and processed")
        assert len(dovecot.uids(user, "Done")) == 2
    assert len(stored_rows(db)) == 2


def test_long_running_xoauth2_logs_in_again_before_the_token_lapses(rt, dovecot, tokens):
    username = f"oauth-{Dovecot.new_user()}"
    tokens.username, tokens.lifetime = username, 3  # Dovecot introspects with the module's server
    try:
        settings = ImapSettings.from_env({
            "IMAP_URL": f"imap://{username}@127.0.0.1:{dovecot.port}/INBOX?starttls=never", **tokens.env()})
        source = TokenSource(settings.oauth2, margin=1.5)
        stop = threading.Event()
        runner = MailboxRunner(rt, settings.mailboxes[0], stop, tokens=source, idle_seconds=600,
                               poll_seconds=600, relogin_margin=1.0, handoff=no_processing)
        thread = run_in_thread(runner)
        try:
            wait_for(lambda: runner.connections >= 2, 15, "a second login with a fresh token")
            dovecot.append(username, synthetic(1, tag="fresh-token"))
            wait_for(lambda: stored_count(rt.db) == 1, 30, "the message")
        finally:
            stop.set()
            thread.join(10)
    finally:
        tokens.username, tokens.lifetime = "oauth-user", 3600
    assert runner.failures == 0  # no session ever ran on a lapsed token
    assert source.refreshes >= 2 and len(set(tokens.issued)) == len(tokens.issued)

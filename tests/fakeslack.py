"""A fake Slack Web API over real HTTP, for tests and the benchmark.

The real ``slack_sdk.WebClient`` talks to it exactly as it talks to slack.com (same URL joining,
same JSON and form encodings, same retry handlers reacting to real 429 / 5xx answers), which is
why tests use this instead of mocking the client. Bolt's own test-suite does the same.

Every call is recorded with its decoded parameters; a test can make a method fail a number of
times with a rate limit (429 + ``Retry-After``), a server error, or a Slack error such as
``channel_not_found``. Posted messages are kept per channel and ts, and ``chat.update`` replaces
them, so a test can assert what a channel finally shows.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)
    status: int = 200


@dataclass
class _Failure:
    kind: str  # "ratelimit", "server", "error"
    times: int
    retry_after: int = 1
    error: str = ""
    status: int = 500


class FakeSlack:
    """Start with ``with FakeSlack() as slack:``; point ``SLACK_API_URL`` at ``slack.api_url``."""

    def __init__(self, *, members: list[str] | None = None, latency: float = 0.0) -> None:
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.members: dict[str, list[str]] = {}
        self.default_members = list(members or ["W111", "U100", "U200"])
        self.usergroups: dict[str, list[str]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.files: dict[str, dict[str, Any]] = {}
        # files_upload_v2: getUploadURLExternal -> raw POST to the upload URL -> complete.
        self.uploads: dict[str, dict[str, Any]] = {}
        self._files = itertools.count(1)
        self.latency = latency
        self._failures: dict[str, list[_Failure]] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._ts = itertools.count(1)
        self._views = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> "FakeSlack":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                fake._handle(self)

            def do_GET(self) -> None:
                fake._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeSlack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def api_url(self) -> str:
        """The Web API base, with the trailing slash slack_sdk needs."""
        return self.base_url + "api/"

    @property
    def response_url(self) -> str:
        return self.base_url + "webhook/response"

    # ---- programming failures --------------------------------------------------------------
    def rate_limit(self, method: str, *, times: int = 1, retry_after: int = 1) -> None:
        self._add_failure(method, _Failure("ratelimit", times, retry_after=retry_after))

    def server_error(self, method: str, *, times: int = 1, status: int = 500) -> None:
        self._add_failure(method, _Failure("server", times, status=status))

    def error(self, method: str, error: str, *, times: int = 1) -> None:
        self._add_failure(method, _Failure("error", times, error=error))

    def acted_then_failed(self, method: str, *, times: int = 1, status: int = 500) -> None:
        """Slack's worst answer: it did what was asked (the message exists) and then answered
        with a server error, so the caller cannot know."""
        self._add_failure(method, _Failure("acted_then_server", times, status=status))

    def _add_failure(self, method: str, failure: _Failure) -> None:
        with self._lock:
            self._failures.setdefault(method, []).append(failure)

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    # ---- inspecting ------------------------------------------------------------------------
    def calls_to(self, method: str, *, ok_only: bool = False) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and (not ok_only or c.status == 200)]

    def posted(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Messages that exist now (top level and thread replies), oldest first."""
        with self._lock:
            items = sorted(self.messages.items(), key=lambda kv: float(kv[0][1]))
            return [m for (ch, _), m in items if channel is None or ch == channel]

    def top_level(self, channel: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.posted(channel) if not m.get("thread_ts")]

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        return [m for m in self.posted(channel) if m.get("thread_ts") == ts]

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [c for c in self.calls if c.method == method and c.status == 200]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{method} called {len(found)} times, expected {count}")
                self._cond.wait(remaining)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.messages.clear()
            self._failures.clear()

    # ---- the server ------------------------------------------------------------------------
    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        if parsed.path.startswith("/upload/"):
            self._receive_upload(request, parsed.path.rsplit("/", 1)[-1], body)
            return
        params: dict[str, Any] = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        ctype = request.headers.get("Content-Type", "")
        if body:
            if "json" in ctype:
                params.update(json.loads(body))
            else:
                params.update({k: v[0] for k, v in parse_qs(body.decode()).items()})
        for key in ("blocks", "view", "attachments", "metadata"):
            if isinstance(params.get(key), str):
                try:
                    params[key] = json.loads(params[key])
                except ValueError:
                    pass
        headers = {k.lower(): v for k, v in request.headers.items()}
        if parsed.path.startswith("/webhook/"):
            method = "response_url"
        else:
            method = parsed.path.rsplit("/", 1)[-1]
        if self.latency:
            time.sleep(self.latency)
        with self._cond:
            call = Call(method, params, headers)
            failure = self._take_failure(method)
            if failure and failure.kind == "ratelimit":
                call.status = 429
                status, payload, extra = 429, {"ok": False, "error": "ratelimited"}, {
                    "Retry-After": str(failure.retry_after)}
            elif failure and failure.kind == "server":
                call.status = failure.status
                status, payload, extra = failure.status, {"ok": False, "error": "internal_error"}, {}
            elif failure and failure.kind == "acted_then_server":
                self._answer(method, params, headers)
                call.status = failure.status
                status, payload, extra = failure.status, {"ok": False, "error": "internal_error"}, {}
            elif failure:
                call.status = 299  # answered, but with ok: false
                status, payload, extra = 200, {"ok": False, "error": failure.error}, {}
            else:
                status, payload, extra = 200, self._answer(method, params, headers), {}
            self.calls.append(call)
            self._cond.notify_all()
        data = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            request.send_header(key, value)
        request.end_headers()
        request.wfile.write(data)

    def _receive_upload(self, request: BaseHTTPRequestHandler, file_id: str, body: bytes) -> None:
        """The upload URL files.getUploadURLExternal handed out: raw bytes, answered in plain text."""
        with self._cond:
            upload = self.uploads.get(file_id)
            if upload is not None:
                upload["content"] = body
            self.calls.append(Call("upload", {"file_id": file_id, "size": len(body)},
                                   {k.lower(): v for k, v in request.headers.items()},
                                   status=200 if upload is not None else 404))
            self._cond.notify_all()
        data = (f"OK - {len(body)}" if upload is not None else "file not found").encode()
        request.send_response(200 if upload is not None else 404)
        request.send_header("Content-Type", "text/plain; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def shared_files(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Files completed with files.completeUploadExternal (content included), oldest first."""
        with self._lock:
            return [f for f in self.uploads.values()
                    if f.get("shared") and (channel is None or f.get("channel") == channel)]

    def _page(self, found: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        """One page of messages as Slack lists them; metadata only with include_all_metadata."""
        start = int(params.get("cursor") or 0)
        limit = int(params.get("limit") or 100)
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        page = []
        for message in found[start:start + limit]:
            item = {"type": "message", "ts": message["ts"], "text": message.get("text", ""),
                    "bot_id": "BBOT"}
            if message.get("thread_ts"):
                item["thread_ts"] = message["thread_ts"]
            if with_metadata and message.get("metadata"):
                item["metadata"] = message["metadata"]
            page.append(item)
        more = start + limit < len(found)
        return {"ok": True, "messages": page, "has_more": more,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""}}

    def _next_ts(self) -> str:
        """Slack's ts: the posting time in seconds with microseconds, unique per workspace (so a
        lookup with ``oldest`` behaves as it does on Slack)."""
        self._last_ts = max(time.time(), getattr(self, "_last_ts", 0.0) + 0.000001)
        return f"{self._last_ts:.6f}"

    def _answer(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        """A realistic ok answer; called with the lock held."""
        if method == "auth.test":
            return {"ok": True, "url": "https://fake.slack.com/", "team": "Fake", "user": "intake",
                    "team_id": "T111", "user_id": "UBOT", "bot_id": "BBOT", "is_enterprise_install": False}
        if method == "chat.postMessage":
            channel = params.get("channel", "")
            ts = self._next_ts()
            message = {**params, "ts": ts, "channel": channel}
            self.messages[(channel, ts)] = message
            return {"ok": True, "channel": channel, "ts": ts,
                    "message": {"type": "message", "text": params.get("text", ""), "ts": ts,
                                "bot_id": "BBOT", "blocks": params.get("blocks", [])}}
        if method == "chat.update":
            channel, ts = params.get("channel", ""), params.get("ts", "")
            if (channel, ts) not in self.messages:
                return {"ok": False, "error": "message_not_found"}
            self.messages[(channel, ts)].update({k: v for k, v in params.items() if k not in ("channel", "ts")})
            return {"ok": True, "channel": channel, "ts": ts, "text": params.get("text", "")}
        if method == "chat.delete":
            # As Slack answers: deleting a message that is not there is an error.
            if self.messages.pop((params.get("channel", ""), params.get("ts", "")), None) is None:
                return {"ok": False, "error": "message_not_found"}
            return {"ok": True, "channel": params.get("channel"), "ts": params.get("ts")}
        if method == "conversations.history":
            channel = params.get("channel", "")
            oldest = float(params.get("oldest") or 0)
            found = [m for (ch, ts), m in self.messages.items()
                     if ch == channel and not m.get("thread_ts") and float(ts) > oldest]
            return self._page(sorted(found, key=lambda m: -float(m["ts"])), params)
        if method == "conversations.replies":
            channel, parent = params.get("channel", ""), str(params.get("ts", ""))
            if (channel, parent) not in self.messages:
                return {"ok": False, "error": "thread_not_found"}
            found = [m for (ch, ts), m in self.messages.items()
                     if ch == channel and (ts == parent or m.get("thread_ts") == parent)]
            return self._page(sorted(found, key=lambda m: float(m["ts"])), params)
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self._next_ts()}
        if method == "chat.getPermalink":
            return {"ok": True, "channel": params.get("channel"),
                    "permalink": f"https://fake.slack.com/archives/{params.get('channel')}/p{str(params.get('message_ts', '')).replace('.', '')}"}
        if method == "conversations.members":
            channel = params.get("channel", "")
            members = self.members.get(channel, self.default_members)
            return {"ok": True, "members": members, "response_metadata": {"next_cursor": ""}}
        if method == "usergroups.users.list":
            # As Slack answers: an unknown (or deleted) group is an error, not an empty list.
            group = params.get("usergroup", "")
            if group not in self.usergroups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": list(self.usergroups[group])}
        if method == "users.info":
            user = params.get("user", "")
            profile = self.users.get(user) or {"real_name": f"User {user}", "email": f"{user.lower()}@example.org"}
            return {"ok": True, "user": {"id": user, "name": user.lower(), "real_name": profile.get("real_name"),
                                         "profile": profile}}
        if method in ("views.open", "views.push", "views.update", "views.publish"):
            view = dict(params.get("view") or {})
            view_id = params.get("view_id") or f"V{next(self._views):04d}"
            view.update({"id": view_id, "hash": f"{time.time():.6f}.hash"})
            return {"ok": True, "view": view}
        if method == "files.getUploadURLExternal":
            if not params.get("filename") or not str(params.get("length", "")).isdigit():
                return {"ok": False, "error": "invalid_arguments"}
            file_id = f"F{next(self._files):06d}"
            self.uploads[file_id] = {"id": file_id, "name": params["filename"],
                                     "length": int(params["length"]), "content": None}
            return {"ok": True, "upload_url": f"{self.base_url}upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            items = params.get("files")
            items = json.loads(items) if isinstance(items, str) else items or []
            done = []
            for item in items:
                upload = self.uploads.get(item.get("id", ""))
                if upload is None or upload["content"] is None:
                    return {"ok": False, "error": "file_not_found"}
                if len(upload["content"]) != upload["length"]:
                    return {"ok": False, "error": "file_upload_size_mismatch"}
                upload.update(shared=True, title=item.get("title"), channel=params.get("channel_id"),
                              thread_ts=params.get("thread_ts"), initial_comment=params.get("initial_comment"))
                self.files[upload["id"]] = {"id": upload["id"], "name": upload["name"], "title": upload["title"]}
                done.append({"id": upload["id"], "title": upload["title"]})
            return {"ok": True, "files": done}
        if method == "files.info":
            file = self.files.get(params.get("file", ""))
            if file is None:
                return {"ok": False, "error": "file_not_found"}
            return {"ok": True, "file": file}
        if method == "response_url":
            return {"ok": True}
        return {"ok": True}


# ============================================================================================
# Test helpers shared by tests/test_slack_*.py and bench/slack.py: signing requests exactly as
# Slack does, a queue that runs some jobs inline and records the rest, and inquiry rows.

import contextlib  # noqa: E402
import hashlib  # noqa: E402
import hmac  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import quote, urlencode  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "slack"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-111-222-fake"
TRIAGE_CHANNEL = "C111"


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def slack_signature(secret: str, timestamp: str, body: str | bytes) -> str:
    """Slack's v0 signature: HMAC-SHA256 of ``v0:{timestamp}:{body}`` with the signing secret."""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    base = f"v0:{timestamp}:{body}".encode("utf-8")
    return "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def signed(body: str, content_type: str, *, secret: str = SIGNING_SECRET,
           timestamp: int | None = None, retry_num: int | None = None) -> dict[str, Any]:
    """Keyword arguments for a Flask test-client/requests POST, signed as Slack signs it."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(secret, ts, body),
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return {"data": body.encode("utf-8"), "headers": headers}


def interactive_body(payload: dict[str, Any]) -> str:
    """Interactivity payloads travel as ``payload=<urlencoded JSON>`` (form-encoded)."""
    return f"payload={quote(json.dumps(payload))}"


def command_body(fields: dict[str, Any]) -> str:
    return urlencode(fields)


def button_payload(action_id: str, value: str, *, user: str = "U100", channel: str = TRIAGE_CHANNEL,
                   message_ts: str = "1700000001.000002", block_id: str | None = None,
                   response_url: str | None = None) -> dict[str, Any]:
    payload = load_fixture("block_actions.json")
    payload["user"]["id"] = user
    payload["channel"]["id"] = channel
    payload["container"].update(channel_id=channel, message_ts=message_ts)
    payload["message"]["ts"] = message_ts
    payload["actions"] = [{
        "action_id": action_id, "block_id": block_id or f"card_actions:{value}", "type": "button",
        "text": {"type": "plain_text", "text": action_id}, "value": value, "action_ts": "1700000100.000001",
    }]
    if response_url:
        payload["response_url"] = response_url
    return payload


def select_payload(action_id: str, inquiry_id: int, selected: dict[str, Any], **kw: Any) -> dict[str, Any]:
    payload = button_payload(action_id, str(inquiry_id), **kw)
    action = payload["actions"][0]
    del action["value"]
    action.update(block_id=f"card_menus:{inquiry_id}", **selected)
    action["type"] = "users_select" if "selected_user" in selected else "static_select"
    return payload


def view_submission(callback_id: str, values: dict[str, dict[str, Any]], private_metadata: dict[str, Any],
                    *, user: str = "U100") -> dict[str, Any]:
    payload = load_fixture("view_submission.json")
    payload["user"]["id"] = user
    payload["view"].update(callback_id=callback_id, private_metadata=json.dumps(private_metadata),
                           state={"values": values})
    return payload


def text_value(text: str) -> dict[str, Any]:
    return {"value": {"type": "plain_text_input", "value": text}}


def radio_value(value: str) -> dict[str, Any]:
    return {"value": {"type": "radio_buttons", "selected_option": {"value": value}}}


class RecordingQueue:
    """Runs jobs whose names start with ``run_prefixes`` inline and records every enqueue.

    The Slack tests run the outbox's deliveries for real (the card, thread lines; email is only
    logged without SMTP_URL) but stop at ``pipeline.*``: processing has its own tests, and what
    matters here is that it was asked to run.
    """

    def __init__(self, run_prefixes: tuple[str, ...] = ("outbox.",)) -> None:
        from intake.jobs import InlineQueue

        self.inline = InlineQueue()
        self.run_prefixes = run_prefixes
        self.enqueued: list[tuple[str, tuple[Any, ...]]] = []
        self._lock = threading.Lock()

    def bind(self, rt: Any) -> None:
        self.inline.bind(rt)

    def enqueue(self, name: str, *args: Any, delay: float | None = None) -> None:
        with self._lock:
            self.enqueued.append((name, args))
        if name.startswith(self.run_prefixes):
            self.inline.enqueue(name, *args)

    def ping(self) -> None:
        return None

    def names(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self.enqueued]


def owed(rt: Any, kind: str) -> list[dict[str, Any]]:
    """The args of every delivery of ``kind`` owed so far, oldest first (the outbox's ledger)."""
    from sqlalchemy import select

    from intake.models import Delivery

    with rt.db.session() as session:
        return [dict(d.args or {}) for d in session.scalars(
            select(Delivery).where(Delivery.kind == kind).order_by(Delivery.id))]


@contextlib.contextmanager
def kicks_held(rt: Any):
    """Deliveries owed inside stay in the outbox (no inline run) until a test runs them."""
    hook, rt.db.on_owed = rt.db.on_owed, None
    try:
        yield
    finally:
        rt.db.on_owed = hook


def run_delivery(rt: Any, key: str) -> str:
    """Run the delivery with this key now, as the poller would once it is due (its backoff, if
    any, moved into the past)."""
    import datetime as dt

    from sqlalchemy import select

    from intake import outbox
    from intake.models import Delivery, utcnow

    with rt.db.session() as session:
        row = session.scalars(select(Delivery).where(Delivery.key == key)).one()
        if row.state == "pending":
            row.next_attempt_at = utcnow() - dt.timedelta(seconds=1)
            row.leased_until = None
        delivery_id = row.id
    return outbox.deliver(rt, delivery_id)


def sync_card(rt: Any, inquiry_id: int) -> str:
    """Owe the inquiry's card and run that delivery now; returns what the deliverer did."""
    from intake.outbox import owe_card

    with kicks_held(rt):
        with rt.db.session() as session:
            owe_card(session, inquiry_id)
    return run_delivery(rt, f"card:{inquiry_id}")


def post_card(rt: Any, inquiry_id: int) -> None:
    """Owe the inquiry's card (as processing does); the outbox delivers it on commit."""
    from intake.outbox import owe_card

    with rt.db.session() as session:
        owe_card(session, inquiry_id)


def write_config(path: Path, slack: dict[str, Any] | None = None) -> Path:
    """An INTAKE_CONFIG file with a ``[slack]`` table (tests post without the 1 s/channel pause)."""
    table = {"post_interval_seconds": 0, **(slack or {})}
    lines = ["[slack]"]
    nested: dict[str, dict[str, Any]] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            nested[key] = value
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    for key, value in nested.items():
        lines.append(f"[slack.{key}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in value.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def slack_env(fake: FakeSlack, db_url: str, config: Path | None = None, **extra: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": db_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_TRIAGE_CHANNEL": TRIAGE_CHANNEL,
        "SLACK_API_URL": fake.api_url,
        "INTAKE_FROM_ADDRESS": "desk@fellowship.example.org",
    }
    if config is not None:
        env["INTAKE_CONFIG"] = str(config)
    env.update(extra)
    return env


def make_inquiry(rt: Any, *, subject: str = "How do I apply?", body: str = "What is the deadline?",
                 sender: str = "ann@example.org", name: str | None = "Ann Applicant",
                 category: str = "application", status: str = "new", automated: bool = False,
                 confidence: float = 0.87, reasons: tuple[str, ...] = ("model: application 0.87",),
                 received_at: Any = None) -> int:
    """An inquiry with its first message, shaped as the pipeline stores them (no classifier run)."""
    from sqlalchemy import select

    from intake.models import Classification, Contact, Inquiry, Message, utcnow

    with rt.db.session() as session:
        contact = session.scalar(select(Contact).where(Contact.address == sender.lower()))
        if contact is None:
            contact = Contact(address=sender.lower(), name=name)
            session.add(contact)
        now = received_at or utcnow()
        inquiry = Inquiry(contact=contact, subject=subject, thread_subject=subject.lower(), status=status,
                          category=category, confidence=confidence, automated=automated,
                          language="en", received_at=now, last_message_at=now)
        raw = f"From: {sender}\r\nSubject: {subject}\r\n\r\n{body}".encode()
        message = Message(
            inquiry=inquiry, direction="inbound", kind="email", source="email", provider="test",
            dedupe_key=f"mid:{uuid.uuid4().hex}@test", message_id=f"{uuid.uuid4().hex}@test",
            sender_address=sender.lower(), sender_name=name, subject=subject, text_body=body,
            latest_reply=body, raw=raw, sha256=hashlib.sha256(raw).hexdigest(), size=len(raw),
            parse_status="parsed", state="processed",
        )
        session.add_all([inquiry, message])
        session.flush()
        session.add(Classification(inquiry=inquiry, message_id=message.id, category=category,
                                   confidence=confidence, source="model", reasons=list(reasons)))
        return inquiry.id


def add_followup(rt: Any, inquiry_id: int, body: str, *, sender: str = "ann@example.org") -> int:
    from intake.models import Message

    with rt.db.session() as session:
        raw = f"From: {sender}\r\nSubject: Re\r\n\r\n{body}".encode()
        message = Message(
            inquiry_id=inquiry_id, direction="inbound", kind="email", source="email", provider="test",
            dedupe_key=f"mid:{uuid.uuid4().hex}@test", sender_address=sender, subject="Re: follow-up",
            text_body=body, latest_reply=body, raw=raw, sha256=hashlib.sha256(raw).hexdigest(),
            size=len(raw), parse_status="parsed", state="processed",
        )
        session.add(message)
        session.flush()
        return message.id


# ---- pytest fixtures (import them into a test module to use them) ---------------------------
import pytest  # noqa: E402


@pytest.fixture
def fake_slack():
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def slack_config(tmp_path) -> Path:
    return write_config(tmp_path / "intake.toml", {"email_channels": ["CEMAIL"], "burst_minutes": 10})


@pytest.fixture
def slack_rt(fake_slack, db_url, slack_config):
    """A runtime wired to the fake Slack; Slack jobs run inline, pipeline/outbound are recorded."""
    from intake.config import Settings
    from intake.db import Database
    from intake.runtime import Runtime

    settings = Settings.from_env(slack_env(fake_slack, db_url, slack_config))
    database = Database.from_settings(settings)
    rt = Runtime(settings, database, queue=RecordingQueue())
    yield rt
    database.dispose()

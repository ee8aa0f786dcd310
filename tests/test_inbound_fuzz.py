"""Fuzzing the five webhooks with valid credentials: nothing a sender or a provider controls is a 5xx.

Each example takes a real payload (the fixtures here, plus ../shared/corpus and ../shared/hooks
when present), mutates it the way hostile senders and broken providers do (bytes inserted,
repeated, cut or replaced; fields replaced with long, NUL-bearing, lone-surrogate or deeply
nested values; JSON structure changed), signs it correctly and posts it. Asserted for every
request: the answer is one of 200/400/401/413 with a JSON body, every 2xx names a stored message
that holds the bytes, and processing that message (parse, thread, classify) finishes.

Runs on SQLite and PostgreSQL. Deterministic by default (CI); set ``INTAKE_FUZZ_EXAMPLES=2000`` to
hunt for longer with a fresh random seed each run.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from intake.app import create_app
from intake.inbound import mime
from intake.mail import looks_like_message, parse
from intake.models import Message
from intake.pipeline import process_stored
from intake.runtime import Runtime
from tests.conftest import CORPUS, SHARED
from tests.fixtures.inbound import helpers as h
from tests.test_app_inbound import inbound_settings  # noqa: F401  (fixture)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
HOOKS = SHARED / "hooks"
EXAMPLES = int(os.environ.get("INTAKE_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="INTAKE_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.large_base_example],
)
ALLOWED = {200, 400, 401, 413}


# --- real payloads to start from -----------------------------------------------------------------


def _files(folder: Path, *suffixes: str) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in suffixes)


def _raw_messages() -> list[bytes]:
    paths = _files(FIXTURES / "inbound", ".eml") + _files(FIXTURES / "mail", ".eml")
    paths += [p for p in _files(CORPUS, ".eml", ".txt") if "sendgrid" not in p.parent.name][:60]
    paths += _files(HOOKS, ".eml")
    return [p.read_bytes() for p in paths]


def _json_files(kind: str) -> list[dict[str, Any]]:
    """Postmark payloads or SES notifications (``kind``) among the JSON files we have."""
    found = []
    for path in _files(FIXTURES / "inbound", ".json") + _files(CORPUS, ".json") + _files(HOOKS, ".json"):
        try:
            data = json.loads(path.read_bytes())
        except ValueError:
            continue
        if kind == "postmark" and isinstance(data, dict) and ("FromFull" in data or "RawEmail" in data):
            found.append(data)
        elif kind == "ses":
            for record in (data.get("Records") or [data]) if isinstance(data, dict) else []:
                ses = record.get("ses", record) if isinstance(record, dict) else None
                if isinstance(ses, dict) and isinstance(ses.get("mail"), dict) and isinstance(ses.get("receipt"), dict):
                    found.append({"notificationType": "Received", "mail": ses["mail"], "receipt": ses["receipt"]})
    return found


def _sendgrid_forms() -> list[list[tuple[str, bytes]]]:
    from intake.inbound.forms import parse_form

    bodies = [(FIXTURES / "inbound" / "sendgrid-parsed-latin1.form").read_bytes()]
    bodies += [p.read_bytes() for p in _files(CORPUS / "sendgrid-inbound-samples", ".txt")]
    forms = []
    for body in bodies:
        if b"\r\n" not in body:
            body = body.replace(b"\n", b"\r\n")
        form = parse_form("multipart/form-data; boundary=xYzZY", body)
        forms.append([(name, value) for name, values in form.fields.items() for value in values])
    return forms


RAWS = _raw_messages()
POSTMARK = _json_files("postmark")
SES = _json_files("ses")
SENDGRID_FORMS = _sendgrid_forms()


# --- mutations -----------------------------------------------------------------------------------

SNIPPETS = [
    b"\x00", "\ud800".encode("utf-8", "surrogatepass"), b"\xff\xfe\xfd", b"=?utf-8?q?=FF?= \xc3\xa9",
    b"=?punycode?q?abc-def?=", b"=?idna?b?eA==?=", b"<a href='" * 300, b"\r\n\r\n", b"\r\n ",
    b"\r\nContent-Type: multipart/mixed; boundary=b\r\n", b"\r\n--b\r\n", b"[" * 3000,
    b"<" * 500, b'; a="b' * 400, b"\n" * 2000, b"\r\nSubject: " + b"Re: " * 500 + b"\r\n",
    b"\r\nFrom: =?utf-8?q?John_<ceo@x.example>?= <attacker@y.example>\r\n", b"%00", b"\\",
    b"\r\nContent-Type: text/html\r\n\r\n" + b"<div>" * 400, b"\xe2\x80\xae", b"{}" * 50,
]


def as_text(data: bytes) -> str:
    """Bytes as str, lone surrogates included (as JSON and form decoders may hand them over)."""
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape")


def hostile_text() -> st.SearchStrategy[str]:
    snippets = st.sampled_from(SNIPPETS).map(as_text)
    return st.one_of(
        st.text(max_size=40),
        snippets,
        st.tuples(snippets, st.integers(1, 300)).map(lambda pair: pair[0] * pair[1]),
        st.sampled_from(["\ud800", "\udcff", "a\x00b", "x" * 400, "", " ", "nan", "inf", "-1"]),
    )


def deep(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def json_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                       hostile_text(), st.sampled_from([900, 50]).map(deep))
    return st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(hostile_text(), children, max_size=3),
        max_leaves=6,
    )


@st.composite
def mutated_bytes(draw, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["insert", "insert", "replace", "delete", "repeat", "truncate", "random"]))
        pos = draw(st.integers(0, len(data)))
        if op == "insert":
            data[pos:pos] = draw(st.sampled_from(SNIPPETS))
        elif op == "replace":
            snippet = draw(st.sampled_from(SNIPPETS))
            data[pos:pos + len(snippet)] = snippet
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 200))]
        elif op == "repeat":
            chunk = bytes(data[pos:pos + draw(st.integers(1, 40))])
            data[pos:pos] = chunk * draw(st.integers(1, 3000))
        elif op == "truncate":
            del data[pos:]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and indexes) into a JSON value, containers included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value[:20]):
            found += _paths(child, prefix + (index,))
    return found


@st.composite
def mutated_json(draw, seed: dict[str, Any]) -> Any:
    payload = json.loads(json.dumps(seed))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(payload) if p]
        if not paths:
            return draw(json_values())
        path = draw(st.sampled_from(paths))
        parent = payload
        for key in path[:-1]:
            parent = parent[key]
        old = parent[path[-1]]
        action = draw(st.sampled_from(["replace", "replace", "mutate", "delete"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "mutate" and isinstance(old, str):
            parent[path[-1]] = as_text(draw(mutated_bytes(old.encode("utf-8", "surrogatepass"))))
        else:
            parent[path[-1]] = draw(json_values())
    return payload


SENDGRID_FIELDS = ["headers", "text", "html", "from", "to", "cc", "subject", "charsets", "attachment-info",
                   "envelope", "SPF", "dkim", "spam_score", "email", "attachments"]
MAILGUN_FIELDS = ["message-headers", "body-plain", "body-html", "from", "To", "subject", "Message-Id",
                  "recipient", "sender", "X-Mailgun-Spf", "X-Mailgun-Dkim-Check-Result", "body-mime"]


@st.composite
def mutated_form(draw, seed: list[tuple[str, bytes]], names: list[str]) -> list[tuple[str, bytes]]:
    fields = list(seed)
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["mutate", "mutate", "replace", "delete", "add"]))
        if action == "add" or not fields:
            value = draw(st.one_of(hostile_text().map(lambda t: t.encode("utf-8", "surrogatepass")),
                                   json_values().map(lambda v: json.dumps(v).encode())))
            fields.append((draw(st.sampled_from(names)), value))
            continue
        index = draw(st.integers(0, len(fields) - 1))
        name, value = fields[index]
        if action == "delete":
            del fields[index]
        elif action == "mutate":
            fields[index] = (name, draw(mutated_bytes(value)))
        else:
            fields[index] = (name, draw(hostile_text()).encode("utf-8", "surrogatepass"))
    return fields


# --- one signed request per provider -------------------------------------------------------------


@st.composite
def sendgrid_request(draw, sns) -> tuple[str, dict]:
    if draw(st.booleans()):
        seed = [("email", draw(st.sampled_from(RAWS))), ("SPF", b"pass"), ("charsets", b'{"to":"UTF-8"}')]
    else:
        seed = draw(st.sampled_from(SENDGRID_FORMS))
    body, ctype = h.multipart(draw(mutated_form(seed, SENDGRID_FIELDS)))
    return "/inbound/sendgrid", dict(data=body, content_type=ctype, headers=h.basic_auth())


@st.composite
def mailgun_request(draw, sns) -> tuple[str, dict]:
    raw = draw(st.sampled_from(RAWS))
    parsed = parse(raw, budget_seconds=None) if looks_like_message(raw) is None else None
    if parsed is None or draw(st.booleans()):
        seed = [("body-mime", raw), ("Message-Id", b"<mg-1@example.org>"), ("X-Mailgun-Spf", b"Pass")]
    else:
        headers = json.dumps([[k, v] for k, v in parsed.headers]).encode()
        seed = [("message-headers", headers), ("body-plain", parsed.text.encode()),
                ("from", (parsed.header("From") or "").encode()), ("subject", parsed.subject.encode())]
    fields = [(k, v) for k, v in draw(mutated_form(seed, MAILGUN_FIELDS)) if k not in ("timestamp", "token", "signature")]
    body, ctype = h.multipart([*h.mailgun_signature(), *fields])
    return "/inbound/mailgun/mime", dict(data=body, content_type=ctype)


@st.composite
def postmark_request(draw, sns) -> tuple[str, dict]:
    seed = dict(draw(st.sampled_from(POSTMARK)))
    if draw(st.booleans()):
        seed["RawEmail"] = as_text(draw(st.sampled_from(RAWS)))
    payload = draw(mutated_json(seed))
    body = json.dumps(payload).encode()
    if draw(st.integers(0, 9)) == 0:
        body = draw(mutated_bytes(body))
    return "/inbound/postmark", dict(data=body, content_type="application/json", headers=h.basic_auth())


@st.composite
def ses_request(draw, sns) -> tuple[str, dict]:
    notification = dict(draw(st.sampled_from(SES)))
    raw = draw(st.sampled_from(RAWS))
    if draw(st.booleans()):
        notification["content"] = base64.b64encode(raw).decode()
        notification["receipt"] = dict(notification["receipt"], action={"type": "SNS", "encoding": "BASE64"})
    else:
        notification["content"] = as_text(raw)
        notification["receipt"] = dict(notification["receipt"], action={"type": "SNS", "encoding": "UTF8"})
    notification = draw(mutated_json(notification))
    message = sns.notification(b"")
    message["Message"] = json.dumps(notification) if draw(st.integers(0, 19)) else "[" * 100_000
    body = json.dumps(sns.sign(message, draw(st.sampled_from(["1", "2"])))).encode()
    return "/inbound/ses", dict(data=body, content_type="text/plain; charset=UTF-8", headers=h.basic_auth())


@st.composite
def mime_request(draw, sns) -> tuple[str, dict]:
    raw = draw(mutated_bytes(draw(st.sampled_from(RAWS))))
    headers = {"X-Intake-Signature": mime.sign(raw, h.HMAC_SECRET)}
    return "/inbound/mime", dict(data=raw, content_type="message/rfc822", headers=headers)


REQUESTS = {
    "sendgrid": sendgrid_request,
    "mailgun": mailgun_request,
    "postmark": postmark_request,
    "ses": ses_request,
    "mime": mime_request,
}


# --- the test ------------------------------------------------------------------------------------


class RecordingQueue:
    """Jobs are recorded, not run: the test processes each stored message itself."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, tuple]] = []

    def bind(self, rt) -> None:
        pass

    def enqueue(self, name: str, *args, delay=None) -> None:
        self.jobs.append((name, args))

    def ping(self) -> None:
        pass


@pytest.fixture
def fuzz_rt(inbound_settings, db):
    return Runtime(dataclasses.replace(inbound_settings, max_message_bytes=2 * 1024 * 1024), db, queue=RecordingQueue())


def test_payload_sources_are_there():
    assert RAWS and POSTMARK and SES and SENDGRID_FORMS


@pytest.mark.parametrize("provider", list(REQUESTS))
def test_fuzzed_signed_requests_never_answer_5xx(provider, fuzz_rt):
    sns = h.FakeSns()
    client = create_app(rt=fuzz_rt, sns_fetch=sns.fetch).test_client()

    @FUZZ
    @given(data=st.data())
    def post_one(data):
        path, kwargs = data.draw(REQUESTS[provider](sns), label="request")
        response = client.post(path, **kwargs)
        answer = response.get_json(silent=True)
        if os.environ.get("FUZZ_DEBUG"):
            print(provider, response.status_code, (answer or {}).get("status") or (answer or {}).get("error", "")[:80], len(kwargs["data"]))
        assert response.status_code in ALLOWED, (response.status_code, response.get_data()[:300])
        assert isinstance(answer, dict), response.get_data()[:300]
        if response.status_code != 200 or answer.get("status") == "ok":  # refused, or SNS bookkeeping
            assert response.status_code == 200 or "error" in answer
            return
        assert answer["status"] in ("stored", "duplicate")
        with fuzz_rt.db.session() as session:
            stored = session.execute(select(Message.raw, Message.state).where(Message.id == answer["message_id"])).one()
        assert stored.raw  # the bytes are kept whatever the fields held
        if answer["status"] == "stored":
            result = process_stored(fuzz_rt, answer["message_id"])
            assert result.status in ("new", "follow-up", "unparseable")

    post_one()

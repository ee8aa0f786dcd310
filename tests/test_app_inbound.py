"""The webhooks through Flask's test client, on SQLite and PostgreSQL: what is stored, what is refused."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket

import pytest
from sqlalchemy import func, select

from intake.app import create_app
from intake.config import Settings
from intake.db import Database
from intake.inbound import mime
from intake.jobs import InlineQueue
from intake.models import Inquiry, Message, Receipt, SeenNonce
from intake.queue import HueyQueue
from intake.runtime import Runtime

from tests.fixtures.inbound import helpers as h


@pytest.fixture
def inbound_settings(settings) -> Settings:
    return dataclasses.replace(
        settings,
        inbound_basic_auth=(h.BASIC_AUTH,),
        mailgun_signing_keys=(h.MAILGUN_KEY,),
        inbound_hmac_secrets=(h.HMAC_SECRET,),
        sns_topic_arns=(h.TOPIC_ARN,),
    )


@pytest.fixture
def sns():
    return h.FakeSns()


@pytest.fixture
def huey_rt(inbound_settings, db, tmp_path):
    """A runtime on a real (SQLite) huey queue with no consumer: enqueued jobs stay pending."""
    queue = HueyQueue(inbound_settings, name="apptest")
    return Runtime(inbound_settings, db, queue=queue)


@pytest.fixture
def client(huey_rt, sns):
    return create_app(rt=huey_rt, sns_fetch=sns.fetch).test_client()


def count(db: Database, model, *where) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def outcomes(db: Database) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(Receipt.outcome).order_by(Receipt.id)))


# One signed, real-shape request per provider: (path, kwargs for client.post) carrying `raw`.
def sendgrid_request(raw: bytes, sns) -> tuple[str, dict]:
    body, ctype = h.multipart([("email", raw), ("SPF", "pass"), ("charsets", '{"to":"UTF-8"}')])
    return "/inbound/sendgrid", dict(data=body, content_type=ctype, headers=h.basic_auth())


def mailgun_request(raw: bytes, sns) -> tuple[str, dict]:
    body, ctype = h.multipart([*h.mailgun_signature(), ("body-mime", raw), ("X-Mailgun-Sflag", "No")])
    return "/inbound/mailgun", dict(data=body, content_type=ctype)


def postmark_request(raw: bytes, sns) -> tuple[str, dict]:
    payload = json.loads(h.fixture_bytes("postmark-parsed.json"))
    payload["RawEmail"] = raw.decode("latin-1")
    return "/inbound/postmark", dict(data=json.dumps(payload), content_type="application/json", headers=h.basic_auth())


def ses_request(raw: bytes, sns) -> tuple[str, dict]:
    body = json.dumps(sns.notification(raw, version="2"))
    return "/inbound/ses", dict(data=body, content_type="text/plain; charset=UTF-8", headers=h.basic_auth())


def mime_request(raw: bytes, sns) -> tuple[str, dict]:
    headers = {"X-Intake-Signature": mime.sign(raw, h.HMAC_SECRET)}
    return "/inbound/mime", dict(data=raw, content_type="message/rfc822", headers=headers)


BUILDERS = {
    "sendgrid": sendgrid_request,
    "mailgun": mailgun_request,
    "postmark": postmark_request,
    "ses": ses_request,
    "mime": mime_request,
}


@pytest.mark.parametrize("provider", list(BUILDERS))
def test_signed_delivery_is_stored_byte_exact_and_enqueued_once(provider, client, huey_rt, sns):
    raw = h.fixture_bytes("apply.eml") if provider == "postmark" else h.fixture_bytes("latin1-8bit.eml")
    path, kwargs = BUILDERS[provider](raw, sns)
    response = client.post(path, **kwargs)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "stored"
    with huey_rt.db.session() as session:
        message = session.get(Message, response.get_json()["message_id"])
        assert message.raw == raw
        assert message.provider == provider
        assert message.state == "received"
    assert outcomes(huey_rt.db) == ["stored"]
    assert huey_rt.queue.huey.pending_count() == 1


@pytest.mark.parametrize("provider", list(BUILDERS))
def test_retried_delivery_is_one_message(provider, client, huey_rt, sns):
    raw = h.fixture_bytes("apply.eml")
    answers = []
    for _ in range(3):
        path, kwargs = BUILDERS[provider](raw, sns)  # a provider retry is a freshly signed request
        answers.append(client.post(path, **kwargs).get_json())
    assert [a["status"] for a in answers] == ["stored", "duplicate", "duplicate"]
    assert len({a["message_id"] for a in answers}) == 1
    assert count(huey_rt.db, Message) == 1
    assert outcomes(huey_rt.db) == ["stored", "duplicate", "duplicate"]
    assert huey_rt.queue.huey.pending_count() == 1  # duplicates are not processed again


def test_three_posts_make_one_inquiry(inbound_settings, db, sns):
    queue = InlineQueue()
    queue.raise_errors = False  # later layers (Slack, acknowledgments) are not under test here
    rt = Runtime(inbound_settings, db, queue=queue)
    client = create_app(rt=rt, sns_fetch=sns.fetch).test_client()
    raw = h.fixture_bytes("apply.eml")
    for _ in range(3):
        path, kwargs = mime_request(raw, sns)
        assert client.post(path, **kwargs).status_code == 200
    assert count(db, Message, Message.direction == "inbound") == 1
    assert count(db, Inquiry) == 1
    with db.session() as session:
        assert session.scalar(select(Message.state).where(Message.direction == "inbound")) == "processed"


def test_parsed_mode_delivery_keeps_provider_facts(client, huey_rt):
    body = h.fixture_bytes("sendgrid-parsed-latin1.form")
    response = client.post(
        "/inbound/sendgrid", data=body, content_type="multipart/form-data; boundary=xYzZY", headers=h.basic_auth()
    )
    assert response.status_code == 200
    with huey_rt.db.session() as session:
        message = session.get(Message, response.get_json()["message_id"])
        assert message.meta["spam_score"] == "0.1"
        assert message.meta["synthesized"] is True
        assert b"Message-ID: <sg-parsed-latin1-42@example.es>" in message.raw


def test_unparseable_but_well_delivered_is_stored(client, huey_rt, sns):
    raw = b"\x00\x01\x02 this is not an email at all \xff"
    path, kwargs = mime_request(raw, sns)
    response = client.post(path, **kwargs)
    assert response.status_code == 200
    assert count(huey_rt.db, Message) == 1


@pytest.mark.parametrize(
    "path, kwargs, reason",
    [
        ("/inbound/mime", dict(data=b"From: a@b\r\n\r\nx", content_type="message/rfc822"), "missing X-Intake-Signature"),
        ("/inbound/mime", dict(data=b"From: a@b\r\n\r\nx", headers={"X-Intake-Signature": "sha256=" + "ab" * 32}), "does not match"),
        ("/inbound/sendgrid", dict(data=b"email=x", content_type="application/x-www-form-urlencoded", headers=h.basic_auth(password="nope")), "wrong"),
        ("/inbound/postmark", dict(data=b"{}", content_type="application/json"), "missing HTTP basic auth"),
        ("/inbound/ses", dict(data=b"{}", content_type="text/plain", headers=h.basic_auth(user="other")), "wrong"),
        ("/inbound/mailgun", dict(data={"body-mime": "x", "timestamp": "1", "token": "t", "signature": "s"}), "5 minutes"),
    ],
)
def test_bad_credentials_are_401_and_logged_as_receipts(client, huey_rt, path, kwargs, reason):
    response = client.post(path, **kwargs)
    assert response.status_code == 401
    assert reason in response.get_json()["error"]
    assert count(huey_rt.db, Message) == 0
    assert outcomes(huey_rt.db) == ["unauthorized"]


def test_mailgun_replayed_token_is_refused(client, huey_rt):
    raw = h.fixture_bytes("apply.eml")
    body, ctype = h.multipart([*h.mailgun_signature(token="f" * 50), ("body-mime", raw)])
    assert client.post("/inbound/mailgun", data=body, content_type=ctype).status_code == 200
    replay = client.post("/inbound/mailgun", data=body, content_type=ctype)
    assert replay.status_code == 401
    assert "replayed" in replay.get_json()["error"]
    assert count(huey_rt.db, SeenNonce, SeenNonce.kind == "mailgun") == 1
    assert outcomes(huey_rt.db) == ["stored", "unauthorized"]


@pytest.mark.parametrize(
    "path, kwargs, reason",
    [
        ("/inbound/postmark", dict(data=b"{oops", content_type="application/json"), "not valid JSON"),
        ("/inbound/postmark", dict(data=b"a=b", content_type="application/x-www-form-urlencoded"), "expected Content-Type application/json"),
        ("/inbound/sendgrid", dict(data=b'{"email": "x"}', content_type="application/json"), "expected a form"),
        ("/inbound/sendgrid", dict(data={"SPF": "pass"}), "neither 'email'"),
        ("/inbound/sendgrid", dict(data=b"--nope\r\n", content_type="multipart/form-data"), "without a boundary"),
        ("/inbound/ses", dict(data=b"[]", content_type="text/plain"), "expected an SNS message"),
        ("/inbound/mime", dict(data=b"   ", content_type="message/rfc822"), "empty"),
    ],
)
def test_malformed_requests_are_400_with_a_reason(client, huey_rt, path, kwargs, reason):
    kwargs = dict(kwargs)
    if path == "/inbound/mime":
        kwargs["headers"] = {"X-Intake-Signature": mime.sign(kwargs["data"], h.HMAC_SECRET)}
    elif path != "/inbound/mailgun":
        kwargs["headers"] = h.basic_auth()
    response = client.post(path, **kwargs)
    assert response.status_code == 400
    assert reason in response.get_json()["error"]
    assert outcomes(huey_rt.db) == ["invalid"]


def test_mailgun_form_without_message_is_400(client):
    body, ctype = h.multipart([*h.mailgun_signature(), ("recipient", "x@example.org")])
    response = client.post("/inbound/mailgun", data=body, content_type=ctype)
    assert response.status_code == 400
    assert "neither 'body-mime'" in response.get_json()["error"]


def test_oversized_requests_are_413(inbound_settings, db, sns):
    settings = dataclasses.replace(inbound_settings, max_message_bytes=2000)
    queue = HueyQueue(settings, name="apptest-413")
    client = create_app(rt=Runtime(settings, db, queue=queue), sns_fetch=sns.fetch).test_client()
    big = h.fixture_bytes("apply.eml") + b"x" * 3000
    path, kwargs = mime_request(big, sns)
    response = client.post(path, **kwargs)  # declared Content-Length over the limit
    assert response.status_code == 413
    assert "limit" in response.get_json()["error"]
    # Inside a form the envelope may be larger, but the message itself is held to the limit.
    path, kwargs = sendgrid_request(big, sns)
    response = client.post(path, **kwargs)
    assert response.status_code == 413
    # Far over the envelope limit: refused before the body is read.
    path, kwargs = sendgrid_request(b"x" * 2_000_000, sns)
    assert client.post(path, **kwargs).status_code == 413
    assert count(db, Message) == 0
    assert outcomes(db) == ["too_large"] * 3


def test_head_probes_answer_200(client):
    for path in BUILDERS:
        assert client.head(f"/inbound/{path}").status_code == 200


def test_ses_subscription_confirmation_stores_nothing(client, huey_rt, sns):
    response = client.post("/inbound/ses", data=json.dumps(sns.confirmation()), content_type="text/plain", headers=h.basic_auth())
    assert response.status_code == 200
    assert "subscribed" in response.get_json()["detail"]
    assert count(huey_rt.db, Message) == 0


def test_unconfigured_endpoints_refuse_everything_and_say_so_at_start(settings, db, caplog, sns):
    caplog.set_level(logging.WARNING, logger="intake.app")
    client = create_app(rt=Runtime(settings, db, queue=HueyQueue(settings, name="apptest-unconf"))).test_client()
    assert "/inbound/mailgun (MAILGUN_SIGNING_KEY)" in caplog.text
    assert "/inbound/mime (INBOUND_HMAC_SECRET)" in caplog.text
    raw = h.fixture_bytes("apply.eml")
    for provider, build in BUILDERS.items():
        path, kwargs = build(raw, sns)
        response = client.post(path, **kwargs)
        assert response.status_code == 401, provider
        assert "not configured" in response.get_json()["error"]
    assert count(db, Message) == 0


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"database": "ok", "queue": "ok"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_database_is_503_and_healthz_says_so(tmp_path, sns):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/test"
    settings = Settings.from_env(
        {"DATABASE_URL": url, "INBOUND_HMAC_SECRET": h.HMAC_SECRET, "INTAKE_QUEUE_PATH": str(tmp_path / "q.db")}
    )
    queue = HueyQueue(settings, name="apptest-503")
    client = create_app(rt=Runtime(settings, queue=queue), sns_fetch=sns.fetch).test_client()
    path, kwargs = mime_request(h.fixture_bytes("apply.eml"), sns)
    response = client.post(path, **kwargs)
    assert response.status_code == 503
    assert "database is unavailable" in response.get_json()["error"]
    assert queue.huey.pending_count() == 0
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["database"].startswith("down")
    assert health.get_json()["queue"] == "ok"


def test_failed_enqueue_after_commit_still_answers_2xx(inbound_settings, db, sns):
    # A Redis queue on a closed port: the enqueue fails for real after the commit.
    settings = dataclasses.replace(inbound_settings, redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    client = create_app(rt=Runtime(settings, db, queue=HueyQueue(settings, name="apptest-noredis")), sns_fetch=sns.fetch).test_client()
    path, kwargs = mime_request(h.fixture_bytes("apply.eml"), sns)
    response = client.post(path, **kwargs)
    assert response.status_code == 200
    with db.session() as session:
        assert session.scalar(select(Message.state)) == "received"  # the sweeper's to find
    health = client.get("/healthz")
    assert health.status_code == 503 and health.get_json()["queue"].startswith("down")


def test_streamed_body_over_the_limit_is_413(inbound_settings, db, sns):
    """No Content-Length (chunked upload): the stream itself is capped."""
    import io

    settings = dataclasses.replace(inbound_settings, max_message_bytes=1000)
    client = create_app(rt=Runtime(settings, db, queue=HueyQueue(settings, name="apptest-stream"))).test_client()
    body = b"x" * 3_000_000
    response = client.post(
        "/inbound/sendgrid",
        input_stream=io.BytesIO(body),
        environ_overrides={"wsgi.input_terminated": True},  # what gunicorn sets for chunked bodies
        headers={"Transfer-Encoding": "chunked", "Content-Type": "multipart/form-data; boundary=xYzZY", **h.basic_auth()},
    )
    assert response.status_code == 413
    assert "error" in response.get_json()
    assert count(db, Message) == 0


def test_slack_events_mounted_when_the_slack_layer_exists(client):
    import importlib.util

    rules = {rule.rule for rule in client.application.url_map.iter_rules()}
    has_slack_app = importlib.util.find_spec("intake.slack.app") is not None
    assert ("/slack/events" in rules) == has_slack_app
    assert {"/inbound/sendgrid", "/inbound/mailgun", "/inbound/postmark", "/inbound/ses", "/inbound/mime", "/healthz"} <= rules
    assert not any(rule.startswith("/bench") for rule in rules)  # the yardstick is bench/reference_app.py


def test_mailgun_mime_route_alias_stores_the_message(client, huey_rt):
    """Mailgun posts body-mime only to route URLs ending in "mime"; both URLs are served."""
    raw = h.fixture_bytes("apply.eml")
    body, ctype = h.multipart([*h.mailgun_signature(token="m" * 50), ("body-mime", raw)])
    response = client.post("/inbound/mailgun/mime", data=body, content_type=ctype)
    assert response.status_code == 200
    with huey_rt.db.session() as session:
        assert session.get(Message, response.get_json()["message_id"]).raw == raw
    assert client.head("/inbound/mailgun/mime").status_code == 200


def test_curl_data_binary_to_inbound_mime_is_stored(client, huey_rt):
    """`curl --data-binary @message.eml` sends application/x-www-form-urlencoded; the body is
    still the message, stored byte for byte (and not read as a form)."""
    raw = h.fixture_bytes("latin1-8bit.eml")
    response = client.post("/inbound/mime", data=raw, content_type="application/x-www-form-urlencoded",
                           headers={"X-Intake-Signature": mime.sign(raw, h.HMAC_SECRET)})
    assert response.status_code == 200, response.get_json()
    with huey_rt.db.session() as session:
        assert session.get(Message, response.get_json()["message_id"]).raw == raw
    assert huey_rt.queue.huey.pending_count() == 1


@pytest.mark.parametrize(
    ("build", "endpoint"),
    [(sendgrid_request, "/inbound/sendgrid"), (postmark_request, "/inbound/postmark")],
)
def test_a_providers_payload_sent_to_inbound_mime_names_the_right_endpoint(client, huey_rt, sns, build, endpoint):
    _path, kwargs = build(h.fixture_bytes("apply.eml"), sns)
    body = kwargs["data"].encode() if isinstance(kwargs["data"], str) else kwargs["data"]
    response = client.post("/inbound/mime", data=body, content_type=kwargs["content_type"],
                           headers={"X-Intake-Signature": mime.sign(body, h.HMAC_SECRET)})
    assert response.status_code == 400
    assert endpoint in response.get_json()["error"]
    assert count(huey_rt.db, Message) == 0
    assert outcomes(huey_rt.db) == ["invalid"]


def test_unconfigured_warning_is_left_to_the_process_that_already_gave_it(settings, db, caplog, monkeypatch):
    """`intake serve` warns once in the master and marks the environment its workers inherit."""
    from intake.app import UNCONFIGURED_WARNED_ENV

    caplog.set_level(logging.WARNING, logger="intake.app")
    monkeypatch.setenv(UNCONFIGURED_WARNED_ENV, "1")
    create_app(rt=Runtime(settings, db, queue=HueyQueue(settings, name="apptest-warned")))
    assert "no credentials configured" not in caplog.text

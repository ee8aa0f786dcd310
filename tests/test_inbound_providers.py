"""Each provider's verify + parse on its own: real payload shapes, real cryptography, no database."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.parse
from email import message_from_bytes, policy

import pytest

from intake.config import Settings
from intake.inbound import mailgun, mime, postmark, sendgrid, ses
from intake.inbound.base import Acknowledged, Delivery, InboundRequest, Malformed, Unauthorized, parse_basic_auth
from intake.inbound.forms import parse_form

from tests.conftest import corpus_dir
from tests.fixtures.inbound import helpers as h

SETTINGS = Settings(
    inbound_basic_auth=("old:rotated-out", h.BASIC_AUTH),
    mailgun_signing_keys=("previous-key", h.MAILGUN_KEY),
    inbound_hmac_secrets=(h.HMAC_SECRET,),
    sns_topic_arns=(h.TOPIC_ARN,),
)


def req(body: bytes, content_type: str = "", headers: dict | None = None) -> InboundRequest:
    headers = dict(headers or {})
    mimetype = content_type.partition(";")[0].strip().lower()
    return InboundRequest(
        body=body,
        headers=headers,
        content_type=content_type,
        mimetype=mimetype,
        authorization=parse_basic_auth(headers.get("Authorization")),
    )


def parsed(raw: bytes):
    return message_from_bytes(raw, policy=policy.default)


# --- forms and synthesis -----------------------------------------------------------------------


def test_multipart_fields_keep_their_bytes():
    raw = h.fixture_bytes("latin1-8bit.eml")
    body, ctype = h.multipart([("email", raw), ("to", "x@example.org")])
    form = parse_form(ctype, body)
    assert form.get("email") == raw  # 8-bit Latin-1, not re-decoded as UTF-8
    assert form.get("to") == b"x@example.org"


def test_synthesized_headers_cannot_inject():
    raw, dropped = mime.synthesize(
        [("From", "a@example.org"), ("Subject", "hi\r\nBcc: victim@example.org\r\n\r\nbody"),
         ("X Bad", "x"), ("Content-Type", "text/html")],
        text="plain",
    )
    msg = parsed(raw)
    assert msg["Bcc"] is None
    assert "Bcc: victim" in msg["Subject"]  # kept as text of the subject, not a header
    assert msg.get_content_type() == "text/plain"
    assert dropped == ["X Bad"]


def test_synthesis_is_deterministic_so_retries_dedupe():
    args = ([("From", "a@example.org")],)
    kwargs = dict(text="t", html="<p>t</p>", attachments=[mime.Part(b"data", "a.bin")])
    assert mime.synthesize(*args, **kwargs) == mime.synthesize(*args, **kwargs)


# --- /inbound/mime -----------------------------------------------------------------------------


def test_mime_signature_accepts_any_rotated_secret():
    raw = h.fixture_bytes("apply.eml")
    settings = dataclasses.replace(SETTINGS, inbound_hmac_secrets=("new", h.HMAC_SECRET))
    for secret in ("new", h.HMAC_SECRET):
        got = mime.receive(req(raw, "message/rfc822", {"X-Intake-Signature": mime.sign(raw, secret)}), settings)
        assert got.raw == raw


@pytest.mark.parametrize(
    "headers, reason",
    [
        ({}, "missing"),
        ({"X-Intake-Signature": "sha256=" + "0" * 64}, "does not match"),
        ({"X-Intake-Signature": "md5=abc"}, "sha256="),
    ],
)
def test_mime_bad_signatures_are_refused(headers, reason):
    with pytest.raises(Unauthorized, match=reason):
        mime.receive(req(b"From: a@b\r\n\r\nx", "message/rfc822", headers), SETTINGS)


def test_mime_unconfigured_refuses_even_a_signed_request():
    raw = b"From: a@b\r\n\r\nx"
    with pytest.raises(Unauthorized, match="not configured"):
        mime.receive(req(raw, "message/rfc822", {"X-Intake-Signature": mime.sign(raw, "")}), Settings())


def signed(body: bytes, content_type: str) -> InboundRequest:
    return req(body, content_type, {"X-Intake-Signature": mime.sign(body, h.HMAC_SECRET)})


@pytest.mark.parametrize(
    "content_type",
    ["message/rfc822", "application/x-www-form-urlencoded",  # curl --data-binary's default
     "text/plain; charset=utf-8", "application/octet-stream", "", "application/json", "image/png"],
)
def test_mime_body_is_the_message_whatever_the_content_type_claims(content_type):
    raw = h.fixture_bytes("apply.eml")
    assert mime.receive(signed(raw, content_type), SETTINGS).raw == raw


def test_mime_form_body_is_refused_with_the_endpoints_that_take_forms():
    body, ctype = h.multipart([("email", h.fixture_bytes("apply.eml"))])
    with pytest.raises(Malformed) as refused:
        mime.receive(signed(body, ctype), SETTINGS)
    assert "/inbound/sendgrid" in refused.value.message and "/inbound/mailgun/mime" in refused.value.message


@pytest.mark.parametrize("content_type", ["application/json", "text/plain; charset=UTF-8", ""])
def test_mime_json_body_is_refused_with_the_endpoints_that_take_json(content_type):
    body = json.dumps({"RawEmail": "From: a@b\r\n\r\nx"}).encode()
    with pytest.raises(Malformed) as refused:
        mime.receive(signed(b"  \n" + body, content_type), SETTINGS)
    assert "/inbound/postmark" in refused.value.message and "/inbound/ses" in refused.value.message


def test_mime_body_starting_with_a_brace_but_not_json_is_a_message():
    body = b"{not json at all}\r\n\r\nstill stored: the parser decides what it is"
    assert mime.receive(signed(body, "text/plain"), SETTINGS).raw == body


def test_mime_checks_the_signature_before_looking_at_the_body():
    body, ctype = h.multipart([("email", b"x")])
    with pytest.raises(Unauthorized):
        mime.receive(req(body, ctype, {"X-Intake-Signature": "sha256=" + "0" * 64}), SETTINGS)


# --- SendGrid ----------------------------------------------------------------------------------


def test_sendgrid_raw_mode_from_the_corpus():
    body = (corpus_dir("sendgrid-inbound-samples") / "raw_data_with_attachments.txt").read_bytes()
    got = sendgrid.receive(req(body, "multipart/form-data; boundary=xYzZY", h.basic_auth()), SETTINGS)
    msg = parsed(got.raw)
    assert msg["Subject"] == "Inbound Parse Test Raw Data with Attachment"
    assert [p.get_filename() for p in msg.iter_attachments()] == ["SendGrid.jpg"]
    assert got.meta["spf"] == "pass"


def test_sendgrid_parsed_mode_from_the_corpus():
    body = (corpus_dir("sendgrid-inbound-samples") / "default_data.txt").read_bytes()
    got = sendgrid.receive(req(body, "multipart/form-data; boundary=xYzZY", h.basic_auth()), SETTINGS)
    msg = parsed(got.raw)
    assert msg["From"] == "Example User <test@example.com>"
    assert msg["Subject"] == "Inbound Parse Test Data"  # the original header wins over the field
    assert msg.get_body(("plain",)).get_content().strip() == "Hello Twilio SendGrid!"
    assert got.meta["synthesized"] is True


def test_sendgrid_parsed_mode_decodes_each_field_in_its_charset():
    body = h.fixture_bytes("sendgrid-parsed-latin1.form")
    got = sendgrid.receive(req(body, "multipart/form-data; boundary=xYzZY", h.basic_auth()), SETTINGS)
    msg = parsed(got.raw)
    assert msg["Message-ID"] == "<sg-parsed-latin1-42@example.es>"
    assert "¿Cuándo cierra la convocatoria? Gracias, José" in msg.get_body(("plain",)).get_content()
    assert "José" in msg.get_body(("html",)).get_content()
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == "cv.txt"
    assert attachment.get_content_type() == "text/plain"
    assert got.meta["spam_score"] == "0.1" and got.meta["envelope"]["from"] == "jose@example.es"


def test_sendgrid_raw_mode_keeps_8bit_bytes():
    raw = h.fixture_bytes("latin1-8bit.eml")
    body, ctype = h.multipart([("email", raw), ("charsets", '{"to":"UTF-8"}')])
    assert sendgrid.receive(req(body, ctype, h.basic_auth()), SETTINGS).raw == raw


@pytest.mark.parametrize(
    "headers, reason",
    [({}, "missing"), (h.basic_auth(password="wrong"), "wrong"), ({"Authorization": "Bearer x"}, "missing")],
)
def test_sendgrid_basic_auth_refusals(headers, reason):
    body, ctype = h.multipart([("email", "From: a@b\r\n\r\nx")])
    with pytest.raises(Unauthorized, match=reason):
        sendgrid.receive(req(body, ctype, headers), SETTINGS)


def test_sendgrid_form_without_message_is_malformed():
    body, ctype = h.multipart([("dkim", "none"), ("SPF", "pass")])
    with pytest.raises(Malformed, match="neither 'email'"):
        sendgrid.receive(req(body, ctype, h.basic_auth()), SETTINGS)


def test_sendgrid_json_body_is_malformed():
    with pytest.raises(Malformed, match="expected a form"):
        sendgrid.receive(req(b"{}", "application/json", h.basic_auth()), SETTINGS)


def test_sendgrid_signed_webhook():
    private, public = h.sendgrid_keypair()
    _, other_public = h.sendgrid_keypair()
    settings = Settings(sendgrid_public_keys=(other_public, public))
    body, ctype = h.multipart([("email", h.fixture_bytes("apply.eml"))])
    assert sendgrid.receive(req(body, ctype, h.sendgrid_sign(private, body)), settings).raw.startswith(b"From: Sam")
    forged = h.sendgrid_sign(private, body + b"tampered")
    with pytest.raises(Unauthorized, match="does not verify"):
        sendgrid.receive(req(body, ctype, forged), settings)
    stale = h.sendgrid_sign(private, body, timestamp=int(time.time()) - 3600)
    with pytest.raises(Unauthorized, match="5 minutes"):
        sendgrid.receive(req(body, ctype, stale), settings)
    with pytest.raises(Unauthorized, match="missing"):
        sendgrid.receive(req(body, ctype), settings)


# --- Mailgun -----------------------------------------------------------------------------------


def test_mailgun_body_mime_with_rotated_key():
    raw = h.fixture_bytes("latin1-8bit.eml")
    for key in ("previous-key", h.MAILGUN_KEY):
        fields = h.mailgun_signature(key)
        body, ctype = h.multipart([*fields, ("body-mime", raw), ("X-Mailgun-Sflag", "No"), ("X-Mailgun-Spf", "Pass")])
        got = mailgun.receive(req(body, ctype), SETTINGS)
        assert got.raw == raw
        assert got.nonce == ("mailgun", fields[1][1])
        assert got.meta["x-mailgun-sflag"] == "No" and got.meta["x-mailgun-spf"] == "Pass"


def test_mailgun_parsed_fields_rebuild_from_message_headers():
    headers = [
        ["Received", "by luna.mailgun.net with SMTP"],
        ["Content-Type", 'multipart/alternative; boundary="eb663d73ae0a4d6c9153cc0aec8b7520"'],
        ["From", "Someone <someone@example.com>"],
        ["To", "fellowship@inbound.example.org"],
        ["Subject", "Volunteering at the civic hack day"],
        ["Message-Id", "<20261105182626.18666.16540@example.com>"],
        ["X-Injected", "a\r\nBcc: victim@example.org"],
    ]
    body = urllib.parse.urlencode(
        [*h.mailgun_signature(), ("message-headers", json.dumps(headers)), ("body-plain", "Can I help mentor?"),
         ("body-html", "<p>Can I help mentor?</p>"), ("X-Mailgun-Sscore", "0.2")]
    ).encode()
    got = mailgun.receive(req(body, "application/x-www-form-urlencoded"), SETTINGS)
    msg = parsed(got.raw)
    assert msg["Message-Id"] == "<20261105182626.18666.16540@example.com>"
    assert msg["Bcc"] is None
    assert msg.get_content_type() == "multipart/alternative"
    assert msg.get_body(("plain",)).get_content().strip() == "Can I help mentor?"
    assert got.meta["x-mailgun-sscore"] == "0.2"


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda f: f[:2] + [("signature", "0" * 64)], "does not match"),
        (lambda f: f[:2], "missing"),
        (lambda f: h.mailgun_signature(timestamp=time.time() - 600), "5 minutes"),
        (lambda f: h.mailgun_signature("someone-elses-key"), "does not match"),
    ],
)
def test_mailgun_forged_missing_and_stale_signatures(mutate, reason):
    fields = mutate(h.mailgun_signature())
    body, ctype = h.multipart([*fields, ("body-mime", "From: a@b\r\n\r\nx")])
    with pytest.raises(Unauthorized, match=reason):
        mailgun.receive(req(body, ctype), SETTINGS)


def test_mailgun_form_without_message_is_malformed():
    body, ctype = h.multipart([*h.mailgun_signature(), ("recipient", "x@example.org")])
    with pytest.raises(Malformed, match="neither 'body-mime'"):
        mailgun.receive(req(body, ctype), SETTINGS)


# --- Postmark ----------------------------------------------------------------------------------


def test_postmark_raw_email_from_the_corpus():
    body = (corpus_dir("anymail-payloads") / "postmark-inbound-test-payload-with-raw.json").read_bytes()
    got = postmark.receive(req(body, "application/json", h.basic_auth()), SETTINGS)
    assert got.raw == json.loads(body)["RawEmail"].encode()
    assert got.provider_event_id == "00000000-0000-0000-0000-000000000000"


def test_postmark_parsed_payload_from_the_corpus():
    body = (corpus_dir("anymail-payloads") / "postmark-inbound-test-payload.json").read_bytes()
    msg = parsed(postmark.receive(req(body, "application/json", h.basic_auth()), SETTINGS).raw)
    assert msg["From"] == "Postmarkapp Support <support@postmarkapp.com>"
    assert "firstcc@postmarkapp.com" in msg["Cc"]
    assert [p.get_content() for p in msg.iter_attachments()] == ["This is attachment contents, base-64 encoded."]


def test_postmark_parsed_payload_own_fixture():
    body = h.fixture_bytes("postmark-parsed.json")
    got = postmark.receive(req(body, "application/json; charset=utf-8", h.basic_auth()), SETTINGS)
    msg = parsed(got.raw)
    assert msg["Message-ID"] == "<city-partner-77@example.net>"
    assert msg["From"] == "Dana Okafor <dana@example.net>"
    assert "host two fellows" in msg.get_body(("plain",)).get_content()
    assert got.meta["x-spam-score"] == "-0.1"


@pytest.mark.parametrize(
    "body, ctype, reason",
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "must be an object"),
        (b'{"Subject": "no body"}', "application/json", "neither 'RawEmail'"),
        (b"a=b", "application/x-www-form-urlencoded", "application/json"),
    ],
)
def test_postmark_malformed(body, ctype, reason):
    with pytest.raises(Malformed, match=reason):
        postmark.receive(req(body, ctype, h.basic_auth()), SETTINGS)


# --- SES through SNS ---------------------------------------------------------------------------


@pytest.fixture
def sns():
    return h.FakeSns()


def sns_req(message: dict) -> InboundRequest:
    return req(json.dumps(message).encode(), "text/plain; charset=UTF-8", h.basic_auth())


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_notification_signature_versions(sns, version):
    raw = h.fixture_bytes("latin1-8bit.eml")
    verifier = ses.SnsVerifier(sns.fetch)
    got = ses.receive(sns_req(sns.notification(raw, version=version)), SETTINGS, verifier)
    assert isinstance(got, Delivery)
    assert got.raw == raw
    assert got.provider_event_id == "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1"
    assert got.meta["spamVerdict"] == "PASS"


def test_ses_certificate_is_fetched_once(sns):
    verifier = ses.SnsVerifier(sns.fetch)
    for _ in range(3):
        ses.receive(sns_req(sns.notification(b"From: a@b\r\n\r\nx")), SETTINGS, verifier)
    assert sns.fetched == [h.CERT_URL]


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
        "https://user@sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
    ],
)
def test_ses_foreign_certificate_url_is_refused_before_fetching(sns, url):
    verifier = ses.SnsVerifier(sns.fetch)
    with pytest.raises(Unauthorized, match="SigningCertURL"):
        ses.receive(sns_req(sns.notification(b"x", cert_url=url)), SETTINGS, verifier)
    assert sns.fetched == []


def test_ses_tampered_and_foreign_key_signatures_are_refused(sns):
    verifier = ses.SnsVerifier(sns.fetch)
    message = sns.notification(b"From: a@b\r\n\r\nx")
    tampered = dict(message, Message=message["Message"].replace("PASS", "FAIL"))
    with pytest.raises(Unauthorized, match="does not verify"):
        ses.receive(sns_req(tampered), SETTINGS, verifier)
    other = h.FakeSns()
    forged = other.notification(b"From: a@b\r\n\r\nx")  # signed by a key that is not the cert's
    with pytest.raises(Unauthorized, match="does not verify"):
        ses.receive(sns_req(forged), SETTINGS, verifier)


def test_ses_needs_basic_auth_too(sns):
    message = json.dumps(sns.notification(b"x")).encode()
    with pytest.raises(Unauthorized, match="missing HTTP basic auth"):
        ses.receive(req(message, "text/plain"), SETTINGS, ses.SnsVerifier(sns.fetch))


def test_ses_subscription_confirmed_only_for_configured_topics(sns):
    verifier = ses.SnsVerifier(sns.fetch)
    got = ses.receive(sns_req(sns.confirmation()), SETTINGS, verifier)
    assert isinstance(got, Acknowledged)
    assert any("Action=ConfirmSubscription" in url for url in sns.fetched)
    sns.fetched.clear()
    other_topic = "arn:aws:sns:us-east-1:999999999999:someone-else"
    with pytest.raises(Unauthorized, match="not in SES_SNS_TOPIC_ARNS"):
        ses.receive(sns_req(sns.confirmation(topic=other_topic)), SETTINGS, verifier)
    with pytest.raises(Unauthorized, match="not in SES_SNS_TOPIC_ARNS"):
        ses.receive(sns_req(sns.confirmation()), dataclasses.replace(SETTINGS, sns_topic_arns=()), verifier)
    evil = sns.confirmation(subscribe_url="https://evil.example/confirm")
    with pytest.raises(Unauthorized, match="SubscribeURL"):
        ses.receive(sns_req(evil), SETTINGS, verifier)
    assert all(url.endswith(".pem") for url in sns.fetched)


def test_ses_notification_without_content_is_malformed(sns):
    received = json.loads(h.fixture_bytes("ses-received.json"))
    del received["content"]
    message = sns.notification(b"x")
    message["Message"] = json.dumps(received)
    message = sns.sign(message, "2")
    with pytest.raises(Malformed, match="no 'content'"):
        ses.receive(sns_req(message), SETTINGS, ses.SnsVerifier(sns.fetch))


def test_ses_corpus_event_shape_is_understood(sns):
    event = json.loads((corpus_dir("aws-lambda-ses-sns-samples") / "ses-sns-event.json").read_text())
    record = event["Records"][0]["ses"]
    raw = b"From: sender@example.com\r\nSubject: Example subject\r\n\r\nbody\r\n"
    notification = {"notificationType": "Received", "mail": record["mail"], "receipt": record["receipt"],
                    "content": raw.decode()}
    message = sns.notification(b"")
    message["Message"] = json.dumps(notification)
    got = ses.receive(sns_req(sns.sign(message, "1")), SETTINGS, ses.SnsVerifier(sns.fetch))
    assert got.raw == raw and got.provider_event_id == "d6iitobk75ur44p8kdnnp7g2n800"
    assert got.meta["dkimVerdict"] == "PASS"


def test_is_sns_url():
    assert ses.is_sns_url("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem")
    assert ses.is_sns_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem")
    assert not ses.is_sns_url("https://sns.amazonaws.com/x.pem")
    assert not ses.is_sns_url("ftp://sns.us-east-1.amazonaws.com/x.pem")

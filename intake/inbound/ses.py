"""Amazon SES receipt rule -> SNS topic -> HTTPS subscription to ``/inbound/ses``.

SNS posts JSON (with ``Content-Type: text/plain``). A ``Notification`` carries, in ``Message``, the
SES receipt notification whose ``content`` is the raw message (base64 or UTF-8 per the action's
``encoding``). Every request must carry the configured basic auth (put it in the subscription
URL) and a valid SNS signature:

* ``SignatureVersion`` 1 is SHA1-with-RSA, 2 is SHA256-with-RSA, over SNS's string-to-sign;
* the certificate comes from ``SigningCertURL``, accepted only as ``https://sns.<region>.amazonaws.com/...``
  (checked before anything is fetched), fetched through an injectable ``fetch`` and cached.

Only topics listed in ``SES_SNS_TOPIC_ARNS`` are accepted: a subscription is confirmed (its
``SubscribeURL``, same host rule) and a notification stored only for those, so with the list unset
every request is refused. Anyone can create an SNS topic and have AWS sign its messages; the list
is what makes a signed message ours. A message whose signed ``Timestamp`` is more than an hour
away from now is refused too, so a captured notification cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import re
import threading
import urllib.parse
from collections import OrderedDict
from typing import Any, Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from intake.config import Settings
from intake.inbound.base import (
    Acknowledged,
    Delivery,
    InboundRequest,
    Malformed,
    Unauthorized,
    load_json,
    require_basic_auth,
    text_bytes,
)

log = logging.getLogger(__name__)

PROVIDER = "ses"
Fetch = Callable[[str], bytes]

_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
_VERDICTS = ("spamVerdict", "virusVerdict", "spfVerdict", "dkimVerdict", "dmarcVerdict")
# SNS retries a failed delivery for minutes, not hours (its default HTTP/S policy); a signed
# message older than this is a replay.
MAX_MESSAGE_AGE = dt.timedelta(hours=1)


def is_sns_url(url: str) -> bool:
    """Only ``https://sns.<region>.amazonaws.com/`` URLs, with no user info or odd port."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and parts.username is None
        and parts.port in (None, 443)
        and bool(parts.hostname and _SNS_HOST.match(parts.hostname))
    )


def default_fetch(url: str) -> bytes:
    """GET over HTTPS with certificate verification (requests' default) and no redirects."""
    import requests  # imported here: only the SES endpoint needs it

    response = requests.get(url, timeout=10, allow_redirects=False)
    response.raise_for_status()
    return response.content


def string_to_sign(message: dict[str, Any]) -> bytes:
    """SNS's canonical form: ``Key\\nValue\\n`` for the signed keys present, in order."""
    keys = _NOTIFICATION_KEYS if message.get("Type") == "Notification" else _CONFIRMATION_KEYS
    out = []
    for key in keys:
        if key in message and message[key] is not None:
            out.append(f"{key}\n{message[key]}\n")
    return "".join(out).encode("utf-8")


class SnsVerifier:
    """Verifies SNS signatures; certificates are cached by URL (a few, bounded)."""

    def __init__(self, fetch: Fetch | None = None, cache_size: int = 16) -> None:
        self.fetch = fetch or default_fetch
        self.cache_size = cache_size
        self._certs: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()
        self._lock = threading.Lock()

    def public_key(self, url: str) -> rsa.RSAPublicKey:
        if not is_sns_url(url):
            raise Unauthorized("SigningCertURL is not an https://sns.<region>.amazonaws.com/ URL")
        with self._lock:
            if url in self._certs:
                self._certs.move_to_end(url)
                return self._certs[url]
        try:
            cert = x509.load_pem_x509_certificate(self.fetch(url))
        except Exception as exc:  # noqa: BLE001 - network or parse failure: refuse, say why
            raise Unauthorized(f"the SNS signing certificate could not be loaded: {exc.__class__.__name__}") from None
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise Unauthorized("the SNS signing certificate does not hold an RSA key")
        with self._lock:
            self._certs[url] = key
            while len(self._certs) > self.cache_size:
                self._certs.popitem(last=False)
        return key

    def verify(self, message: dict[str, Any]) -> None:
        version = str(message.get("SignatureVersion") or "")
        if version not in _HASHES:
            raise Unauthorized(f"unsupported SNS SignatureVersion {version!r}")
        url = message.get("SigningCertURL") or message.get("SigningCertUrl")
        signature = message.get("Signature")
        if not isinstance(url, str) or not isinstance(signature, str):
            raise Unauthorized("missing SNS Signature or SigningCertURL")
        key = self.public_key(url)
        try:
            raw_signature = base64.b64decode(signature, validate=True)
        except binascii.Error:
            raise Unauthorized("the SNS Signature is not base64") from None
        try:
            key.verify(raw_signature, string_to_sign(message), padding.PKCS1v15(), _HASHES[version]())
        except InvalidSignature:
            raise Unauthorized("the SNS signature does not verify") from None


def check_age(message: dict[str, Any], now: dt.datetime | None = None) -> None:
    """Refuse a message whose signed Timestamp is over an hour away from now (either way)."""
    try:
        sent = dt.datetime.fromisoformat(message["Timestamp"].replace("Z", "+00:00"))
    except ValueError:
        raise Malformed("the SNS Timestamp is not an ISO 8601 time") from None
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=dt.timezone.utc)
    age = (now or dt.datetime.now(dt.timezone.utc)) - sent
    if abs(age) > MAX_MESSAGE_AGE:
        raise Unauthorized(f"the SNS message is dated {message['Timestamp'][:40]}, over an hour from now "
                           "(replayed, or the clock is wrong)")


def receive(request: InboundRequest, settings: Settings, verifier: SnsVerifier) -> Delivery | Acknowledged:
    require_basic_auth(request, settings.inbound_basic_auth, "SES")
    message = request.json()
    if not isinstance(message, dict) or not isinstance(message.get("Type"), str):
        raise Malformed("expected an SNS message: a JSON object with a 'Type'")
    for key in ("MessageId", "TopicArn", "Timestamp"):
        if not isinstance(message.get(key), str):
            raise Malformed(f"the SNS message has no '{key}'")
    verifier.verify(message)
    check_age(message)
    topic = message["TopicArn"]
    kind = message["Type"]
    if topic not in settings.sns_topic_arns:
        raise Unauthorized(f"SNS topic {topic[:200]!r} is not in SES_SNS_TOPIC_ARNS (list the topics "
                           "intake may accept)")
    if kind == "SubscriptionConfirmation":
        return _confirm(message, settings, verifier)
    if kind == "UnsubscribeConfirmation":
        log.warning("SNS topic %s unsubscribed this endpoint", topic)
        return Acknowledged(f"unsubscribed from {topic}")
    if kind != "Notification":
        raise Malformed(f"unknown SNS message Type {kind!r}")
    return _delivery(message)


def _confirm(message: dict[str, Any], settings: Settings, verifier: SnsVerifier) -> Acknowledged:
    topic = message["TopicArn"]  # one of SES_SNS_TOPIC_ARNS: receive() checked
    url = message.get("SubscribeURL")
    if not isinstance(url, str) or not is_sns_url(url):
        raise Unauthorized("SubscribeURL is not an https://sns.<region>.amazonaws.com/ URL")
    try:
        verifier.fetch(url)
    except Exception as exc:  # noqa: BLE001 - report and let SNS retry the confirmation
        raise Malformed(f"confirming the subscription failed: {exc.__class__.__name__}") from None
    log.info("confirmed the SNS subscription to %s", topic)
    return Acknowledged(f"subscribed to {topic}")


def _delivery(message: dict[str, Any]) -> Delivery:
    try:
        notification = load_json(message.get("Message") or "")
    except (TypeError, ValueError):
        raise Malformed("the SNS Message is not the JSON of an SES notification") from None
    if not isinstance(notification, dict):
        raise Malformed("the SNS Message is not the JSON of an SES notification")
    receipt = notification.get("receipt") if isinstance(notification.get("receipt"), dict) else {}
    mail = notification.get("mail") if isinstance(notification.get("mail"), dict) else {}
    content = notification.get("content")
    if not isinstance(content, str) or not content:
        raise Malformed(
            "the SES notification has no 'content' (use an SNS receipt action, which includes "
            "the message; S3 actions and messages over 150 KB do not)"
        )
    action = receipt.get("action") if isinstance(receipt.get("action"), dict) else {}
    encoding = str(action.get("encoding") or "UTF8").upper()
    if encoding == "BASE64":
        try:
            raw = base64.b64decode(content, validate=False)
        except (binascii.Error, ValueError):
            raise Malformed("the SES content is not valid base64") from None
    else:
        raw = text_bytes(content)
    meta: dict[str, Any] = {"provider": PROVIDER, "sns_message_id": message["MessageId"]}
    for verdict in _VERDICTS:
        value = receipt.get(verdict)
        if isinstance(value, dict) and isinstance(value.get("status"), str):
            meta[verdict] = value["status"]
    if isinstance(mail.get("source"), str):  # the envelope sender SES's SPF verdict is about
        meta["mail_from"] = mail["source"][:320]
    if isinstance(receipt.get("recipients"), list):
        meta["recipients"] = [str(r) for r in receipt["recipients"][:50]]
    event_id = mail.get("messageId") if isinstance(mail.get("messageId"), str) else message["MessageId"]
    return Delivery(raw=raw, meta=meta, provider_event_id=event_id)

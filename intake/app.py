"""The web app: inbound webhooks, ``/healthz`` and (when the Slack layer is present) ``/slack/events``.

``create_app()`` is the one composition root (gunicorn's ``intake.app:create_app()`` and
``intake serve`` both call it); importing this module does no work. A webhook request does exactly
one thing: verify, make the raw message durable (message row + receipt, one transaction), commit,
answer, and enqueue ``pipeline.process_message``. Everything else is a background job, so the
answer is fast and a provider's retry can never be the only copy of a message.

Answers (DESIGN.md): 2xx once committed (a duplicate too), 401 bad or missing credentials, 400 a
malformed request with ``{"error": ...}``, 413 too large, 503 when the database is unreachable so
the provider retries. If the enqueue fails after the commit, the sweeper finds the stored message.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import RequestEntityTooLarge

from intake.config import Settings
from intake.db import is_unique_violation
from intake.inbound import mailgun, mime, postmark, sendgrid, ses
from intake.inbound.base import (
    Acknowledged,
    Delivery,
    InboundError,
    InboundRequest,
    TooLarge,
    Unauthorized,
    parse_basic_auth,
)
from intake.runtime import Runtime

log = logging.getLogger(__name__)

RUNTIME_KEY = "intake.runtime"
# Set by `intake serve` once it logged the "no credentials" warnings in the gunicorn master;
# inherited by every worker, whose create_app() then stays quiet.
UNCONFIGURED_WARNED_ENV = "INTAKE_UNCONFIGURED_WARNED"
Receiver = Callable[[InboundRequest], "Delivery | Acknowledged"]


class DatabaseUnavailable(Exception):
    """The database could not be reached; the request is answered 503 so the provider retries."""


def envelope_limit(settings: Settings) -> int:
    """The largest request body accepted around a message of ``max_message_bytes``.

    Providers wrap the message in a form or in JSON (SES as base64, 4/3 larger), so the request
    may exceed the message; the message itself is checked against the exact limit afterwards.
    """
    return int(settings.max_message_bytes * 1.4) + 1024 * 1024


def create_app(
    settings: Settings | None = None,
    rt: Runtime | None = None,
    *,
    sns_fetch: Callable[[str], bytes] | None = None,
) -> Flask:
    """Build the Flask app. ``rt`` defaults to a runtime on the huey queue (``intake.queue``)."""
    if rt is None:
        from intake.queue import make_queue

        settings = settings or Settings.from_env()
        rt = Runtime(settings, queue=make_queue(settings))
    settings = rt.settings.check()  # a mistake in INTAKE_CONFIG stops the web app as it starts
    app = Flask("intake")
    app.config.update(MAX_CONTENT_LENGTH=envelope_limit(settings), JSON_SORT_KEYS=False)
    app.extensions[RUNTIME_KEY] = rt
    app.register_blueprint(inbound_blueprint(rt, ses.SnsVerifier(sns_fetch)))
    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    app.add_url_rule("/", "home", home, methods=["GET"])  # Flask answers HEAD from GET
    app.add_url_rule("/readme", "readme", readme, methods=["GET"])
    app.register_error_handler(RequestEntityTooLarge, _too_large_handler)
    warn_unconfigured(settings)
    _mount_slack(app, rt)
    return app


def runtime() -> Runtime:
    return current_app.extensions[RUNTIME_KEY]


@dataclass(frozen=True)
class Endpoint:
    """An inbound endpoint, who posts to it, and whether its credentials are set."""

    path: str
    provider: str
    variables: str
    configured: bool


def inbound_endpoints(settings: Settings) -> list[Endpoint]:
    """The inbound endpoints and their credentials: one table for the start-up warning and the
    home page."""
    basic = bool(settings.inbound_basic_auth)
    return [
        Endpoint("/inbound/sendgrid", "SendGrid Inbound Parse",
                 "INBOUND_BASIC_AUTH or SENDGRID_WEBHOOK_PUBLIC_KEY", basic or bool(settings.sendgrid_public_keys)),
        Endpoint("/inbound/mailgun", "Mailgun Routes (/inbound/mailgun/mime for the full MIME)",
                 "MAILGUN_SIGNING_KEY", bool(settings.mailgun_signing_keys)),
        Endpoint("/inbound/postmark", "Postmark inbound webhook", "INBOUND_BASIC_AUTH", basic),
        Endpoint("/inbound/ses", "Amazon SES through an SNS subscription", "INBOUND_BASIC_AUTH", basic),
        Endpoint("/inbound/mime", "anything that can POST a raw message, signed with X-Intake-Signature",
                 "INBOUND_HMAC_SECRET", bool(settings.inbound_hmac_secrets)),
    ]


def warn_unconfigured(settings: Settings) -> None:
    """An endpoint without credentials refuses everything: say so at start.

    `intake serve` calls this once in the gunicorn master and sets ``UNCONFIGURED_WARNED_ENV``,
    which its workers inherit, so ``create_app()`` in each worker stays quiet: one warning per
    process tree, not one per worker.
    """
    if os.environ.get(UNCONFIGURED_WARNED_ENV):
        return
    for endpoint in inbound_endpoints(settings):
        if not endpoint.configured:
            log.warning("no credentials configured for %s (%s): it refuses every request",
                        endpoint.path, endpoint.variables)


def _mount_slack(app: Flask, rt: Runtime) -> None:
    """Mount Bolt at /slack/events (it refuses every request while Slack is not configured)."""
    from intake.slack.app import register_flask

    register_flask(app, rt)


# --- inbound -----------------------------------------------------------------------------------


def inbound_blueprint(rt: Runtime, verifier: ses.SnsVerifier) -> Blueprint:
    settings = rt.settings
    receivers: dict[str, Receiver] = {
        "sendgrid": lambda req: sendgrid.receive(req, settings),
        "mailgun": lambda req: mailgun.receive(req, settings),
        "postmark": lambda req: postmark.receive(req, settings),
        "ses": lambda req: ses.receive(req, settings, verifier),
        "mime": lambda req: mime.receive(req, settings),
    }
    bp = Blueprint("inbound", __name__)

    def make_view(provider: str, receiver: Receiver):
        def view() -> Response | tuple[Response, int]:
            if request.method == "HEAD":  # some providers probe the URL before using it
                return Response(status=200)
            return handle_inbound(rt, provider, receiver)

        view.__name__ = f"inbound_{provider}"
        return view

    for provider, receiver in receivers.items():
        bp.add_url_rule(f"/inbound/{provider}", view_func=make_view(provider, receiver), methods=["POST", "HEAD"])
    # Mailgun sends the full MIME (`body-mime`) only to a route URL that ends in "mime".
    bp.add_url_rule(
        "/inbound/mailgun/mime", endpoint="inbound_mailgun_mime",
        view_func=make_view("mailgun", receivers["mailgun"]), methods=["POST", "HEAD"],
    )
    return bp


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify(error=message), status


def handle_inbound(rt: Runtime, provider: str, receiver: Receiver) -> tuple[Response, int]:
    """Verify, store + commit, answer; enqueue the processing job once the message is durable."""
    settings = rt.settings
    body: bytes | None = None
    try:
        body = _read_body(settings, provider)
        result = receiver(_inbound_request(body))
        if isinstance(result, Delivery) and len(result.raw) > settings.max_message_bytes:
            raise TooLarge(f"the message is {len(result.raw)} bytes; the limit is {settings.max_message_bytes}")
        if isinstance(result, Acknowledged):
            return jsonify(status="ok", detail=result.detail), 200
        message_id, duplicate = store_delivery(rt, provider, result)
    except InboundError as exc:
        return _refuse(rt, provider, exc, len(body) if body is not None else request.content_length)
    except DatabaseUnavailable as exc:
        log.error("database unavailable while storing a %s delivery: %s", provider, exc)
        return _error(503, "the database is unavailable; retry later")
    if not duplicate:
        from intake.pipeline import request_processing

        try:
            request_processing(rt, message_id)
        except Exception:  # noqa: BLE001 - stored and committed: the sweeper will enqueue it
            log.exception("enqueue of message %s failed; the sweeper will pick it up", message_id)
    # The answer every provider gets on success, built directly: Flask's jsonify was a tenth of
    # the request's own work.
    body = f'{{"status":"{"duplicate" if duplicate else "stored"}","message_id":{int(message_id)}}}'
    return Response(body, status=200, mimetype="application/json"), 200


def _read_body(settings: Settings, provider: str) -> bytes:
    """The request body, or ``TooLarge`` (checked on Content-Length before anything is read)."""
    limit = settings.max_message_bytes if provider == "mime" else envelope_limit(settings)
    declared = request.content_length
    if declared is not None and declared > limit:
        raise TooLarge(f"the request is {declared} bytes; the limit is {limit}")
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise TooLarge(f"the request is over the limit of {limit} bytes") from None
    # A chunked body (no Content-Length) is cut off at MAX_CONTENT_LENGTH without an error, so a
    # body that reaches the cap is treated as over it rather than stored truncated.
    if declared is None and len(body) >= envelope_limit(settings):
        raise TooLarge(f"the request is over the limit of {limit} bytes")
    return body


def _inbound_request(body: bytes) -> InboundRequest:
    return InboundRequest(
        body=body,
        headers=request.headers,
        content_type=request.content_type or "",
        mimetype=request.mimetype or "",
        authorization=parse_basic_auth(request.headers.get("Authorization")),
    )


def _is_connection_failure(exc: BaseException) -> bool:
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeoutError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def store_delivery(rt: Runtime, provider: str, delivery: Delivery) -> tuple[int, bool]:
    """Message + receipt (+ replay nonce) in one transaction; returns (message id, duplicate)."""
    if delivery.nonce is None and rt.db.direct is not None:
        return _store_direct(rt, provider, delivery)
    from intake.inquiries import store_raw
    from intake.models import SeenNonce

    try:
        with rt.db.session() as session:
            if delivery.nonce is not None:
                kind, value = delivery.nonce
                session.add(SeenNonce(kind=kind, value=value))
                session.flush()
            stored = store_raw(
                session,
                delivery.raw,
                provider=provider,
                provider_event_id=delivery.provider_event_id,
                meta=delivery.meta or None,
            )
    except IntegrityError as exc:
        if delivery.nonce is not None and is_unique_violation(exc):
            raise Unauthorized("this signature token was already used (replayed request)") from None
        raise
    except SQLAlchemyError as exc:
        if _is_connection_failure(exc):
            raise DatabaseUnavailable(exc.__class__.__name__) from exc
        raise
    return stored.message_id, stored.duplicate


def _store_direct(rt: Runtime, provider: str, delivery: Delivery) -> tuple[int, bool]:
    """PostgreSQL's hot path: one autocommit statement on the thread's held connection
    (intake.db.DirectConnection); no session, no pool checkout, no ping."""
    from psycopg import InterfaceError as PgInterfaceError
    from psycopg import OperationalError as PgOperationalError

    from intake.inquiries.store import store_raw_direct

    assert rt.db.direct is not None
    attempts = 0

    def store(cursor):
        nonlocal attempts
        attempts += 1
        return store_raw_direct(cursor, delivery.raw, provider=provider,
                                provider_event_id=delivery.provider_event_id, meta=delivery.meta or None)

    try:
        stored = rt.db.direct.run(store)
    except (PgOperationalError, PgInterfaceError) as exc:
        raise DatabaseUnavailable(exc.__class__.__name__) from exc
    if attempts > 1 and stored.duplicate and stored.inquiry_id is None:
        # The first attempt committed but its answer was lost with the connection: the message
        # is this request's own, and still needs its processing job.
        return stored.message_id, False
    return stored.message_id, stored.duplicate


def _refuse(rt: Runtime, provider: str, error: InboundError, size: int | None) -> tuple[Response, int]:
    """Answer a refused delivery and note it in the receipts ledger (best effort)."""
    log.info("refused %s delivery (%s): %s", provider, error.status, error.message)
    try:
        from intake.inquiries import record_receipt

        with rt.db.session() as session:
            record_receipt(session, provider, error.outcome, size=size, detail=error.message)
    except Exception as exc:  # noqa: BLE001 - the refusal stands even when the ledger is down
        log.warning("could not record the refused %s delivery: %s", provider, exc.__class__.__name__)
    return _error(error.status, error.message)


def _too_large_handler(_exc: RequestEntityTooLarge) -> tuple[Response, int]:
    return _error(413, "the request is too large")


# --- health ------------------------------------------------------------------------------------


def health(rt: Runtime) -> tuple[dict[str, str], bool]:
    """Each part ("ok" or "down: <kind of error>", never the error's text) and whether all are ok."""
    parts: dict[str, str] = {}
    for name, check in (("database", rt.db.ping), ("queue", rt.queue.ping)):
        try:
            check()
            parts[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "down"; say which kind
            log.warning("health check: %s is down: %s", name, exc)
            parts[name] = f"down: {exc.__class__.__name__}"
    return parts, all(value == "ok" for value in parts.values())


def healthz() -> tuple[Response, int]:
    parts, healthy = health(runtime())
    return jsonify(parts), 200 if healthy else 503


def home() -> tuple[str, int]:
    """What someone who opens the deployed URL sees: what this is, health, the endpoints.

    Rendered by Jinja with autoescaping (Flask turns it on for .html templates), so nothing on
    the page can inject markup; it names the credential variables, never their values. 503
    when unhealthy, like /healthz, so a load balancer probing "/" is told the truth too.
    """
    from intake import __version__

    rt = runtime()
    parts, healthy = health(rt)
    page = render_template(
        "home.html", health=parts, healthy=healthy, endpoints=inbound_endpoints(rt.settings),
        slack=rt.settings.slack_enabled, version=__version__,
    )
    return page, 200 if healthy else 503


def readme() -> Response:
    """The README this version was installed with (the package metadata carries it), so the
    home page can link to setup instructions even where the source tree is not deployed."""
    from importlib.metadata import metadata

    return Response(metadata("intake").get_payload() or "", mimetype="text/plain")

"""What every inbound provider shares: the request it reads, the results and errors it returns.

Each provider module (``sendgrid``, ``mailgun``, ``postmark``, ``ses``, ``mime``) exposes
``receive(request, settings) -> Delivery | Acknowledged``, which verifies the credentials first and
only then reads the payload, so nothing an unauthenticated caller sent is ever parsed beyond the
few fields the signature covers. The web layer (``intake.app``) turns the errors into HTTP answers
and stores the ``Delivery``; the providers never touch the database.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from werkzeug.datastructures import Authorization

from intake.inbound.forms import FormData, FormError, parse_form
from intake.models import fit_identifier

# Mailgun and SendGrid's signed webhook: a signature older (or newer) than this is refused.
MAX_CLOCK_SKEW_SECONDS = 5 * 60


class InboundError(Exception):
    """A delivery we refuse; ``status`` is the HTTP answer and ``outcome`` the receipt's."""

    status = 400
    outcome = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(InboundError):
    status = 401
    outcome = "unauthorized"


class Malformed(InboundError):
    status = 400
    outcome = "invalid"


class TooLarge(InboundError):
    status = 413
    outcome = "too_large"


@dataclass(frozen=True)
class Delivery:
    """A verified message to store: its raw RFC 822 bytes plus what the provider told us."""

    raw: bytes
    provider_event_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # A single-use value (kind, value) to insert in the same transaction as the message, so a
    # replayed request fails on the unique constraint (Mailgun's token).
    nonce: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        # Ids and tokens come from the sender or the provider: any length, any characters.
        object.__setattr__(self, "provider_event_id", fit_identifier(self.provider_event_id))
        if self.nonce is not None:
            object.__setattr__(self, "nonce", (self.nonce[0], fit_identifier(self.nonce[1])))


@dataclass(frozen=True)
class Acknowledged:
    """A verified request that carries no message (an SNS subscription confirmation)."""

    detail: str


@dataclass
class InboundRequest:
    """The parts of an HTTP request a provider needs, free of Flask so providers test alone."""

    body: bytes
    headers: Mapping[str, str]
    content_type: str = ""
    mimetype: str = ""
    authorization: tuple[str, str] | None = None  # (username, password) of HTTP basic auth
    _form: FormData | None = None

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if value is None else str(value)

    @property
    def form(self) -> FormData:
        """The body as a form with raw byte values (parsed once, on first use)."""
        if self._form is None:
            try:
                self._form = parse_form(self.content_type, self.body)
            except FormError as exc:
                raise Malformed(str(exc)) from None
        return self._form

    def json(self) -> Any:
        """The body as JSON, or ``Malformed`` saying why not."""
        if not self.body.strip():
            raise Malformed("the request body is empty; expected a JSON object")
        try:
            return load_json(self.body)
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            raise Malformed(f"the request body is not valid JSON: {exc}") from None


def load_json(data: str | bytes) -> Any:
    """``json.loads`` whose only failure is ``ValueError``: the stdlib parser recurses once per
    nesting level, so ``[[[[...`` raises RecursionError, which is a malformed request to answer
    400, not a failure of ours."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def text_bytes(value: str) -> bytes:
    """A message that arrived as a JSON string, as bytes to store.

    Surrogate escapes (U+DC80..U+DCFF) stand for the raw bytes they came from; any other lone
    surrogate (``\\ud800`` is valid JSON) has no UTF-8 form and is kept in its UTF-16 code
    unit's three-byte form rather than refused: the bytes are stored, and the parser reads them
    as undecodable text.
    """
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def constant_time_in(candidate: str | bytes, accepted: Iterable[str | bytes]) -> bool:
    """True when ``candidate`` equals one of ``accepted``, comparing each in constant time.

    Every accepted value is compared (no early exit), so timing reveals neither the value nor
    which of several rotated credentials matched.
    """
    cand = candidate.encode("utf-8") if isinstance(candidate, str) else candidate
    found = False
    for value in accepted:
        expected = value.encode("utf-8") if isinstance(value, str) else value
        found |= hmac.compare_digest(cand, expected)
    return found


def require_basic_auth(request: InboundRequest, accepted: Iterable[str], provider: str) -> None:
    """Refuse unless the request's basic-auth ``user:password`` is one of ``accepted``."""
    accepted = tuple(accepted)
    if not accepted:
        raise Unauthorized(f"{provider} inbound is not configured (set INBOUND_BASIC_AUTH)")
    if request.authorization is None:
        raise Unauthorized("missing HTTP basic auth credentials")
    user, password = request.authorization
    if not constant_time_in(f"{user}:{password}", accepted):
        raise Unauthorized("wrong HTTP basic auth credentials")


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """``Authorization: Basic ...`` as (user, password), or None when absent or not basic."""
    auth = Authorization.from_header(header)
    if auth is None or auth.type != "basic":
        return None
    return auth.username or "", auth.password or ""


def text_field(form: FormData, name: str) -> str | None:
    """One form field as text (UTF-8, undecodable bytes replaced), or None when absent."""
    value = form.get(name)
    return None if value is None else value.decode("utf-8", "replace")

"""XOAUTH2 access tokens bought with a refresh token, renewed before they expire.

Google Workspace and Microsoft 365 no longer accept passwords over IMAP. The operator registers
an OAuth2 client once and obtains a refresh token (README: "Reading a mailbox over IMAP"); this
module trades it for short-lived access tokens at the provider's token endpoint. The refresh
grant is one form POST, so ``requests`` (already a dependency) does it; a full OAuth library
would add a dependency for a single call.

Secrets (client secret, refresh token, access tokens) never reach a log line, an exception
message or a ``repr``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import requests

from intake.imap.settings import OAuth2Client

log = logging.getLogger(__name__)

# Renew when less than this much of a token's life is left, so that a login or a long IDLE
# never starts with a token about to lapse.
REFRESH_MARGIN_SECONDS = 300.0
# When the endpoint gives no expires_in; both providers give 3,600 s.
DEFAULT_LIFETIME_SECONDS = 3600.0
REQUEST_TIMEOUT_SECONDS = 20.0


class TokenError(Exception):
    """The token endpoint refused or failed; the message carries no secret."""


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float  # time.monotonic() clock

    def seconds_left(self, now: float | None = None) -> float:
        return self.expires_at - (time.monotonic() if now is None else now)

    def __repr__(self) -> str:
        return f"AccessToken(expires in {self.seconds_left():.0f}s)"


class TokenSource:
    """Hands out a valid access token, refreshing it when it is close to expiry (thread-safe).

    Microsoft may rotate the refresh token in its answer; the newest one is kept in memory.
    """

    def __init__(self, client: OAuth2Client, *, margin: float = REFRESH_MARGIN_SECONDS,
                 session: requests.Session | None = None) -> None:
        self.client = client
        self.margin = margin
        self._refresh_token = client.refresh_token
        self._token: AccessToken | None = None
        self._lock = threading.Lock()
        self._http = session or requests.Session()
        self.refreshes = 0

    def token(self) -> AccessToken:
        with self._lock:
            if self._token is None or self._token.seconds_left() <= self.margin:
                self._token = self._refresh()
            return self._token

    def _refresh(self) -> AccessToken:
        form = {
            "grant_type": "refresh_token",
            "client_id": self.client.client_id,
            "refresh_token": self._refresh_token,
        }
        if self.client.client_secret:
            form["client_secret"] = self.client.client_secret
        if self.client.scope:
            form["scope"] = self.client.scope
        try:
            answer = self._http.post(self.client.token_url, data=form, timeout=REQUEST_TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            raise TokenError(f"the OAuth2 token endpoint {self.client.token_url} is unreachable: "
                             f"{exc.__class__.__name__}") from None
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if answer.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            # error / error_description are the provider's words (invalid_grant: the refresh
            # token was revoked or expired); they never echo the secrets.
            reason = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
            raise TokenError(
                f"the OAuth2 token endpoint refused the refresh token (HTTP {answer.status_code}"
                f"{': ' + str(reason)[:200] if reason else ''})"
            )
        if body.get("refresh_token"):
            self._refresh_token = body["refresh_token"]
        try:
            lifetime = float(body.get("expires_in") or DEFAULT_LIFETIME_SECONDS)
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME_SECONDS
        self.refreshes += 1
        log.info("OAuth2 access token refreshed for client %s (valid %.0fs)", self.client.client_id, lifetime)
        return AccessToken(body["access_token"], time.monotonic() + lifetime)

"""``IMAP_URL`` and the ``IMAP_OAUTH2_*`` variables: parsed and checked once, at start.

``IMAP_URL`` is a comma-separated list of mailbox URLs (see ../shared/DESIGN.md)::

    imaps://USER:PASS@HOST:993/INBOX?processed=Processed
    imap://USER:PASS@HOST/INBOX                   (STARTTLS required)
    imap://USER:PASS@HOST/INBOX?starttls=never    (plain text: a local test server only)
    imaps://USER@HOST/INBOX?auth=xoauth2          (OAuth2; a URL without password means the same)

The user name may contain ``@`` (the last ``@`` ends it); other reserved characters in the user,
password or folder (``,``, ``/``, ``?``, ``#``, ``%``) are percent-encoded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from intake.config import ConfigError

DEFAULT_KEYWORD = "$Intake"
SECURITY_BY_SCHEME = {"imaps": "tls", "imap": "starttls"}
DEFAULT_PORTS = {"imaps": 993, "imap": 143}
KNOWN_PARAMETERS = {"processed", "starttls", "auth", "keyword"}

# Token endpoints of the two providers that no longer take passwords over IMAP. Microsoft's
# refresh grant must name the scope again; Google's keeps the one the refresh token was made for.
OAUTH2_PRESETS: dict[str, dict[str, str | None]] = {
    "google": {"token_url": "https://oauth2.googleapis.com/token", "scope": None},
    "microsoft": {
        "token_url": "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
        "scope": "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access",
    },
}


@dataclass(frozen=True)
class Mailbox:
    """One folder to read, and how to reach and authenticate to its server."""

    host: str
    port: int
    security: str  # tls (imaps://), starttls (imap://), none (imap://...?starttls=never)
    username: str
    password: str | None  # None: XOAUTH2
    folder: str
    processed_folder: str | None  # move stored messages there; None: flag them with `keyword`
    keyword: str = DEFAULT_KEYWORD

    @property
    def uses_oauth2(self) -> bool:
        return self.password is None

    @property
    def name(self) -> str:
        """The ledger's key for this mailbox: who, where, which folder; never a secret."""
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"

    def __repr__(self) -> str:  # the dataclass repr would print the password
        return f"Mailbox({self.name!r}, security={self.security!r})"


@dataclass(frozen=True)
class OAuth2Client:
    """The OAuth2 client and refresh token that buy XOAUTH2 access tokens."""

    client_id: str
    client_secret: str | None
    refresh_token: str
    token_url: str
    scope: str | None

    def __repr__(self) -> str:  # never print the secret or the refresh token
        return f"OAuth2Client(client_id={self.client_id!r}, token_url={self.token_url!r})"


@dataclass(frozen=True)
class ImapSettings:
    mailboxes: tuple[Mailbox, ...]
    oauth2: OAuth2Client | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ImapSettings":
        env = os.environ if env is None else env
        oauth2 = _oauth2_from_env(env)
        mailboxes = tuple(
            parse_mailbox_url(part.strip(), oauth2_configured=oauth2 is not None)
            for part in (env.get("IMAP_URL") or "").split(",")
            if part.strip()
        )
        return cls(mailboxes, oauth2)


def parse_mailbox_url(url: str, *, oauth2_configured: bool = False) -> Mailbox:
    """One ``IMAP_URL`` entry, or a ``ConfigError`` that says what is wrong (never the password)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    shown = f"{scheme}://{parts.hostname or '?'}{parts.path}"
    if scheme not in SECURITY_BY_SCHEME:
        raise ConfigError(f"IMAP_URL entries start with imaps:// or imap://, not {scheme or '(nothing)'}://")
    if not parts.hostname:
        raise ConfigError(f"IMAP_URL entry {shown} has no host")
    if not parts.username:
        raise ConfigError(f"IMAP_URL entry {shown} has no user name (imaps://USER:PASS@HOST/FOLDER)")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - KNOWN_PARAMETERS)
    if unknown:
        raise ConfigError(
            f"IMAP_URL entry {shown} has unknown parameters {', '.join(unknown)} "
            f"(known: {', '.join(sorted(KNOWN_PARAMETERS))})"
        )
    option = {key: values[-1] for key, values in query.items()}
    security = SECURITY_BY_SCHEME[scheme]
    starttls = option.get("starttls", "required").lower()
    if starttls not in ("required", "never"):
        raise ConfigError(f"IMAP_URL entry {shown}: starttls= is required or never, not {starttls!r}")
    if starttls == "never":
        if scheme == "imaps":
            raise ConfigError(f"IMAP_URL entry {shown}: starttls=never only applies to imap://")
        security = "none"
    auth = option.get("auth", "").lower()
    if auth not in ("", "password", "xoauth2"):
        raise ConfigError(f"IMAP_URL entry {shown}: auth= is password or xoauth2, not {auth!r}")
    password = unquote(parts.password) if parts.password is not None else None
    if auth == "xoauth2" or (auth == "" and not password):
        if not oauth2_configured:
            raise ConfigError(
                f"IMAP_URL entry {shown} has no password, so it needs OAuth2: set "
                "IMAP_OAUTH2_CLIENT_ID, IMAP_OAUTH2_REFRESH_TOKEN and IMAP_OAUTH2_PROVIDER "
                "(google or microsoft) or IMAP_OAUTH2_TOKEN_URL"
            )
        password = None
    elif not password:
        raise ConfigError(f"IMAP_URL entry {shown} says auth=password but has no password")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ConfigError(f"IMAP_URL entry {shown} has a port that is not a number") from None
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    processed = option.get("processed")
    if processed is not None and not processed.strip():
        raise ConfigError(f"IMAP_URL entry {shown}: processed= names a folder")
    if processed is not None and processed == folder:
        raise ConfigError(f"IMAP_URL entry {shown}: processed= must be another folder than {folder}")
    keyword = option.get("keyword", DEFAULT_KEYWORD)
    if not keyword or any(c in keyword for c in ' ()[]{}%*"\\'):
        raise ConfigError(f"IMAP_URL entry {shown}: keyword= must be one IMAP atom, like $Intake")
    return Mailbox(
        host=parts.hostname,
        port=port,
        security=security,
        username=unquote(parts.username),
        password=password,
        folder=folder,
        processed_folder=processed,
        keyword=keyword,
    )


def _oauth2_from_env(env: Mapping[str, str]) -> OAuth2Client | None:
    client_id = env.get("IMAP_OAUTH2_CLIENT_ID") or None
    refresh_token = env.get("IMAP_OAUTH2_REFRESH_TOKEN") or None
    if not client_id and not refresh_token:
        return None
    if not client_id or not refresh_token:
        raise ConfigError("IMAP OAuth2 needs both IMAP_OAUTH2_CLIENT_ID and IMAP_OAUTH2_REFRESH_TOKEN")
    provider = (env.get("IMAP_OAUTH2_PROVIDER") or "").lower() or None
    if provider is not None and provider not in OAUTH2_PRESETS:
        raise ConfigError(
            f"IMAP_OAUTH2_PROVIDER is one of {', '.join(OAUTH2_PRESETS)}, not {provider!r}"
        )
    preset = OAUTH2_PRESETS.get(provider or "", {})
    token_url = env.get("IMAP_OAUTH2_TOKEN_URL") or preset.get("token_url")
    if not token_url:
        raise ConfigError(
            "IMAP OAuth2 needs a token endpoint: IMAP_OAUTH2_PROVIDER=google or microsoft, "
            "or IMAP_OAUTH2_TOKEN_URL"
        )
    token_url = token_url.replace("{tenant}", env.get("IMAP_OAUTH2_TENANT") or "organizations")
    return OAuth2Client(
        client_id=client_id,
        client_secret=env.get("IMAP_OAUTH2_CLIENT_SECRET") or None,
        refresh_token=refresh_token,
        token_url=token_url,
        scope=env.get("IMAP_OAUTH2_SCOPE") or preset.get("scope"),
    )

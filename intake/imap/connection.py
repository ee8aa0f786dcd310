"""One authenticated IMAP connection: TLS or STARTTLS, then a password or XOAUTH2.

Why IMAPClient: it is maintained, synchronous (one thread per mailbox keeps the reader simple),
speaks UIDs by default, parses FETCH/SEARCH responses into Python values, and has the commands
this reader needs (STARTTLS, XOAUTH2, IDLE with a timeout, MOVE, UID EXPUNGE) tested against
Gmail, Exchange and Dovecot. imaplib alone would mean hand-parsing responses; aioimaplib would
bring an event loop into a process that has none; imap-tools hides UIDVALIDITY and batches
behind a higher-level API this reader must control itself.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from intake.imap.oauth import TokenSource
from intake.imap.settings import Mailbox

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 60.0


class ImapSetupError(Exception):
    """The server cannot be used as configured (no STARTTLS, login refused, no MOVE)."""


@dataclass
class Connection:
    client: IMAPClient
    # When the access token used to log in expires (time.monotonic()); None for a password.
    # Microsoft ends a session whose token lapsed, so the runner logs in again before then.
    token_expires_at: float | None = None

    @property
    def can_idle(self) -> bool:
        return self.client.has_capability("IDLE")

    def seconds_left(self) -> float:
        if self.token_expires_at is None:
            return float("inf")
        return self.token_expires_at - time.monotonic()

    def close(self) -> None:
        """Log out, or at least drop the socket; never raises (the connection may be dead)."""
        try:
            self.client.logout()
        except Exception:  # noqa: BLE001 - a dead connection cannot log out; drop it
            try:
                self.client.shutdown()
            except Exception:  # noqa: BLE001
                pass


def _quiet_protocol_log() -> None:
    # imaplib's protocol trace (which IMAPClient routes to this logger at DEBUG) prints LOGIN
    # with its password; it must never be emitted, whatever level the root logger has.
    logging.getLogger("imapclient.imaplib").setLevel(logging.INFO)


def connect(mailbox: Mailbox, tokens: TokenSource | None = None, *,
            ssl_context: ssl.SSLContext | None = None, timeout: float = TIMEOUT_SECONDS) -> Connection:
    """Connect, secure and authenticate; credentials are sent only over TLS unless the URL
    says ``?starttls=never``."""
    _quiet_protocol_log()
    context = ssl_context or ssl.create_default_context()
    client = IMAPClient(mailbox.host, port=mailbox.port, ssl=mailbox.security == "tls",
                        ssl_context=context, timeout=timeout)
    try:
        if mailbox.security == "starttls":
            if not client.has_capability("STARTTLS"):
                raise ImapSetupError(
                    f"{mailbox.host}:{mailbox.port} does not offer STARTTLS; refusing to send "
                    "credentials in clear text (use imaps://, or ?starttls=never for a local test server)"
                )
            client.starttls(context)
        expires_at = None
        if mailbox.uses_oauth2:
            if tokens is None:
                raise ImapSetupError(f"{mailbox.name} needs OAuth2, and IMAP_OAUTH2_* is not set")
            token = tokens.token()
            client.oauth2_login(mailbox.username, token.value)
            expires_at = token.expires_at
        else:
            client.login(mailbox.username, mailbox.password)
        if mailbox.processed_folder and not (client.has_capability("MOVE") or client.has_capability("UIDPLUS")):
            raise ImapSetupError(
                f"{mailbox.host} supports neither MOVE nor UIDPLUS, so ?processed= cannot move "
                "exactly the stored messages; leave processed= out to flag them instead"
            )
        return Connection(client, expires_at)
    except IMAPClientError as exc:
        Connection(client).close()
        # The server's words (e.g. "[AUTHENTICATIONFAILED] Authentication failed.") never echo
        # the password or the token.
        text = str(exc)
        if text.startswith(("b'", 'b"')):  # imaplib hands the server's words over as bytes
            text = text[2:-1]
        raise ImapSetupError(f"{mailbox.name}: {text}") from None
    except BaseException:
        Connection(client).close()
        raise

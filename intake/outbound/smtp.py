"""Delivering stored bytes over SMTP, with TLS and authentication from ``SMTP_URL``.

``smtplib`` from the stdlib does the protocol (it is complete, maintained with Python and has no
dependencies); this module only turns the URL into a policy and sorts failures into "try again
later" (connection trouble, 4xx) and "will never work" (5xx for the recipient or the message).

URL forms (see docs/outbound.md):
- ``smtps://user:pass@host:465``: TLS from the first byte.
- ``smtp://user:pass@host:587``: STARTTLS, required (port 587 is the submission port, and
  credentials are never sent in clear text).
- ``smtp://host:25``: STARTTLS when the server offers it (opportunistic), else plain.
- query parameters: ``starttls=required|optional|never``, ``cafile=/path/ca.pem`` (trust a
  private CA), ``timeout=30`` (seconds), ``helo=name``.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from intake.outbound.options import OutboundConfigError

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # "ssl", "starttls" (required), "opportunistic", "none"
    username: str | None = None
    password: str | None = None
    cafile: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    helo: str | None = None

    def describe(self) -> str:
        """For logs: never the password."""
        who = f"{self.username}@" if self.username else ""
        return f"{self.security} {who}{self.host}:{self.port}"


def smtp_settings(url: str) -> SmtpSettings:
    """Parse ``SMTP_URL``; a mistake raises :class:`OutboundConfigError` naming the fix."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps") or not parts.hostname:
        raise OutboundConfigError(
            "SMTP_URL must look like smtp://user:password@host:587 or smtps://user:password@host:465"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        port = parts.port or (465 if scheme == "smtps" else 587)
    except ValueError:
        raise OutboundConfigError("SMTP_URL has a port that is not a number") from None
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if scheme == "smtps":
        security = "ssl"
    else:
        starttls = query.get("starttls", "").lower()
        if starttls not in ("", "required", "optional", "never"):
            raise OutboundConfigError("SMTP_URL starttls= must be required, optional or never")
        if starttls == "required" or (not starttls and (port == 587 or username)):
            security = "starttls"
        elif starttls == "never":
            security = "none"
        else:
            security = "opportunistic"
    try:
        timeout = float(query.get("timeout", DEFAULT_TIMEOUT))
    except ValueError:
        raise OutboundConfigError("SMTP_URL timeout= must be a number of seconds") from None
    return SmtpSettings(
        host=parts.hostname,
        port=port,
        security=security,
        username=username,
        password=password,
        cafile=query.get("cafile") or None,
        timeout=timeout,
        helo=query.get("helo") or None,
    )


class DeliveryError(Exception):
    """Sending failed. ``permanent`` says whether trying again can ever help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def _tls_context(cfg: SmtpSettings) -> ssl.SSLContext:
    # Verification stays on: a private relay is trusted by naming its CA (cafile=), never by
    # switching checks off.
    return ssl.create_default_context(cafile=cfg.cafile)


def _connect(cfg: SmtpSettings) -> smtplib.SMTP:
    if cfg.security == "ssl":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            cfg.host, cfg.port, local_hostname=cfg.helo, timeout=cfg.timeout, context=_tls_context(cfg)
        )
    else:
        client = smtplib.SMTP(cfg.host, cfg.port, local_hostname=cfg.helo, timeout=cfg.timeout)
    client.ehlo()
    if cfg.security in ("starttls", "opportunistic"):
        if client.has_extn("starttls"):
            client.starttls(context=_tls_context(cfg))
            client.ehlo()
        elif cfg.security == "starttls":
            client.close()
            raise DeliveryError(
                f"{cfg.host}:{cfg.port} does not offer STARTTLS, which SMTP_URL requires", permanent=False
            )
    if cfg.username:
        client.login(cfg.username, cfg.password or "")
    return client


# 5xx codes that mean "our setup is wrong" (TLS required, authentication), not "this message can
# never be delivered": the operator fixes SMTP_URL and the queued mail then goes out.
CONFIGURATION_CODES = frozenset({530, 534, 535, 538})


def _is_permanent(code: int | None) -> bool:
    return code is not None and 500 <= code < 600 and code not in CONFIGURATION_CODES


class Connection:
    """One SMTP connection for several messages (a batch of acknowledgments), opened on the
    first send and reopened after a failure; each message is its own MAIL/RCPT/DATA with the
    same "later" or "never" verdict on failure as a message sent alone. A relay that drops
    idle or long-lived connections costs a reconnect, never a message."""

    def __init__(self, cfg: SmtpSettings) -> None:
        self.cfg = cfg
        self.client: smtplib.SMTP | None = None
        # Set when the relay could not be reached: the batch's other messages fail the same way
        # at once instead of each waiting out a connect timeout (they are all retried later).
        self.unreachable: DeliveryError | None = None

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self) -> smtplib.SMTP:
        cfg = self.cfg
        try:
            return _connect(cfg)
        except DeliveryError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            # Wrong credentials do not fix themselves, but an operator can fix them: retrying later
            # (with backoff) lets the queue drain once they do.
            raise DeliveryError(f"SMTP login refused ({exc.smtp_code})", permanent=False) from exc
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            raise DeliveryError(f"cannot connect to {cfg.host}:{cfg.port}: {exc.__class__.__name__}: {exc}",
                                permanent=False) from exc

    def send(self, envelope_from: str, recipient: str, raw: bytes) -> str:
        """Send ``raw`` as-is to one recipient; return the server's answer for the record."""
        if self.unreachable is not None:
            raise DeliveryError(str(self.unreachable), permanent=False)
        if self.client is None:
            try:
                self.client = self._open()
            except DeliveryError as exc:
                self.unreachable = exc
                raise
        client = self.client
        try:
            refused = client.sendmail(envelope_from, [recipient], raw)
            if refused:  # pragma: no cover - one recipient: refusal raises instead
                raise DeliveryError(f"recipient refused: {refused}", permanent=True)
            return "accepted"
        except smtplib.SMTPRecipientsRefused as exc:
            self._reset()
            code = next(iter(exc.recipients.values()))[0]
            raise DeliveryError(f"recipient refused ({code})", permanent=_is_permanent(code)) from exc
        except smtplib.SMTPResponseException as exc:
            self._reset()
            raise DeliveryError(
                f"server answered {exc.smtp_code}: {exc.smtp_error!r}", permanent=_is_permanent(exc.smtp_code)
            ) from exc
        except (OSError, smtplib.SMTPException, socket.timeout) as exc:
            self.close()
            raise DeliveryError(f"connection lost: {exc.__class__.__name__}: {exc}", permanent=False) from exc

    def _reset(self) -> None:
        """After a refused transaction: RSET so the next message starts clean (or reconnect)."""
        try:
            if self.client is not None:
                self.client.rset()
        except Exception:  # the connection is in an unknown state: start over next time
            self.close()

    def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            client.quit()
        except Exception:  # the messages' fate is already decided; a failed QUIT changes nothing
            client.close()


def deliver(cfg: SmtpSettings, envelope_from: str, recipient: str, raw: bytes) -> str:
    """Send ``raw`` as-is to one recipient over a connection of its own."""
    with Connection(cfg) as connection:
        return connection.send(envelope_from, recipient, raw)

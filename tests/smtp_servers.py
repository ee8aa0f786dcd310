"""Real SMTP servers for the outbound tests, run in-process on 127.0.0.1 with aiosmtpd.

- :func:`plain_server`: accepts everything and records what it received.
- :func:`secure_server`: requires STARTTLS (a self-signed certificate generated for the test)
  and AUTH before it accepts mail.
- :class:`DroppingServer`: accepts TCP connections and closes them at once (a crashed relay);
  a port with nothing listening gives "connection refused".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Iterator

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    authenticated: bool

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=default_policy)


@dataclass
class Recorder:
    """aiosmtpd handler: keeps every accepted message; can answer DATA with chosen codes."""

    received: list[Received] = field(default_factory=list)
    data_responses: list[str] = field(default_factory=list)  # popped one per DATA, then 250

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        if self.data_responses:
            return self.data_responses.pop(0)
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content or envelope.content,
                tls=session.ssl is not None,
                authenticated=bool(session.authenticated),
            )
        )
        return "250 Message accepted for delivery"


@dataclass
class RunningServer:
    controller: Controller
    recorder: Recorder
    port: int
    cafile: str | None = None

    @property
    def received(self) -> list[Received]:
        return self.recorder.received

    def url(self, user: str | None = None, password: str | None = None, **params: str) -> str:
        auth = f"{user}:{password}@" if user else ""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"smtp://{auth}127.0.0.1:{self.port}" + (f"?{query}" if query else "")


@contextlib.contextmanager
def plain_server(port: int | None = None, recorder: Recorder | None = None) -> Iterator[RunningServer]:
    """Plain SMTP, no TLS offered, no AUTH: the relay of a laptop or a test."""
    recorder = recorder or Recorder()
    port = port or free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield RunningServer(controller, recorder, port)
    finally:
        controller.stop()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost, valid for a day: (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class PasswordCheck:
    """aiosmtpd authenticator accepting one user; remembers every attempt."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user.encode(), password.encode()
        self.attempts: list[tuple[str, bytes]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        self.attempts.append((mechanism, auth_data.login))
        ok = auth_data.login == self.user and auth_data.password == self.password
        # handled=False: let aiosmtpd answer 535 itself (the default assumes we already replied).
        return AuthResult(success=ok, handled=False)


@contextlib.contextmanager
def secure_server(directory: Path, user: str = "intake", password: str = "s3cret") -> Iterator[RunningServer]:
    """Refuses MAIL before STARTTLS and before AUTH, like a real submission server (port 587)."""
    cert, key = make_certificate(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    recorder = Recorder()
    port = free_port()
    checker = PasswordCheck(user, password)
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=checker,
    )
    controller.start()
    try:
        server = RunningServer(controller, recorder, port, cafile=str(cert))
        server.checker = checker  # type: ignore[attr-defined]
        yield server
    finally:
        controller.stop()


class DroppingServer:
    """Accepts connections and closes them immediately, before any greeting."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.connections = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def __enter__(self) -> "DroppingServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


# --- Inquiries for the outbound tests, inserted with the ORM the way the pipeline stores them ---

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "outbound"


def seed_inquiry(rt, raw: bytes, *, category: str = "general", status: str = "new",
                 authentication: str = "pass") -> tuple[int, int]:
    """Store ``raw`` as the first inbound message of a new inquiry: (inquiry id, message row id).

    ``authentication`` is the sender-authentication verdict the pipeline would have recorded
    (default: a provider vouched for the From address, as for most real mail).

    Headers are decoded with the stdlib here so that these tests do not depend on the mail layer;
    the outbound code itself re-reads the raw bytes for everything that matters for safety.
    """
    import hashlib

    from intake.models import Contact, Inquiry, Message
    from intake.outbound.loops import facts_from_raw

    msg = message_from_bytes(raw, policy=default_policy)

    # The stdlib's strict parser refuses a display name hiding CR/LF; the tolerant header reader
    # keeps it decoded, line breaks included, which is the nastiest thing a pipeline could store.
    facts = facts_from_raw(raw)
    name, sender, reply_to = facts.from_name, facts.from_address, facts.reply_to
    try:
        subject = str(msg.get("Subject") or "")
    except Exception:
        subject = ""
    message_id = (str(msg.get("Message-ID") or "").strip().strip("<>")) or None
    body = msg.get_body(("plain",))
    text = body.get_content() if body is not None else ""
    # The mail layer's verdict on machine-written mail, stored as the pipeline stores it (the
    # acknowledgment reads it rather than parsing the message again).
    from intake import mail

    try:
        automation = mail.parse(raw, max_attachment_bytes=0).automation
        automated, reasons = automation.automated, list(automation.reasons) or None
    except Exception:  # an unparseable fixture: the header checks alone decide
        automated, reasons = False, None
    with rt.db.session() as session:
        contact = None
        if sender:
            contact = session.query(Contact).filter_by(address=sender).one_or_none() or Contact(address=sender, name=name)
        inquiry = Inquiry(contact=contact, subject=subject, thread_subject=subject.lower(),
                          category=category, status=status)
        session.add(inquiry)
        session.flush()
        row = Message(
            inquiry_id=inquiry.id, direction="inbound", kind="email", source="email", provider="test",
            dedupe_key=f"mid:{message_id}" if message_id else f"sha:{hashlib.sha256(raw).hexdigest()}",
            message_id=message_id, references=str(msg.get("References") or "") or None,
            sender_address=sender, sender_name=name, reply_to=reply_to, subject=subject,
            text_body=text, latest_reply=text, raw=raw, sha256=hashlib.sha256(raw).hexdigest(),
            size=len(raw), parse_status="parsed", state="processed",
            automated=automated, automation_reasons=reasons, authentication=authentication,
        )
        session.add(row)
        session.flush()
        return inquiry.id, row.id


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()

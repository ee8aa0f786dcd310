"""A real IMAP server for the IMAP tests: a private Dovecot instance, plus its helpers.

- :class:`Dovecot`: ``dovecot -c CONF`` with its base_dir, state_dir, log and maildirs in a temp
  folder, a static passdb (any user, one password) and an ``oauth2`` passdb (XOAUTH2) asking
  :class:`TokenServer` to introspect tokens; plain, STARTTLS (generated certificate) and
  implicit-TLS listeners on free ports. Every user name gets its own maildir, so each test
  takes a fresh user instead of a fresh server.
- :class:`TokenServer`: an OAuth2 token endpoint (refresh grant) and an RFC 7662
  introspection endpoint over the same set of issued tokens.
- :class:`CuttingProxy`: a TCP relay that cuts a connection after a number of bytes from the
  server (a server or network dropping mid-fetch).

Dovecot runs its mail processes as the ``dovecot`` user, so it needs root to start and every
folder above the maildirs needs the x bit. :func:`require_dovecot` skips without it, except
under ``CI=true`` where ``.ci/run`` installs it and a skip would hide a missing install step.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote

import pytest
from imapclient import IMAPClient

from tests.smtp_servers import free_port, make_certificate

PASSWORD = "s3cret,pw:@"  # reserved characters: IMAP_URL must percent-encode them


def require_dovecot() -> str:
    """The dovecot binary, or a skip (a failure under CI) saying why it cannot run here."""
    binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)
    problem = None
    if binary is None:
        problem = "dovecot is not installed (apt-get install dovecot-imapd; .ci/run does it)"
    elif os.geteuid() != 0:
        problem = "a private dovecot needs root to start (its mail processes switch to the dovecot user)"
    else:
        try:
            pwd.getpwnam("dovecot")
            pwd.getpwnam("dovenull")
        except KeyError:
            problem = "the dovecot and dovenull users are missing (reinstall dovecot-core)"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return binary


@dataclass
class TokenServer:
    """Token endpoint (``/token``) and introspection endpoint (``/introspect``) in one."""

    client_id: str = "intake-test-client"
    client_secret: str = field(default_factory=lambda: "cs-" + secrets.token_hex(8))
    refresh_token: str = field(default_factory=lambda: "rt-" + secrets.token_hex(8))
    username: str = "oauth-user"
    lifetime: int = 3600
    rotate_refresh_token: bool = False
    issued: list[str] = field(default_factory=list)
    introspected: list[str] = field(default_factory=list)
    refused: int = 0

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if self.path == "/token":
                    status, body = server._token(form)
                elif self.path == "/introspect":
                    status, body = 200, server._introspect(form)
                else:
                    status, body = 404, {"error": "not_found"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _token(self, form: dict[str, str]) -> tuple[int, dict]:
        if (form.get("grant_type") != "refresh_token" or form.get("client_id") != self.client_id
                or form.get("client_secret") != self.client_secret
                or form.get("refresh_token") != self.refresh_token):
            self.refused += 1
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
        token = f"at-{len(self.issued)}-{secrets.token_hex(8)}"
        self.issued.append(token)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime}
        if self.rotate_refresh_token:
            self.refresh_token = "rt-" + secrets.token_hex(8)
            body["refresh_token"] = self.refresh_token
        return 200, body

    def _introspect(self, form: dict[str, str]) -> dict:
        token = form.get("token", "")
        self.introspected.append(token)
        if token in self.issued:
            return {"active": True, "username": self.username}
        return {"active": False}

    def env(self) -> dict[str, str]:
        return {
            "IMAP_OAUTH2_CLIENT_ID": self.client_id,
            "IMAP_OAUTH2_CLIENT_SECRET": self.client_secret,
            "IMAP_OAUTH2_REFRESH_TOKEN": self.refresh_token,
            "IMAP_OAUTH2_TOKEN_URL": f"{self.url}/token",
        }

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Dovecot:
    """A private Dovecot: plain/STARTTLS on ``port``, implicit TLS on ``tls_port``.

    The same listeners on ``BASIC_HOST`` (127.0.0.2) advertise only IMAP4rev1, LITERAL+ and
    UIDPLUS after login: a server without IDLE or MOVE, as some hosted mail still is.
    """

    BASIC_HOST = "127.0.0.2"

    def __init__(self, tokens: TokenServer) -> None:
        self.binary = require_dovecot()
        # Its own folder straight under the temp dir, not pytest's: pytest (any run on the
        # machine) resets its base folder to 0700, which would lock the mail processes out.
        self.dir = directory = Path(tempfile.mkdtemp(prefix="intake-dovecot-"))
        self.tokens = tokens
        self.port, self.tls_port = free_port(), free_port()
        self.cafile, self.keyfile = make_certificate(directory)
        self.conf = directory / "dovecot.conf"
        self.log = directory / "dovecot.log"

    def start(self) -> "Dovecot":
        d = self.dir
        d.chmod(0o755)  # mail processes (user dovecot) must reach the homes below
        (d / "run").mkdir()
        (d / "state").mkdir()
        homes = d / "home"
        homes.mkdir()
        dovecot_user = pwd.getpwnam("dovecot")
        os.chown(homes, dovecot_user.pw_uid, dovecot_user.pw_gid)
        (d / "oauth2.conf").write_text(
            f"introspection_mode = post\nintrospection_url = {self.tokens.url}/introspect\n"
            "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
        )
        self.conf.write_text(f"""
protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {self.log}
info_log_path = {self.log}
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = {dovecot_user.pw_uid}
first_valid_gid = {dovecot_user.pw_gid}
ssl = yes
ssl_cert = <{self.cafile}
ssl_key = <{self.keyfile}
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2
auth_failure_delay = 0
mail_location = maildir:~/Maildir
passdb {{
  driver = static
  args = password={PASSWORD}
  mechanisms = plain login
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2
  args = {d}/oauth2.conf
}}
userdb {{
  driver = static
  args = allow_all_users=yes uid=dovecot gid=dovecot home={homes}/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1, {self.BASIC_HOST}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1, {self.BASIC_HOST}
    port = {self.tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
local {self.BASIC_HOST} {{
  protocol imap {{
    imap_capability = IMAP4rev1 LITERAL+ UIDPLUS
  }}
}}
""")
        # -F: in the foreground, as our child (a daemonizing dovecot would hold a captured pipe
        # open for ever); its own log file says what went wrong.
        self.process = subprocess.Popen([self.binary, "-F", "-c", str(self.conf)],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=(d / "dovecot.stderr").open("wb"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        log = self.log.read_text(errors="replace") if self.log.exists() else ""
        raise RuntimeError(f"dovecot did not listen on {self.port}: {log[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # dovecot's master stops its children on SIGTERM
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the other side of the mailbox: mail arriving, a person at a mail client --------------

    @staticmethod
    def new_user() -> str:
        return f"u{uuid.uuid4().hex[:10]}"

    def url(self, user: str, folder: str = "INBOX", *, security: str = "plain", host: str = "127.0.0.1",
            **params: str) -> str:
        """An IMAP_URL entry for ``user`` (security: plain, starttls or tls)."""
        query = dict(params)
        if security == "plain":
            query["starttls"] = "never"
        scheme, port = ("imaps", self.tls_port) if security == "tls" else ("imap", self.port)
        qs = "&".join(f"{k}={quote(v)}" for k, v in query.items())
        return f"{scheme}://{quote(user)}:{quote(PASSWORD, safe='')}@{host}:{port}/{quote(folder)}" + (f"?{qs}" if qs else "")

    def client(self, user: str) -> IMAPClient:
        """A session of our own, as a person's mail client (or the delivery agent) would have."""
        client = IMAPClient("127.0.0.1", self.port, ssl=False, timeout=30)
        client.login(user, PASSWORD)
        return client

    def append(self, user: str, messages: list[bytes], folder: str = "INBOX", **options) -> None:
        with self.client(user) as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for raw in messages:
                client.append(folder, raw, **options)

    def uids(self, user: str, folder: str = "INBOX", criteria="ALL") -> list[int]:
        with self.client(user) as client:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            return sorted(client.search(criteria))

    def flags(self, user: str, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        with self.client(user) as client:
            client.select_folder(folder, readonly=True)
            return {uid: data[b"FLAGS"] for uid, data in client.fetch(client.search("ALL"), ["FLAGS"]).items()}

    def delete(self, user: str, uids: list[int], folder: str = "INBOX") -> None:
        """What a person's mail client does: flag \\Deleted and expunge."""
        with self.client(user) as client:
            client.select_folder(folder)
            client.delete_messages(uids)
            client.expunge()

    def set_uidvalidity(self, user: str, value: int, folder: str = "INBOX") -> None:
        doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
        subprocess.run([doveadm, "-c", str(self.conf), "mailbox", "update", "-u", user,
                        "--uid-validity", str(value), folder], check=True, capture_output=True)


class CuttingProxy:
    """Relays TCP to ``target``; the first ``cut_connections`` connections are cut once the
    server has sent ``cut_after`` bytes, mid-response, as a dropped network would."""

    def __init__(self, target: int, cut_after: int, cut_connections: int = 1) -> None:
        self.target, self.cut_after, self.cut_connections = target, cut_after, cut_connections
        self.connections = 0
        self.cuts = 0
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                continue
            self.connections += 1
            cut = self.cut_after if self.connections <= self.cut_connections else None
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(downstream, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, downstream, cut), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, cut: int | None) -> None:
        sent = 0
        try:
            while True:
                data = source.recv(4096)
                if not data:
                    break
                if cut is not None and sent + len(data) >= cut:
                    sink.sendall(data[: cut - sent])
                    self.cuts += 1
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()

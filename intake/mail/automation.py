"""Was this message written by a machine? Evidence from headers, structure, sender and subject.

`automated` is set only on evidence that is certain (RFC 3834 headers, DSN/MDN/ARF structure,
daemon senders, the null return path, well-known auto-reply subjects at the very start).
Weaker evidence (mailing lists, Precedence: bulk, X-Auto-Response-Suppress) only sets
`suppress_auto_reply`, because a person can write to a list, but we must never answer one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .types import Address, AutomationSignals

HeaderLookup = Callable[[str], "str | None"]  # first decoded header of a name, or None

_DAEMON_LOCAL = re.compile(r"^(?:mailer[-_.]?daemon|mail[-_.]?daemon|postmaster)(?:[+].*)?$")
_NOREPLY_LOCAL = re.compile(
    r"^(?:.*[-_.+])?(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|dont[-_.]?reply)(?:[-_.+].*)?$"
)
_DAEMON_NAMES = re.compile(r"^(?:mail delivery (?:subsystem|system)|mailer[- ]daemon)$", re.I)

# Subjects auto-responders write, matched at the very start of the subject (a person who
# answers an auto-reply writes "Re: Automatic reply: ...", which does not match).
# Each entry: (pattern, kind). Bare words that people also use ("Absence", "Ausente") must be
# followed by a colon or end the subject.
_SUBJECT_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p, re.IGNORECASE), kind)
    for p, kind in [
        (r"^(?:out of (?:the )?office|ooo\b)", "auto_reply"),
        (r"^(?:automatic reply|auto[- ]?reply|auto[- ]?response|automatische antwort"
         r"|abwesenheitsnotiz|abwesend\s*:|r[ée]ponse automatique|absent du bureau"
         r"|respuesta autom[áa]tica|fuera de (?:la )?oficina|resposta autom[áa]tica"
         r"|fora do escrit[óo]rio|risposta automatica|fuori ufficio|automatisch antwoord"
         r"|afwezig\s*:|automatiskt svar|automatisk svar|autosvar|자동\s*응답|부재중"
         r"|自动回复|自動回覆|自動応答)", "auto_reply"),
        (r"^(?:absence|ausente|abwesend|afwezig)\s*(?::|$)", "auto_reply"),
        (r"^(?:undeliverable|undelivered mail|delivery status notification"
         r"|mail delivery failed|returned mail|delivery failure|failure notice"
         r"|mail delivery failure|message not delivered|delivery has failed"
         r"|unzustellbar|non remis|non recapitabile|no se puede entregar|não entregue"
         r"|delayed mail|warning: could not send message"
         r"|mail system error)", "bounce"),
        (r"^(?:read:|read receipt|lu\s*:|gelesen\s*:|le[ií]do\s*:)", "receipt"),
    ]
]

_REPORT_KINDS = {
    "delivery-status": "bounce",
    "disposition-notification": "receipt",
    "feedback-report": "complaint",
}
_LIST_PRECEDENCE = {"bulk", "junk", "list"}


@dataclass
class Evidence:
    """Collects findings while the parser walks the message; `signals()` decides."""

    reasons: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # certain evidence, strongest first
    is_list: bool = False
    suppress: bool = False

    def certain(self, kind: str, reason: str) -> None:
        self.kinds.append(kind)
        self._reason(reason)
        self.suppress = True

    def hint(self, reason: str, *, is_list: bool = False) -> None:
        self.suppress = True
        self.is_list = self.is_list or is_list
        self._reason(reason)

    def _reason(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)

    def signals(self) -> AutomationSignals:
        kind = _strongest(self.kinds)
        if kind is None and self.is_list:
            kind = "list"
        return AutomationSignals(
            automated=bool(self.kinds),
            kind=kind,
            reasons=list(self.reasons),
            is_list=self.is_list,
            suppress_auto_reply=self.suppress,
        )


_KIND_ORDER = ["bounce", "complaint", "receipt", "auto_reply", "calendar", "notification", "auto_generated"]


def _strongest(kinds: list[str]) -> str | None:
    for kind in _KIND_ORDER:
        if kind in kinds:
            return kind
    return kinds[0] if kinds else None


def check_headers(ev: Evidence, header: HeaderLookup) -> None:
    """RFC 3834 and the de-facto auto-responder headers."""
    auto = header("Auto-Submitted")
    if auto is not None:
        value = auto.split(";")[0].strip().lower()
        if value and value != "no":
            kind = "auto_reply" if value == "auto-replied" else "auto_generated"
            ev.certain(kind, f"header: Auto-Submitted: {value}")
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        value = header(name)
        if value is not None and value.strip().lower() not in ("no", "false", "0"):
            ev.certain("auto_reply", f"header: {name}: {value.strip()[:40]}")
    suppress = header("X-Auto-Response-Suppress")
    if suppress is not None:
        ev.hint(f"header: X-Auto-Response-Suppress: {suppress.strip()[:40]}")
    precedence = header("Precedence")
    if precedence is not None:
        value = precedence.strip().lower()
        if value == "auto_reply":
            ev.certain("auto_reply", "header: Precedence: auto_reply")
        elif value in _LIST_PRECEDENCE:
            ev.hint(f"header: Precedence: {value}", is_list=True)
    for name in ("List-Id", "List-Unsubscribe"):
        if header(name) is not None:
            ev.hint(f"header: {name}", is_list=True)
    if header("X-Failed-Recipients") is not None:
        ev.certain("bounce", "header: X-Failed-Recipients")
    if (header("X-Auto-Reply") or "").strip().lower() in ("yes", "true"):
        ev.certain("auto_reply", "header: X-Auto-Reply: yes")


def check_sender(ev: Evidence, sender: Address | None, return_path: str | None,
                 from_header: str | None = None) -> None:
    """Daemons, no-reply robots and the null return path (RFC 5321: only DSNs and auto-replies).

    `from_header` covers a From with no domain ("From: MAILER-DAEMON"), which yields no Address.
    """
    if return_path == "":
        ev.certain("auto_generated", "envelope: null return path <>")
    if sender is None:
        bare = (from_header or "").strip().strip("<>").lower()
        if _DAEMON_LOCAL.match(bare):
            ev.certain("bounce", f"sender: {'postmaster' if bare.startswith('postmaster') else 'mailer-daemon'}")
        return
    local = sender.address.partition("@")[0]
    if _DAEMON_LOCAL.match(local) or _DAEMON_NAMES.match(sender.name or ""):
        label = "postmaster" if local.startswith("postmaster") else "mailer-daemon"
        ev.certain("bounce", f"sender: {label}")
    elif _NOREPLY_LOCAL.match(local):
        ev.certain("notification", "sender: no-reply address")


def check_subject(ev: Evidence, subject: str) -> None:
    text = subject.strip()
    for pattern, kind in _SUBJECT_RULES:
        if pattern.search(text):
            label = {"auto_reply": "out-of-office", "bounce": "delivery failure", "receipt": "read receipt"}[kind]
            ev.certain(kind, f"subject: {label}")
            return


def check_part(ev: Evidence, content_type: str, params: dict[str, str]) -> None:
    """Structure: DSN/MDN/ARF reports and iTIP calendar messages."""
    if content_type == "multipart/report":
        report = params.get("report-type", "").strip().lower()
        kind = _REPORT_KINDS.get(report)
        if kind:
            ev.certain(kind, f"structure: multipart/report {report}")
        else:
            ev.certain("auto_generated", "structure: multipart/report")
    elif content_type in ("message/delivery-status", "message/global-delivery-status"):
        ev.certain("bounce", f"structure: {content_type}")
    elif content_type == "message/disposition-notification":
        ev.certain("receipt", "structure: message/disposition-notification")
    elif content_type == "message/feedback-report":
        ev.certain("complaint", "structure: message/feedback-report")
    elif content_type == "text/calendar" and params.get("method"):
        method = params["method"].strip().upper()[:20]
        ev.certain("calendar", f"structure: text/calendar method={method}")


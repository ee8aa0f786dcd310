"""Was this message written by a machine? The one home of every rule that says so.

Three readers ask, each with what it has in hand, and all of them get their answers here:

- the mail parser, while it walks a message (`Evidence` and the `check_*` functions);
- the classifier's automated step, on a `Document` (headers, sender, subject, the sender's
  own words): `message_findings` and `text_findings`;
- the outbound loop checks, on headers re-read from the raw bytes: `message_findings` and
  `robot_mailbox`.

Every rule gives a `Finding` that is either *certain* (RFC 3834 headers, DSN/MDN/ARF structure,
daemon senders, the null return path, well-known auto-reply subjects at the very start, the
prose of delivery reports) or a *hint* (mailing lists, Precedence: bulk, role mailboxes,
X-Auto-Response-Suppress). Certain evidence sets `automated`; a hint only sets
`suppress_auto_reply`, because a person can write to a list, but we must never answer one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.headerregistry import HeaderRegistry

from .types import Address, AutomationSignals

HeaderLookup = Callable[[str], "str | None"]  # first decoded header of a name, or None


@dataclass(frozen=True)
class Finding:
    """One piece of evidence: what kind of robot, a reason a person can read, how sure."""

    kind: str  # bounce, complaint, receipt, auto_reply, calendar, notification, auto_generated, list, role
    reason: str  # shown to staff: "header: Auto-Submitted: auto-replied"
    certain: bool  # a person practically never produces it
    is_list: bool = False


def _certain(kind: str, reason: str) -> Finding:
    return Finding(kind, reason, True)


def _hint(reason: str, *, kind: str = "role", is_list: bool = False) -> Finding:
    return Finding("list" if is_list else kind, reason, False, is_list)


# --- Senders ---------------------------------------------------------------------------------

# Mailboxes no person writes from, by local part. (Phishing borrows these names too; it then
# lands in `automated` rather than `spam`, which is equally unanswered and never buries a person.)
_DAEMON_LOCAL = re.compile(r"^(?:mailer[-_.]?daemon|mail[-_.]?daemon|postmaster)(?:[-+.].*)?$", re.I)
_NOREPLY_LOCAL = re.compile(
    r"^(?:.*[-_.+])?(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|dont[-_.]?reply)(?:[-_.+].*)?$", re.I
)
_ROBOT_LOCALS: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(p, re.I), kind, label)
    for p, kind, label in [
        (r"^(?:bounces?(?:[-+.].*)?|.*-bounces(?:\+.*)?)$", "auto_generated", "bounce handler"),
        (r"^auto[-_.]?(?:reply|responder|response|confirm)(?:[-+.].*)?$", "auto_reply", "autoresponder"),
        (r"^calendar-notification(?:[-+.].*)?$", "calendar", "calendar notifications"),
    ]
]
# Role mailboxes (RFC 2142 among them) and list robots: usually machines, but a person may
# answer from one, so they only stop automatic replies.
_ROLE_LOCAL = re.compile(r"^(?:daemon|notifications?|root|abuse|nobody)$", re.I)
_LIST_LOCAL = re.compile(r"^(?:listserv|majordomo|.*-request)$", re.I)
_DAEMON_NAMES = re.compile(r"^(?:mail delivery (?:subsystem|system)|mailer[- ]daemon)$", re.I)


def _daemon_label(local: str) -> str:
    return "postmaster" if local.lower().startswith("postmaster") else "mailer-daemon"


def mailbox_finding(local: str, name: str | None = None) -> Finding | None:
    """What a sender's local part (and display name) says about who is writing."""
    if _DAEMON_LOCAL.match(local) or _DAEMON_NAMES.match(name or ""):
        return _certain("bounce", f"sender: {_daemon_label(local)}")
    if _NOREPLY_LOCAL.match(local):
        return _certain("notification", "sender: no-reply address")
    for pattern, kind, label in _ROBOT_LOCALS:
        if pattern.match(local):
            return _certain(kind, f"sender: {label}")
    if _LIST_LOCAL.match(local):
        return _hint(f"sender: list robot {local.lower()}", is_list=True)
    if _ROLE_LOCAL.match(local):
        return _hint(f"sender: role mailbox {local.lower()}")
    return None


def robot_mailbox(address: str) -> Finding | None:
    """A finding when `address` is a robot's or role mailbox (certain or not), else None."""
    return mailbox_finding(address.rpartition("@")[0] or address)


def is_null_path(value: str | None) -> bool:
    """Return-Path: <> (RFC 5321: only DSNs and auto-replies use the null path)."""
    return value is not None and value.replace(" ", "").strip() == "<>"


def sender_findings(sender: Address | None, return_path: str | None,
                    from_header: str | None = None) -> list[Finding]:
    """Daemons, no-reply robots and the null return path (`return_path == ""`).

    `from_header` covers a From with no domain ("From: MAILER-DAEMON"), which yields no Address.
    """
    found: list[Finding] = []
    if return_path == "":
        found.append(_certain("auto_generated", "envelope: null return path <>"))
    if sender is None:
        bare = (from_header or "").strip().strip("<>")
        if _DAEMON_LOCAL.match(bare):
            found.append(_certain("bounce", f"sender: {_daemon_label(bare)}"))
        return found
    mailbox = mailbox_finding(sender.address.partition("@")[0], sender.name)
    if mailbox is not None:
        found.append(mailbox)
    return found


# --- Headers ---------------------------------------------------------------------------------

_NEGATIVE = ("no", "false", "0")
# Headers whose presence (with any value but a "no") says an autoresponder wrote the message.
_AUTORESPONDER_HEADERS = (
    ("X-Autoreply", "auto_reply"),
    ("X-Autorespond", "auto_reply"),
    ("X-Autoresponder", "auto_reply"),
    ("X-Auto-Reply", "auto_reply"),
    ("X-Auto-Reply-From", "auto_reply"),
    ("X-Autogenerated", "auto_generated"),
)
_LIST_HEADERS = ("List-Id", "List-Unsubscribe", "List-Post", "X-Mailing-List")
_LIST_PRECEDENCE = {"bulk", "junk", "list"}
# Microsoft's X-Auto-Response-Suppress values that ask not to be sent automatic replies or
# reports (https://learn.microsoft.com/openspecs/exchange_server_protocols/ms-oxcmail).
SUPPRESS_VALUES = ("all", "autoreply", "oof", "dr", "ndr", "rn", "nrn")


def header_findings(header: HeaderLookup) -> list[Finding]:
    """RFC 3834, RFC 2369/2919 list headers and the de-facto auto-responder headers."""
    found: list[Finding] = []
    auto = header("Auto-Submitted")
    if auto is not None:
        value = auto.split(";")[0].strip().lower()
        if value and value != "no":
            kind = "auto_reply" if value == "auto-replied" else "auto_generated"
            found.append(_certain(kind, f"header: Auto-Submitted: {value[:40]}"))
    for name, kind in _AUTORESPONDER_HEADERS:
        value = header(name)
        if value is not None and value.strip().lower() not in _NEGATIVE:
            shown = f": {value.strip()[:40]}" if value.strip() else ""
            found.append(_certain(kind, f"header: {name}{shown}"))
    suppress = (header("X-Auto-Response-Suppress") or "").strip()
    if any(v in re.split(r"[\s,;]+", suppress.lower()) for v in SUPPRESS_VALUES):
        found.append(_hint(f"header: X-Auto-Response-Suppress: {suppress[:40]}"))
    precedence = (header("Precedence") or "").strip().lower()
    if precedence in ("auto_reply", "auto-reply"):
        found.append(_certain("auto_reply", f"header: Precedence: {precedence}"))
    elif precedence in _LIST_PRECEDENCE:
        found.append(_hint(f"header: Precedence: {precedence}", is_list=True))
    for name in _LIST_HEADERS:
        if header(name) is not None:
            found.append(_hint(f"header: {name}", is_list=True))
    if header("X-Failed-Recipients") is not None:
        found.append(_certain("bounce", "header: X-Failed-Recipients"))
    if header("X-MS-Exchange-Message-Is-Ndr") is not None:
        found.append(_certain("bounce", "header: X-MS-Exchange-Message-Is-Ndr"))
    if header("Feedback-Type") is not None:
        found.append(_certain("complaint", "header: Feedback-Type"))
    if header("X-Loop") is not None:
        found.append(_hint("header: X-Loop"))
    return found


# --- Structure -------------------------------------------------------------------------------

_REPORT_KINDS = {
    "delivery-status": "bounce",
    "disposition-notification": "receipt",
    "feedback-report": "complaint",
}
_REPORT_PARTS = {
    "message/delivery-status": "bounce",
    "message/global-delivery-status": "bounce",
    "message/disposition-notification": "receipt",
    "message/feedback-report": "complaint",
}


def content_finding(content_type: str, params: dict[str, str], *,
                    whole_message: bool = False) -> Finding | None:
    """DSN/MDN/ARF reports and iTIP calendar messages. A text/calendar part says "calendar"
    when it carries an iTIP METHOD, or when it is the whole message."""
    if content_type == "multipart/report":
        report = params.get("report-type", "").strip().lower()
        kind = _REPORT_KINDS.get(report)
        if kind:
            return _certain(kind, f"structure: multipart/report {report}")
        return _certain("auto_generated", "structure: multipart/report")
    if content_type in _REPORT_PARTS:
        return _certain(_REPORT_PARTS[content_type], f"structure: {content_type}")
    if content_type == "text/calendar" and (params.get("method") or whole_message):
        method = (params.get("method") or "").strip().upper()[:20]
        return _certain("calendar", f"structure: text/calendar method={method}" if method
                        else "structure: text/calendar")
    return None


_HEADER_REGISTRY = HeaderRegistry()


def _content_type_header(value: str | None) -> tuple[str, dict[str, str]]:
    """The stdlib's Content-Type parser (tolerant: defects are recorded, never raised)."""
    if not value:
        return "", {}
    parse = _remembered_content_type if len(value) <= 200 else _parse_content_type
    content_type, params = parse(value)
    return content_type, dict(params)


def _parse_content_type(value: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    parsed = _HEADER_REGISTRY("content-type", value)
    return parsed.content_type.lower(), tuple((k.lower(), str(v)) for k, v in parsed.params.items())


# The stdlib's header parser builds a parse tree per call (the costliest step of the header
# checks the classifier and the acknowledgment make), and nearly every message says ``text/plain; charset=utf-8`` or one of a few others:
# short values are remembered (long ones are rare, and would only fill the cache).
_remembered_content_type = functools.lru_cache(maxsize=1024)(_parse_content_type)


# --- Subjects --------------------------------------------------------------------------------

# Subjects autoresponders and mail systems write, matched at the very start (after a "[tag]"
# a gateway may add): a person who answers an auto-reply writes "Re: Automatic reply: ...",
# which does not match. Bare words that people also use ("Absence", "Ausente") must be
# followed by a colon or end the subject.
_SUBJECT_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^(?:\[[^\]]*\]\s*)?(?:" + p + ")", re.IGNORECASE), kind)
    for p, kind in [
        (r"out of (?:the )?office|ooo\b", "auto_reply"),
        (r"automatic (?:reply|response)|auto(?:matic)?[- ]?(?:reply|response|antwort)|auto:"
         r"|automatische antwort|abwesenheitsnotiz|abwesend\s*:|abwesenheit\s*:"
         r"|r[ée]ponse automatique|absen(?:t|ce) du bureau"
         r"|respuesta autom[áa]tica|fuera de (?:la )?oficina"
         r"|resposta autom[áa]tica|fora do escrit[óo]rio|aus[êe]ncia tempor[áa]ria"
         r"|risposta automatica|fuori ufficio|automatisch antwoord"
         r"|afwezig\s*:|automatiskt svar|automatisk svar|autosvar"
         r"|자동\s*응답|자동\s*회신|부재중|自动回复|自動回覆|自動応答", "auto_reply"),
        (r"(?:absence|ausente|abwesend|abwesenheit|afwezig)\s*(?::|$)", "auto_reply"),
        (r"undeliver(?:able|ed)|delivery status notification|delivery notification"
         r"|delivery (?:failure|has failed)|mail delivery (?:failed|failure|subsystem)"
         r"|returned mail|failure notice|message not delivered|delayed mail"
         r"|warning: could not send message|mail system error"
         r"|unzustellbar|non remis|non distribuable|non recapitabile|no se puede entregar"
         r"|n[ãa]o entregue", "bounce"),
        (r"(?:not )?read:|read receipt|lu\s*:|gelesen\s*:|le[ií]do\s*:", "receipt"),
        (r"abuse report", "complaint"),
        # Google Calendar / Outlook notices: "Invitation: Standup @ Tue 3 Jun 2025 10am (EDT)".
        (r"(?:invitation|updated invitation|accepted|declined|tentatively accepted|canceled event"
         r"|cancelled event|new event|invitation from google calendar)(?: with note)?:.*\s@\s",
         "calendar"),
    ]
]
_SUBJECT_LABELS = {"auto_reply": "out-of-office", "bounce": "delivery failure",
                   "receipt": "read receipt", "complaint": "abuse report", "calendar": "calendar notice"}


def subject_finding(subject: str) -> Finding | None:
    text = subject.strip()
    for pattern, kind in _SUBJECT_RULES:
        if pattern.search(text):
            return _certain(kind, f"subject: {_SUBJECT_LABELS[kind]}")
    return None


# --- Everything a header lookup shows --------------------------------------------------------

def message_findings(header: HeaderLookup, *, subject: str | None = None,
                     sender: Address | None = None) -> list[Finding]:
    """Headers, the whole message's content type, the envelope, the sender and the subject, for
    readers that hold the headers rather than a walk of the MIME tree. `subject` and `sender`
    default to the headers' own (undecoded) values when the caller has nothing better."""
    found = header_findings(header)
    structure = content_finding(*_content_type_header(header("Content-Type")), whole_message=True)
    if structure is not None:
        found.append(structure)
    return_path = "" if is_null_path(header("Return-Path")) else None
    if sender is None:
        found += sender_findings(None, return_path, header("From"))
    else:
        found += sender_findings(sender, return_path)
    by_subject = subject_finding(subject if subject is not None else header("Subject") or "")
    if by_subject is not None:
        found.append(by_subject)
    return found


# --- Text (the classifier reads these; the parser does not) ----------------------------------

# Opening lines of mail-system reports.
_BOUNCE_TEXT = re.compile(
    r"(?:delivery to the following recipients? failed permanently|"
    r"this is the mail system at host|"
    r"could not be delivered to one or more (?:of its )?recipients|"
    r"your message (?:could not|couldn't|wasn't|was not) (?:be )?delivered|"
    r"the following addresses? had (?:permanent fatal errors|delivery problems)|"
    r"^final-recipient:\s*rfc822;|^diagnostic-code:\s*smtp;|"
    r"^action:\s*(?:failed|delayed)\s*$)",
    re.IGNORECASE | re.MULTILINE,
)
# Out-of-office prose: an "I am away" sentence AND a "back on / limited access / contact X"
# sentence, in a short message. One alone is something a person writes too.
_AWAY = re.compile(
    r"(?:i am|i'm|i will be)\s+(?:currently\s+)?(?:out of (?:the )?office|away from the office|"
    r"travell?ing with limited|on (?:book|jury|medical) (?:leave|duty)|"
    r"on (?:annual |parental |sick )?leave|on vacation|on holiday|"
    r"out of office)|"
    r"thank you for your (?:e-?mail|message)\. i am (?:currently )?(?:out|away)|"
    r"this is an auto(?:matic|mated)(?:ally generated)? (?:reply|response|message)|"
    r"estoy fuera de la oficina|me encuentro fuera de la oficina|estoy de vacaciones|"
    r"je suis absente?|je serai absente?|je suis actuellement absente?|"
    r"estou fora do escrit[óo]rio|estou de f[ée]rias|"
    r"ich bin (?:bis|vom|derzeit|zurzeit) .{0,40}(?:nicht im büro|abwesend|im urlaub)|"
    r"부재중",
    re.IGNORECASE,
)
_RETURN = re.compile(
    r"(?:limited access to (?:my )?e-?mail|(?:upon|on|after|when i) (?:my )?return|"
    r"i will (?:be back|return|respond|reply)|back in the office|will be back on|"
    r"for urgent (?:matters|requests|issues)|if (?:this|your matter) is urgent|when i'?m back|"
    r"de retour le|à mon retour|a mi regreso|regresaré|volveré|ao meu retorno|retorno em|"
    r"nach meiner rückkehr|in dringenden fällen|복귀)",
    re.IGNORECASE,
)
OUT_OF_OFFICE_MAX_CHARS = 1500  # longer than an auto-reply: a person's message that says "I'm away"
# Sentences mail systems write about themselves.
_SELF_DESCRIBED = re.compile(
    r"this is an? auto(?:matic(?:ally generated)?|mated)? ?(?:reply|response|message|notification|"
    r"confirmation|e-?mail)|"
    r"this (?:message|e-?mail|notification) (?:was|has been|is) (?:sent|generated) automatically|"
    r"this mailbox is (?:not|un)monitored|unmonitored mailbox|"
    r"ceci est (?:une réponse|un message|un courriel) automatique|"
    r"este es un (?:mensaje|correo|aviso) autom[áa]tico|esta [ée] uma (?:resposta|mensagem) autom[áa]tica|"
    r"diese nachricht wurde automatisch|automatisch generierte nachricht|"
    r"invitation from google calendar|"
    r"manage (?:your )?notification (?:settings|preferences)|"
    r"(?:view|see) (?:it|this|the [a-z ]{1,30}) (?:in|on) your dashboard|"
    r"you(?:'re| are) receiving this (?:e-?mail|notification|message) because|"
    r"to stop receiving (?:these|this type of) (?:e-?mails|notifications)",
    re.IGNORECASE,
)


def text_findings(own_text: str) -> list[Finding]:
    """What the sender's own words (quoted and forwarded text already cut off) say: a person
    forwarding a bounce ("my mail to you bounced, see below") has the report below them."""
    found: list[Finding] = []
    if _BOUNCE_TEXT.search(own_text[:6000]):
        found.append(_certain("bounce", "text: delivery status report"))
    if _SELF_DESCRIBED.search(own_text[:3000]):
        found.append(_certain("auto_generated", "text: says it was sent automatically"))
    short = own_text[:OUT_OF_OFFICE_MAX_CHARS]
    if len(short) < OUT_OF_OFFICE_MAX_CHARS and _AWAY.search(short) and _RETURN.search(short):
        found.append(_certain("auto_reply", "text: out-of-office reply"))
    return found


# --- The parser's walk -----------------------------------------------------------------------

@dataclass
class Evidence:
    """Collects findings while the parser walks the message; `signals()` decides."""

    reasons: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # certain evidence, strongest first
    is_list: bool = False
    suppress: bool = False

    def add(self, findings: Iterable[Finding | None]) -> None:
        for finding in findings:
            if finding is None:
                continue
            if finding.certain:
                self.kinds.append(finding.kind)
            self.is_list = self.is_list or finding.is_list
            self.suppress = True
            if finding.reason not in self.reasons:
                self.reasons.append(finding.reason)

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
    ev.add(header_findings(header))


def check_sender(ev: Evidence, sender: Address | None, return_path: str | None,
                 from_header: str | None = None) -> None:
    ev.add(sender_findings(sender, return_path, from_header))


def check_subject(ev: Evidence, subject: str) -> None:
    ev.add([subject_finding(subject)])


def check_part(ev: Evidence, content_type: str, params: dict[str, str]) -> None:
    """Structure of a part of the message itself: DSN/MDN/ARF reports, iTIP calendar parts."""
    ev.add([content_finding(content_type, params)])

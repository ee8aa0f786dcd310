"""Step 1: mail nobody typed (bounces, out-of-office, autoresponders, calendar notices).

Only certainty decides here: a person's message taken for an auto-reply is never acknowledged
and easily never answered. The mail layer's `AutomationSignals` come first; this module adds
what a classifier can see on its own (headers the mail layer may not weigh, the sender mailbox,
standard subject lines of autoresponders in the program's languages, DSN fields in the text).
Anything less than certain is left to the model, which also learns the `automated` category from
the seed set.
"""

from __future__ import annotations

import re

from intake.classify.document import Document

# Subjects that autoresponders and mail systems write and people practically never do.
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]*\]\s*)?(?:"
    r"automatic reply|auto(?:matic)?[- ]?(?:reply|response)|autoreply|auto:|"
    r"out of (?:the )?office(?: reply| notice| autoreply)?\s*[:\-]|out of office$|"
    r"réponse automatique|absence du bureau|respuesta automática|fuera de la oficina\s*[:\-]|"
    r"resposta automática|ausência temporária|automatische antwort|abwesenheitsnotiz|"
    r"자동 회신|부재중"
    r")",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:"
    r"undeliverable|undelivered mail|undeliverable mail|delivery status notification|"
    r"delivery notification: delivery has failed|delivery failure|mail delivery failed|"
    r"mail delivery failure|returned mail|failure notice|delivery has failed|"
    r"message not delivered|delayed mail|warning: could not send message|"
    r"non remis|non distribuable|no se puede entregar|não entregue|unzustellbar"
    r")",
    re.IGNORECASE,
)
# Google Calendar / Outlook notice subjects: "Invitation: Standup @ Tue 3 Jun 2025 10am (EDT)".
_CALENDAR_SUBJECT = re.compile(
    r"^\s*(?:invitation|updated invitation|accepted|declined|tentatively accepted|"
    r"canceled event|cancelled event|new event|invitation from google calendar)"
    r"(?: with note)?:.*\s@\s",
    re.IGNORECASE,
)
# Opening lines of mail-system reports, searched in the full text.
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
    r"on (?:annual |parental |sick )?leave|on vacation|on holiday|travell?ing with limited|"
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
# Mailboxes no person writes from. (Phishing borrows these names too; it then lands in
# `automated` rather than `spam`, which is equally unanswered and never buries a person.)
# Read receipts (Outlook "Read: <subject>" / "Not read: ..." with the "was read on" sentence).
_READ_RECEIPT_SUBJECT = re.compile(r"^\s*(?:not )?read:\s", re.IGNORECASE)
_READ_RECEIPT_TEXT = re.compile(r"\bwas (?:read|deleted without being read) on\b", re.IGNORECASE)
_SYSTEM_MAILBOX = re.compile(
    r"^(?:mailer-daemon|mail-daemon|postmaster|no[-_.]?reply|do[-_.]?not[-_.]?reply|"
    r"auto[-_.]?(?:reply|responder|response|confirm)|calendar-notification|bounces?)(?:[-+.][^@]*)?@",
    re.IGNORECASE,
)
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


_QUOTE_START = re.compile(
    r"^(?:>|-{2,}\s*(?:forwarded|original) message|begin forwarded message|"
    r"-----original message-----|on .{0,200} wrote:\s*$|from: .+$)",
    re.IGNORECASE | re.MULTILINE,
)


def own_words(body: str) -> str:
    """The body up to the first quoted or forwarded line."""
    match = _QUOTE_START.search(body)
    return body[: match.start()] if match else body


def _header_reasons(doc: Document) -> list[str]:
    reasons: list[str] = []
    for name, value in doc.headers:
        lname = name.lower()
        v = (value or "").strip()
        lv = v.lower()
        if lname == "auto-submitted" and lv and not lv.startswith("no"):
            reasons.append(f"header: Auto-Submitted: {v[:60]}")
        elif lname == "precedence" and lv in ("auto_reply", "auto-reply"):
            reasons.append(f"header: Precedence: {v}")
        elif lname in ("x-autoreply", "x-autorespond", "x-autogenerated", "x-auto-reply"):
            reasons.append(f"header: {name}: {v[:40]}")
        elif lname == "x-failed-recipients":
            reasons.append("header: X-Failed-Recipients")
        elif lname == "x-ms-exchange-message-is-ndr":
            reasons.append("header: X-MS-Exchange-Message-Is-Ndr")
        elif lname == "content-type" and (
            "multipart/report" in lv or lv.startswith("message/delivery-status")
        ):
            reasons.append(f"header: Content-Type: {v.split(';')[0]}")
        elif lname == "content-type" and lv.startswith("text/calendar"):
            reasons.append("header: Content-Type: text/calendar")
        elif lname == "return-path" and v.replace(" ", "") == "<>":
            reasons.append("header: Return-Path: <> (null sender)")
    return reasons


def automated_reasons(doc: Document) -> list[str]:
    """Why this message is certainly automated, or [] when it may have been typed by a person."""
    reasons: list[str] = []
    signals = doc.automation
    if signals is not None and signals.automated:
        reasons.extend(signals.reasons or [f"mail: {signals.kind or 'automated'}"])
    reasons.extend(r for r in _header_reasons(doc) if r not in reasons)
    subject = doc.subject or ""
    if _SYSTEM_MAILBOX.match(doc.sender_address or ""):
        reasons.append(f"sender: {doc.sender_address.partition('@')[0]}")
    if _AUTO_REPLY_SUBJECT.search(subject):
        reasons.append(f"subject: {subject[:60]}")
    elif _BOUNCE_SUBJECT.search(subject):
        reasons.append(f"subject: {subject[:60]}")
    elif _CALENDAR_SUBJECT.search(subject):
        reasons.append("subject: calendar notice")
    elif _READ_RECEIPT_SUBJECT.search(subject) and _READ_RECEIPT_TEXT.search((doc.body or "")[:2000]):
        reasons.append("text: read receipt")
    # What the sender wrote, not what they quote or forward: a person forwarding a bounce ("my
    # mail to you bounced, see below") has the report below their own words.
    own = own_words(doc.body or "")
    if _BOUNCE_TEXT.search(own[:6000]):
        reasons.append("text: delivery status report")
    if _SELF_DESCRIBED.search(own[:3000]):
        reasons.append("text: says it was sent automatically")
    body = own[:1500]
    if len(body) < 1500 and _AWAY.search(body) and _RETURN.search(body):
        reasons.append("text: out-of-office reply")
    return _unique(reasons)


def _unique(reasons: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for reason in reasons:
        key = reason.lower()
        if key not in seen:
            seen.add(key)
            out.append(reason)
    return out

"""Sender authentication: is the From address really the sender's? (SPF, DKIM, DMARC.)

intake does not verify signatures itself; the provider that received the message did, and says
so: SendGrid's ``SPF`` and ``dkim`` fields, SES's ``receipt.*Verdict``, Mailgun's
``X-Mailgun-Spf`` / ``X-Mailgun-Dkim-Check-Result``, Postmark's ``Received-SPF``, and
``Authentication-Results`` headers (RFC 8601) written by a receiving host the operator names in
``INTAKE_AUTHSERV_ID``. Anyone can write those headers into a message, so only the topmost one
whose authserv-id is named is read (a receiving host adds its own on top; name only a host that
always does).

A result speaks for the From address only when its domain is aligned with the From domain
(DMARC's relaxed alignment: equal, or one a subdomain of the other); a pass for the bounce domain
of a mailing service proves nothing about who wrote the From line. The outcome:

* ``pass``: DMARC passed, or an aligned SPF or DKIM check passed;
* ``fail``: DMARC failed, or an aligned check failed (the From domain itself says "not me");
* ``none``: nothing either way (no verdicts, or verdicts about other domains only).

Pure and linear: it reads the parsed headers and the provider's facts kept in ``messages.meta``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .types import ParsedEmail

PASS, FAIL, NONE = "pass", "fail", "none"
# An Authentication-Results header longer than this is not read (real ones are under 1 KB).
MAX_RESULTS_HEADER = 4096
_FAILED = frozenset({"fail", "softfail", "permerror", "hardfail"})
# Providers' spellings, mapped onto RFC 8601 results.
_RESULTS = {"gray": "none", "processing_failed": "temperror", "softfail": "softfail", "hardfail": "fail"}
_COMMENT_SPECIAL = re.compile(r'[()"\\]')
_RESINFO = re.compile(r'(?:"[^"]*"|[^;"])+')
_TOKEN = re.compile(r'(?:"[^"]*"|[^\s"])+')
_SENDGRID_DKIM = re.compile(r"@([^\s:{},]+)\s*:\s*([a-z]+)", re.IGNORECASE)
_SIGNATURE_DOMAIN = re.compile(r"(?:^|;)\s*d\s*=\s*([^;\s]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Check:
    method: str  # spf, dkim, dmarc
    result: str  # pass, fail, softfail, neutral, none, temperror, permerror
    domain: str | None  # the domain the result speaks for, when known
    source: str  # who said so: "SES", "SendGrid", "Authentication-Results from mx.example.org"

    def describe(self, from_domain: str) -> str:
        where = f" {self.domain}" if self.domain else ""
        unaligned = " (not the From domain)" if self.domain and not aligned(self.domain, from_domain) else ""
        return f"{self.method}={self.result}{where}{unaligned} ({self.source})"


@dataclass(frozen=True)
class SenderAuthentication:
    verdict: str  # pass, fail, none
    reasons: list[str] = field(default_factory=list)


def aligned(domain: str | None, from_domain: str) -> bool:
    """DMARC's relaxed alignment, without the public suffix list: equal, or one domain inside the
    other (a signature by a bare suffix such as ``co.uk`` does not occur in practice)."""
    if not domain or not from_domain or "." not in domain:
        return False
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return domain == from_domain or from_domain.endswith("." + domain) or domain.endswith("." + from_domain)


def _result(value: Any) -> str:
    word = str(value or "").strip().split(None, 1)[0].lower() if str(value or "").strip() else ""
    return _RESULTS.get(word, word)


def _domain_of(address: Any) -> str | None:
    text = str(address or "").strip().strip("<>")
    return text.rpartition("@")[2].lower() or None if "@" in text else (text.lower() or None)


def _strip_comments(text: str) -> str:
    """The header without (nested) comments, outside quoted strings; linear."""
    out: list[str] = []
    depth, quoted, pos = 0, False, 0
    for hit in _COMMENT_SPECIAL.finditer(text):
        char, start = hit.group(0), hit.start()
        if start < pos:  # the character after a backslash
            continue
        if char == "\\":
            if depth == 0:
                out.append(text[pos:start + 2])
            pos = start + 2
            continue
        if quoted:
            if char == '"':
                quoted = False
            continue
        if depth == 0:
            out.append(text[pos:start])
            pos = start
        if char == '"' and depth == 0:
            quoted = True
        elif char == "(":
            depth += 1
            pos = start + 1
        elif char == ")" and depth:
            depth -= 1
            pos = start + 1
    if depth == 0:
        out.append(text[pos:])
    return "".join(out)


def parse_results(value: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """An Authentication-Results value -> (authserv-id, [(method, result, properties)]).

    Hand-written: ``authres``, the reference parser, is quadratic (16,000 characters took 6 s)
    and unmaintained since 2019; this reads the subset a verdict needs in one pass.
    """
    parts = _RESINFO.findall(_strip_comments(value[:MAX_RESULTS_HEADER]))
    if not parts:
        return "", []
    head = parts[0].split()
    authserv_id = head[0].lower() if head else ""
    results = []
    for part in parts[1:]:
        tokens = _TOKEN.findall(part)
        if not tokens or "=" not in tokens[0]:
            continue
        method, _, result = tokens[0].partition("=")
        properties = {}
        for token in tokens[1:]:
            key, eq, val = token.partition("=")
            if eq:
                properties[key.lower()] = val.strip('"').lower()
        results.append((method.split("/")[0].lower(), _result(result), properties))
    return authserv_id, results


def _results_checks(parsed: ParsedEmail, authserv_ids: Iterable[str]) -> list[Check]:
    trusted = {a.lower() for a in authserv_ids}
    if not trusted:
        return []
    for value in parsed.header_all("Authentication-Results"):
        authserv_id, results = parse_results(value)
        if authserv_id not in trusted:
            continue
        source = f"Authentication-Results from {authserv_id}"
        checks = []
        for method, result, props in results:
            if method == "spf":
                domain = _domain_of(props.get("smtp.mailfrom") or props.get("smtp.helo"))
            elif method == "dkim":
                domain = props.get("header.d") or _domain_of(props.get("header.i"))
            elif method == "dmarc":
                domain = props.get("header.from")
            else:
                continue
            checks.append(Check(method, result, domain, source))
        return checks  # the topmost trusted header only
    return []


def _signature_domains(parsed: ParsedEmail) -> list[str]:
    found = []
    for value in parsed.header_all("DKIM-Signature"):
        match = _SIGNATURE_DOMAIN.search(value[:MAX_RESULTS_HEADER])
        found.append(match.group(1).lower() if match else "")
    return found


def _domainless_dkim(result: str, parsed: ParsedEmail, from_domain: str, source: str) -> Check:
    """A provider's DKIM verdict that names no domain: it speaks for the From domain only when
    every DKIM signature in the message is by an aligned domain (else a passing signature by
    some other domain could lend its pass to a forged From)."""
    domains = _signature_domains(parsed)
    if domains and all(aligned(d, from_domain) for d in domains):
        return Check("dkim", result, from_domain, source)
    return Check("dkim", result, next((d for d in domains if not aligned(d, from_domain)), None), source)


def _provider_checks(parsed: ParsedEmail, meta: Mapping[str, Any], from_domain: str) -> list[Check]:
    provider = str(meta.get("provider") or "")
    checks: list[Check] = []
    if provider == "ses":
        mail_from = _domain_of(meta.get("mail_from"))
        for method, key in (("spf", "spfVerdict"), ("dkim", "dkimVerdict"), ("dmarc", "dmarcVerdict")):
            if key not in meta:
                continue
            result = _result(meta[key])
            if method == "spf":
                checks.append(Check("spf", result, mail_from, "SES"))
            elif method == "dkim":
                checks.append(_domainless_dkim(result, parsed, from_domain, "SES"))
            else:
                checks.append(Check("dmarc", result, from_domain, "SES"))
    elif provider == "sendgrid":
        envelope = meta.get("envelope") if isinstance(meta.get("envelope"), dict) else {}
        if meta.get("spf"):
            checks.append(Check("spf", _result(meta["spf"]), _domain_of(envelope.get("from")), "SendGrid"))
        for domain, result in _SENDGRID_DKIM.findall(str(meta.get("dkim") or "")[:MAX_RESULTS_HEADER]):
            checks.append(Check("dkim", _result(result), domain.lower(), "SendGrid"))
    elif provider == "mailgun":
        if meta.get("x-mailgun-spf"):
            checks.append(Check("spf", _result(meta["x-mailgun-spf"]), _domain_of(meta.get("sender")), "Mailgun"))
        if meta.get("x-mailgun-dkim-check-result"):
            checks.append(_domainless_dkim(_result(meta["x-mailgun-dkim-check-result"]), parsed, from_domain, "Mailgun"))
    elif provider == "postmark" and meta.get("received-spf"):
        value = str(meta["received-spf"])[:MAX_RESULTS_HEADER]
        envelope = re.search(r"envelope-from=([^;\s]+)", value)
        checks.append(Check("spf", _result(value), _domain_of(envelope.group(1)) if envelope else None, "Postmark"))
    return checks


def authenticate(parsed: ParsedEmail, meta: Mapping[str, Any] | None,
                 authserv_ids: Iterable[str] = ()) -> SenderAuthentication:
    """The verdict on the From address of one message, with reasons a person can read."""
    from_domain = parsed.sender.domain if parsed.sender else ""
    checks = _provider_checks(parsed, meta or {}, from_domain) + _results_checks(parsed, authserv_ids)
    reasons = [c.describe(from_domain) for c in checks][:10]
    # A DMARC result is about the From domain by definition, unless it names another one.
    speaking = [c for c in checks
                if aligned(c.domain, from_domain) or (c.method == "dmarc" and c.domain is None)]
    if not from_domain:
        return SenderAuthentication(NONE, reasons)
    if any(c.method == "dmarc" and c.result in _FAILED for c in speaking):
        return SenderAuthentication(FAIL, reasons)
    if any(c.result == PASS for c in speaking):
        return SenderAuthentication(PASS, reasons)
    if any(c.result in _FAILED for c in speaking):
        return SenderAuthentication(FAIL, reasons)
    return SenderAuthentication(NONE, reasons)

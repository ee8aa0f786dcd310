"""Sender authentication from the providers' verdicts and trusted Authentication-Results."""

from __future__ import annotations

import time

import pytest

from intake.mail import parse
from intake.mail.authentication import aligned, authenticate, parse_results

ANN = b"From: Ann <ann@example.org>\r\nSubject: s\r\n"


def message(extra: bytes = b"") -> object:
    return parse(extra + ANN + b"\r\nbody")


def test_alignment_is_relaxed_but_not_loose():
    assert aligned("example.org", "example.org") and aligned("mail.example.org", "example.org")
    assert aligned("example.org", "news.example.org")
    assert not aligned("evil.example", "example.org") and not aligned("notexample.org", "example.org")
    assert not aligned("org", "example.org") and not aligned(None, "example.org")


def test_authentication_results_parsing_handles_comments_and_quotes():
    authserv, results = parse_results(
        'mx.example.net (Postfix (v3)); spf=pass (sender IP is 192.0.2.1; ok) smtp.mailfrom=ann@example.org;'
        ' dkim=pass reason="good; signature" header.d=example.org header.s=s1; dmarc=fail header.from=example.org')
    assert authserv == "mx.example.net"
    assert results == [("spf", "pass", {"smtp.mailfrom": "ann@example.org"}),
                       ("dkim", "pass", {"reason": "good; signature", "header.d": "example.org", "header.s": "s1"}),
                       ("dmarc", "fail", {"header.from": "example.org"})]
    for hostile in ("mx; " + "spf=pass; " * 50_000, "mx; " + "(" * 200_000, "mx; " + '"' * 200_000):
        start = time.perf_counter()
        parse_results(hostile)
        assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("meta, verdict", [
    ({"provider": "ses", "spfVerdict": "PASS", "dkimVerdict": "PASS", "dmarcVerdict": "PASS"}, "pass"),
    ({"provider": "ses", "spfVerdict": "PASS", "dkimVerdict": "GRAY", "dmarcVerdict": "FAIL",
      "mail_from": "x@evil.example"}, "fail"),
    ({"provider": "ses", "spfVerdict": "PASS", "dmarcVerdict": "GRAY", "mail_from": "bounce@example.org"}, "pass"),
    ({"provider": "ses", "spfVerdict": "GRAY", "dkimVerdict": "GRAY", "dmarcVerdict": "GRAY"}, "none"),
    ({"provider": "sendgrid", "spf": "pass", "dkim": "{@example.org : pass}",
      "envelope": {"from": "ann@example.org"}}, "pass"),
    ({"provider": "sendgrid", "spf": "pass", "dkim": "{@evil.example : pass}",
      "envelope": {"from": "x@evil.example"}}, "none"),  # passes, but for someone else's domain
    ({"provider": "sendgrid", "spf": "softfail", "envelope": {"from": "ann@example.org"}}, "fail"),
    ({"provider": "mailgun", "x-mailgun-spf": "Pass", "sender": "ann@example.org"}, "pass"),
    ({"provider": "mailgun", "x-mailgun-spf": "Fail", "sender": "ann@example.org"}, "fail"),
    ({"provider": "postmark", "received-spf": "Pass (sender SPF authorized) identity=mailfrom; "
      "client-ip=192.0.2.1; envelope-from=ann@mail.example.org; receiver=x"}, "pass"),
    ({"provider": "postmark", "received-spf": "Fail (not authorized) envelope-from=ann@example.org"}, "fail"),
    (None, "none"),
])
def test_provider_verdicts(meta, verdict):
    result = authenticate(message(), meta)
    assert result.verdict == verdict, result
    assert result.verdict == "none" or result.reasons


def test_a_domainless_dkim_pass_counts_only_when_every_signature_is_aligned():
    meta = {"provider": "mailgun", "x-mailgun-dkim-check-result": "Pass"}
    own = message(b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1; b=x\r\n")
    assert authenticate(own, meta).verdict == "pass"
    mixed = message(b"DKIM-Signature: v=1; d=example.org; b=forged\r\nDKIM-Signature: v=1; d=evil.example; b=x\r\n")
    assert authenticate(mixed, meta).verdict == "none"
    assert authenticate(message(), meta).verdict == "none"


def test_only_the_topmost_results_of_a_named_host_are_read():
    forged_below = (b"Authentication-Results: mx.desk.example; spf=fail smtp.mailfrom=x@evil.example; dmarc=fail\r\n"
                    b"Authentication-Results: mx.desk.example; dmarc=pass header.from=example.org\r\n"
                    b"Authentication-Results: other.example; dmarc=pass header.from=example.org\r\n")
    parsed = message(forged_below)
    assert authenticate(parsed, None, ["mx.desk.example"]).verdict == "fail"
    assert authenticate(parsed, None, []).verdict == "none"  # nobody named: headers are text
    only_foreign = message(b"Authentication-Results: other.example; dmarc=pass header.from=example.org\r\n")
    assert authenticate(only_foreign, None, ["mx.desk.example"]).verdict == "none"
    good = message(b"Authentication-Results: mx.desk.example; dkim=pass header.d=example.org\r\n")
    assert authenticate(good, None, ["MX.desk.example"]).verdict == "pass"
    other_from = message(b"Authentication-Results: mx.desk.example; dmarc=pass header.from=evil.example\r\n")
    assert authenticate(other_from, None, ["mx.desk.example"]).verdict == "none"

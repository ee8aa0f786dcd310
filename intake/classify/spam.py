"""Provider spam verdicts, read as evidence for `spam` (never as the verdict itself).

Providers score mail with SpamAssassin-like filters that know nothing of fellowship mail; their
flag raises the odds of spam, and the classifier still needs the message itself to look like spam
before burying it.
"""

from __future__ import annotations

import re
from typing import Any

from intake.classify.document import Document

# SpamAssassin's default "required" score.
SPAM_SCORE = 5.0
_SCORE = re.compile(r"score=\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)


def _float(value: Any) -> float | None:
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        return None


def spam_evidence(doc: Document) -> list[str]:
    """Readable reasons, one per provider verdict that says spam; [] when none does."""
    reasons: list[str] = []
    meta = doc.meta or {}
    score = _float(meta.get("spam_score"))
    if score is not None and score >= SPAM_SCORE:
        reasons.append(f"provider: spam score {score:g}")
    sflag = meta.get("X-Mailgun-Sflag") or meta.get("x-mailgun-sflag")
    verdict = meta.get("spamVerdict") or meta.get("spam_verdict")
    if isinstance(verdict, dict):
        verdict = verdict.get("status")
    if str(verdict or "").upper() == "FAIL":
        reasons.append("provider: SES spam verdict FAIL")
    for name, value in doc.headers:
        lname, v = name.lower(), (value or "").strip()
        if lname == "x-spam-status" and v.lower().startswith("yes"):
            reasons.append("header: X-Spam-Status: Yes")
        elif lname == "x-spam-flag" and v.lower() == "yes":
            reasons.append("header: X-Spam-Flag: YES")
        elif lname == "x-spam-score":
            s = _float(v)
            if s is not None and s >= SPAM_SCORE:
                reasons.append(f"header: X-Spam-Score: {s:g}")
        elif lname == "x-mailgun-sflag" and not sflag:
            sflag = v
        elif lname == "x-ses-spam-verdict" and v.upper() == "FAIL":
            reasons.append("header: X-SES-Spam-Verdict: FAIL")
    if str(sflag or "").strip().lower() == "yes":
        reasons.append("provider: X-Mailgun-Sflag: Yes")
    # SpamAssassin puts the score inside X-Spam-Status even when it says No.
    if not reasons:
        status = doc.header("X-Spam-Status") or ""
        m = _SCORE.search(status)
        if m and float(m.group(1)) >= SPAM_SCORE:
            reasons.append(f"header: X-Spam-Status score={m.group(1)}")
    return list(dict.fromkeys(reasons))

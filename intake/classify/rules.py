"""Step 2: the operator's rules from INTAKE_CONFIG, which beat the model.

    [[classifier.rules]]
    category = "partnership"
    sender_domains = ["gov", "gob.mx"]      # the sender's domain is, or ends in, one of these
    address_patterns = ["*@*.city.*"]       # shell-style globs on the sender address
    keywords = ["host a fellow"]            # case-insensitive words or phrases, subject or body
    regexes = ['\\bMOU\\b']                 # Python regexes, subject or body
    order = 10                              # lower runs first; ties keep file order
    reason = "sender domain .gov"           # shown to staff as "rule: sender domain .gov"
    confidence = 0.95

Inside one kind of condition any entry matches; when a rule gives several kinds, all of them must
match (e.g. a .gov sender AND the word "fellow"). A rule naming a category that is not in the
taxonomy, or with a bad regex, is skipped with a logged error so that a typo in the config never
stops the pipeline.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from intake.classify.document import Document

log = logging.getLogger(__name__)

# Operator regexes run on untrusted text; bounding the text bounds their running time.
MAX_RULE_TEXT = 20_000


@dataclass(frozen=True)
class Rule:
    category: str
    reason: str
    order: int = 100
    confidence: float = 0.95
    sender_domains: tuple[str, ...] = ()
    address_patterns: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    regexes: tuple[re.Pattern[str], ...] = field(default=())

    def matches(self, doc: Document) -> bool:
        if not (self.sender_domains or self.address_patterns or self.keywords or self.regexes):
            return False
        address = (doc.sender_address or "").lower()
        domain = address.rpartition("@")[2]
        if self.sender_domains and not any(
            domain == d or domain.endswith("." + d) for d in self.sender_domains
        ):
            return False
        if self.address_patterns and not any(
            fnmatch.fnmatchcase(address, p) for p in self.address_patterns
        ):
            return False
        text = f"{doc.subject}\n{doc.body}"[:MAX_RULE_TEXT]
        if self.keywords:
            lowered = text.lower()
            if not any(_keyword_in(k, lowered) for k in self.keywords):
                return False
        if self.regexes and not any(r.search(text) for r in self.regexes):
            return False
        return True


def _keyword_in(keyword: str, lowered_text: str) -> bool:
    """Whole words, so "art" does not match "partnership"."""
    return re.search(r"(?<!\w)" + re.escape(keyword) + r"(?!\w)", lowered_text) is not None


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _describe(raw: Mapping[str, Any]) -> str:
    if raw.get("sender_domains"):
        return "sender domain " + ", ".join("." + d.lstrip(".") for d in _strings(raw["sender_domains"]))
    if raw.get("address_patterns"):
        return "sender address " + ", ".join(_strings(raw["address_patterns"]))
    if raw.get("keywords"):
        return "keywords " + ", ".join(_strings(raw["keywords"]))
    return "pattern"


def parse_rules(raw_rules: Iterable[Mapping[str, Any]], categories: Iterable[str]) -> list[Rule]:
    """Valid rules in the order they run; invalid ones are logged and left out."""
    allowed = set(categories)
    rules: list[tuple[int, int, Rule]] = []
    for index, raw in enumerate(raw_rules):
        if not isinstance(raw, Mapping):
            log.error("classifier rule #%d is not a table; skipped", index + 1)
            continue
        category = str(raw.get("category", ""))
        if category not in allowed:
            log.error(
                "classifier rule #%d names category %r, which is not in the taxonomy (%s); skipped",
                index + 1, category, ", ".join(sorted(allowed)),
            )
            continue
        try:
            regexes = tuple(re.compile(p) for p in _strings(raw.get("regexes")))
        except re.error as exc:
            log.error("classifier rule #%d has a bad regex (%s); skipped", index + 1, exc)
            continue
        try:
            order = int(raw.get("order", 100))
            confidence = float(raw.get("confidence", 0.95))
        except (TypeError, ValueError):
            log.error("classifier rule #%d: order/confidence must be numbers; skipped", index + 1)
            continue
        reason = str(raw.get("reason") or _describe(raw))
        rule = Rule(
            category=category,
            reason=reason,
            order=order,
            confidence=min(max(confidence, 0.0), 1.0),
            sender_domains=tuple(d.lower().lstrip(".").lstrip("@") for d in _strings(raw.get("sender_domains"))),
            address_patterns=tuple(p.lower() for p in _strings(raw.get("address_patterns"))),
            keywords=tuple(k.lower() for k in _strings(raw.get("keywords"))),
            regexes=regexes,
        )
        rules.append((order, index, rule))
    return [rule for _, _, rule in sorted(rules, key=lambda t: (t[0], t[1]))]


def first_match(rules: Iterable[Rule], doc: Document) -> Rule | None:
    for rule in rules:
        if rule.matches(doc):
            return rule
    return None

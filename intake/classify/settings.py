"""The ``[classifier]`` table of INTAKE_CONFIG, parsed and checked once (``Settings.classifier``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from intake.classify.rules import Rule, parse_rules
from intake.config import Table


@dataclass(frozen=True)
class ClassifierSettings:
    review_threshold: float  # below this confidence an inquiry is marked needs_review
    # A message is called spam only when the (evidence-adjusted) probability reaches this.
    spam_threshold: float
    # Automated mail that no header or phrase gave away needs this probability from the model
    # (such a message is never acknowledged, so a person must not land there lightly).
    automated_threshold: float
    provider_spam_odds: float  # how much a provider's spam verdict multiplies the odds of spam
    reload_seconds: float  # how often a worker looks for a newly trained model
    train_margin: float  # `intake train` refuses a model whose macro-F1 drops more than this
    languages: tuple[str, ...]  # ISO 639-1 codes the detector chooses among, sorted
    language_low_memory: bool  # lingua's low-accuracy mode
    rules: tuple[Rule, ...]  # operator rules in the order they run (invalid ones logged, left out)

    @classmethod
    def from_table(cls, given: Any, categories: Iterable[str]) -> "ClassifierSettings":
        table = Table("classifier", given)
        return cls(
            review_threshold=table.number("review_threshold"),
            spam_threshold=table.number("spam_threshold"),
            automated_threshold=table.number("automated_threshold"),
            provider_spam_odds=table.number("provider_spam_odds"),
            reload_seconds=table.number("reload_seconds"),
            train_margin=table.number("train_margin"),
            languages=tuple(sorted({code.lower() for code in table.texts("languages")})),
            language_low_memory=table.flag("language_low_memory"),
            rules=tuple(parse_rules(table.tables("rules"), categories)),
        )

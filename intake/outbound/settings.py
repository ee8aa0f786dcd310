"""The operator's outbound tables, parsed and checked once (``Settings.outbound``).

``[outbound]`` (sender name, signature, caps), ``[acknowledgments]``, ``[auto_answer]`` and
``[knowledge]`` of INTAKE_CONFIG, over their defaults in ``intake/defaults.toml``. The sender
address and whether mail is really sent come from the environment (``load_options``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from intake.config import ConfigError, Table

# Categories that never get an acknowledgment whatever the operator writes: answering spam
# confirms the address, answering automated mail is how loops start.
NEVER_ACKNOWLEDGE = frozenset({"spam", "automated"})


@dataclass(frozen=True)
class Cap:
    """At most ``limit`` messages to one address within ``seconds``."""

    limit: int
    seconds: int

    def describe(self) -> str:
        minutes = self.seconds // 60
        return f"{self.limit} in {minutes} minutes" if minutes < 120 else f"{self.limit} in {minutes // 60} hours"


@dataclass(frozen=True)
class OutboundSettings:
    from_name: str | None
    signature: str
    program_name: str  # {program} in acknowledgment templates
    caps: tuple[Cap, ...]  # per recipient, every kind of automatic mail
    ack_enabled: bool
    ack_categories: frozenset[str]  # never NEVER_ACKNOWLEDGE
    ack_per_sender_seconds: int
    ack_templates: Mapping[str, str]  # empty: the built-in ones (intake/outbound/templates.py)
    ack_null_sender: bool  # MAIL FROM:<> for acknowledgments (RFC 3834 3.3), off by default
    answer_categories: frozenset[str]  # [auto_answer] categories: answers sent without a click
    answer_min_score: float
    suggestion_min_score: float  # [knowledge] min_score: an answer suggested on the card

    @classmethod
    def from_tables(cls, toml: Mapping[str, Any]) -> "OutboundSettings":
        outbound = Table("outbound", toml.get("outbound", {}))
        ack = Table("acknowledgments", toml.get("acknowledgments", {}))
        answer = Table("auto_answer", toml.get("auto_answer", {}))
        knowledge = Table("knowledge", toml.get("knowledge", {}))
        templates = ack.mapping("templates")
        return cls(
            from_name=outbound.text("from_name") or None,
            signature=outbound.text("signature"),
            program_name=outbound.text("program_name"),
            caps=tuple(_cap(entry) for entry in outbound.tables("caps")),
            ack_enabled=ack.flag("enabled"),
            ack_categories=frozenset(ack.texts("categories")) - NEVER_ACKNOWLEDGE,
            ack_per_sender_seconds=int(ack.number("per_sender_hours") * 3600),
            ack_templates={str(k): str(v) for k, v in templates.items()},
            ack_null_sender=ack.flag("null_envelope_sender"),
            answer_categories=frozenset(answer.texts("categories")),
            answer_min_score=answer.number("min_score"),
            suggestion_min_score=knowledge.number("min_score"),
        )


def _cap(entry: Mapping[str, Any]) -> Cap:
    try:
        return Cap(int(entry["max"]), int(float(entry["minutes"]) * 60))
    except (KeyError, TypeError, ValueError):
        raise ConfigError("[[outbound.caps]]: each entry needs `max` and `minutes` numbers, "
                          "like { max = 10, minutes = 10 }") from None

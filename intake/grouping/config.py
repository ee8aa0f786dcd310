"""``[groups]`` of INTAKE_CONFIG, read and checked once (defaults in intake/defaults.toml)."""

from __future__ import annotations

from dataclasses import dataclass

from intake.config import ConfigError, Settings
from intake.grouping.cluster import Options


@dataclass(frozen=True)
class GroupingConfig:
    options: Options
    card_size: int  # a group gets a Slack card once this many people ask

    @classmethod
    def from_settings(cls, settings: Settings) -> "GroupingConfig":
        section = settings.section("groups")
        try:
            threshold = float(section["threshold"])
            topic_weight = float(section["topic_weight"])
            card_size = int(section["card_size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"[groups] in INTAKE_CONFIG: {exc}; see docs/intake.example.toml") from None
        if not 0 < threshold <= 1 or not 0 <= topic_weight <= 1 or card_size < 2:
            raise ConfigError("[groups] needs 0 < threshold <= 1, 0 <= topic_weight <= 1 and card_size >= 2")
        return cls(Options(threshold=threshold, topic_weight=topic_weight), card_size)

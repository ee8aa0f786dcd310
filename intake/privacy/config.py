"""The ``[retention]`` and ``[privacy]`` tables of INTAKE_CONFIG, typed and validated once.

Defaults live in ``intake/defaults.toml``; this module only reads the merged tables, so a default
has one home. A mistake raises ``ConfigError`` naming the key and what it takes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from intake.config import ConfigError, Settings, load_defaults

if TYPE_CHECKING:  # pragma: no cover
    from intake.runtime import Runtime


@dataclass(frozen=True)
class RetentionPolicy:
    """How long what is kept is kept. A period of None means the rule is off."""

    delete_categories: frozenset[str]
    delete_after: dt.timedelta | None
    redact_closed_after: dt.timedelta | None
    periodic: bool


@dataclass(frozen=True)
class PrivacySettings:
    retention: RetentionPolicy
    admin_usergroup: str | None  # Slack user group whose members may erase a person


def _days(table: Mapping[str, Any], key: str) -> dt.timedelta | None:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"INTAKE_CONFIG [retention] {key} must be a number of days (0 turns it off), got {value!r}")
    return dt.timedelta(days=value) if value > 0 else None


def _categories(table: Mapping[str, Any], settings: Settings) -> frozenset[str]:
    value = table.get("delete_categories")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("INTAKE_CONFIG [retention] delete_categories must be a list of category names")
    known = set(settings.category_names)
    if value == load_defaults()["retention"]["delete_categories"]:
        # The built-in list names the default taxonomy's quiet categories; an operator's own
        # taxonomy may have dropped one of them, which is not a mistake of theirs.
        return frozenset(value) & known
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError(
            f"INTAKE_CONFIG [retention] delete_categories names {', '.join(unknown)}, "
            f"not in the taxonomy ({', '.join(settings.category_names)})"
        )
    return frozenset(value)


def privacy_settings(settings: Settings) -> PrivacySettings:
    """Read and check both tables; raises ConfigError on the first mistake."""
    retention = settings.section("retention")
    privacy = settings.section("privacy")
    periodic = retention.get("periodic")
    if not isinstance(periodic, bool):
        raise ConfigError(f"INTAKE_CONFIG [retention] periodic must be true or false, got {periodic!r}")
    group = privacy.get("admin_usergroup")
    if not isinstance(group, str):
        raise ConfigError("INTAKE_CONFIG [privacy] admin_usergroup must be a Slack user group ID (S…) or \"\"")
    return PrivacySettings(
        retention=RetentionPolicy(
            delete_categories=_categories(retention, settings),
            delete_after=_days(retention, "delete_after_days"),
            redact_closed_after=_days(retention, "redact_closed_after_days"),
            periodic=periodic,
        ),
        admin_usergroup=group.strip() or None,
    )


def load(rt: "Runtime") -> PrivacySettings:
    """The process's privacy settings, parsed once."""
    return rt.service("privacy.settings", lambda r: privacy_settings(r.settings))

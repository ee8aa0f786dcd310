"""The ``[sla]`` table of ``INTAKE_CONFIG``, parsed and validated once into :class:`SlaSettings`.

Defaults live in ``intake/defaults.toml`` (one defaults file): the given table is merged over its
``[sla]`` table, then every key is checked and typed here, raising
:class:`intake.config.ConfigError` with a sentence that names the key and the fix.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from intake.config import ConfigError, load_defaults

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NO_TARGET = ("none", "off", "")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhm])", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*[dhm]\s*)+$", re.IGNORECASE)
_CLOCK = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
_USERGROUP = re.compile(r"^S[A-Z0-9]{2,20}$")
_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,20}$")


@dataclass(frozen=True)
class SlaSettings:
    """The business calendar and the response targets, typed.

    ``first_response`` maps a category to its target in business time (``None``: no target);
    categories not named there get ``default_target``. A day (``d``) in a target is one business
    day, as long as ``business_hours`` makes it, so "1d" means "by this time next business day".
    """

    timezone: ZoneInfo
    business_days: frozenset[int]  # Monday is 0, as date.weekday()
    opens: int  # minutes after local midnight
    closes: int
    holidays: frozenset[dt.date]
    holiday_country: str | None
    holiday_subdivision: str | None
    first_response: Mapping[str, dt.timedelta | None]
    default_target: dt.timedelta | None
    due_soon: dt.timedelta
    digest_time: dt.time
    daily_digest: bool
    weekly_report: bool
    waiting_days: int
    oncall_usergroup: str | None
    escalation_usergroup: str | None
    channel: str | None

    @property
    def business_day_length(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.closes - self.opens)

    def target_for(self, category: str | None) -> dt.timedelta | None:
        """The first-response target of a category (the default for unknown or no category)."""
        if category is not None and category in self.first_response:
            return self.first_response[category]
        return self.default_target

    @classmethod
    def from_config(cls, table: Mapping[str, Any], *, categories: Iterable[str] | None = None) -> "SlaSettings":
        """Parse the ``[sla]`` table; ``categories`` (the taxonomy) catches misspelt names."""
        if not isinstance(table, Mapping):
            raise ConfigError("[sla] must be a table")
        defaults = load_defaults()["sla"]
        unknown = sorted(set(table) - set(defaults))
        if unknown:
            raise ConfigError(f"[sla] has unknown key(s) {', '.join(unknown)}; the keys are {', '.join(sorted(defaults))}")
        targets_given = table.get("first_response", {})
        if not isinstance(targets_given, Mapping):
            raise ConfigError('[sla.first_response] must be a table such as { press = "4h", default = "2d" }')
        table = {**defaults, **table, "first_response": {**defaults["first_response"], **targets_given}}
        zone = _timezone(table["timezone"])
        days = _days(table["business_days"])
        opens, closes = _hours(table["business_hours"])
        day_length = dt.timedelta(minutes=closes - opens)
        country, subdivision = _country(table["holiday_country"], table["holiday_subdivision"])
        targets = {
            str(name): _duration(f"[sla.first_response] {name}", value, day_length, allow_none=True)
            for name, value in table["first_response"].items()
        }
        default = targets.pop("default")
        if categories is not None:
            # Only names the operator wrote: a default (press, spam...) for a category the
            # operator's taxonomy dropped is simply unused.
            taxonomy = list(categories)
            stray = sorted(set(targets_given) - set(taxonomy) - {"default"})
            if stray:
                raise ConfigError(
                    f"[sla.first_response] names {', '.join(stray)}, not in the taxonomy "
                    f"({', '.join(taxonomy)}); fix the name or add the category"
                )
        due_soon = _duration("[sla] due_soon", table["due_soon"], day_length, allow_none=False)
        return cls(
            timezone=zone,
            business_days=days,
            opens=opens,
            closes=closes,
            holidays=_dates(table["holidays"]),
            holiday_country=country,
            holiday_subdivision=subdivision,
            first_response=targets,
            default_target=default,
            due_soon=due_soon,
            digest_time=_clock("[sla] digest_time", table["digest_time"]),
            daily_digest=_flag("daily_digest", table["daily_digest"]),
            weekly_report=_flag("weekly_report", table["weekly_report"]),
            waiting_days=_whole("[sla] waiting_days", table["waiting_days"]),
            oncall_usergroup=_slack_id("oncall_usergroup", table["oncall_usergroup"], _USERGROUP, "S"),
            escalation_usergroup=_slack_id("escalation_usergroup", table["escalation_usergroup"], _USERGROUP, "S"),
            channel=_slack_id("channel", table["channel"], _CHANNEL, "C"),
        )


def _timezone(value: Any) -> ZoneInfo:
    try:
        return ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"[sla] timezone {value!r} is not an IANA time zone name; use one like \"America/New_York\""
        ) from None


def _days(value: Any) -> frozenset[int]:
    if not isinstance(value, list) or not value:
        raise ConfigError('[sla] business_days must be a non-empty list such as ["mon", "tue", "wed", "thu", "fri"]')
    days = set()
    for day in value:
        name = str(day).strip().lower()[:3]
        if name not in WEEKDAYS:
            raise ConfigError(f"[sla] business_days has {day!r}; use three-letter names: {', '.join(WEEKDAYS)}")
        days.add(WEEKDAYS.index(name))
    return frozenset(days)


def _minutes(key: str, value: Any) -> int:
    match = _CLOCK.match(str(value).strip())
    if not match or (match.group(1) == "24" and match.group(2) != "00"):
        raise ConfigError(f'{key} has {value!r}; write local times as "HH:MM" (00:00 to 24:00)')
    return int(match.group(1)) * 60 + int(match.group(2))


def _hours(value: Any) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ConfigError('[sla] business_hours must be two local times, opening and closing: ["09:00", "17:00"]')
    opens, closes = (_minutes("[sla] business_hours", v) for v in value)
    if closes <= opens:
        raise ConfigError(f"[sla] business_hours closes ({value[1]}) before it opens ({value[0]})")
    return opens, closes


def _clock(key: str, value: Any) -> dt.time:
    minutes = _minutes(key, value)
    if minutes >= 24 * 60:
        raise ConfigError(f'{key} must be a time of day before 24:00, got {value!r}')
    return dt.time(minutes // 60, minutes % 60)


def _dates(value: Any) -> frozenset[dt.date]:
    if not isinstance(value, list):
        raise ConfigError('[sla] holidays must be a list of dates: ["2026-12-24", "2026-12-31"]')
    dates = set()
    for item in value:
        if isinstance(item, dt.date) and not isinstance(item, dt.datetime):
            dates.add(item)  # TOML's own date literal
            continue
        try:
            dates.add(dt.date.fromisoformat(str(item)))
        except ValueError:
            raise ConfigError(f"[sla] holidays has {item!r}, which is not a date like 2026-12-24") from None
    return frozenset(dates)


def _country(country: Any, subdivision: Any) -> tuple[str | None, str | None]:
    """Checked against the ``holidays`` library now, so a typo fails at start, not at 9 a.m."""
    if not country:
        if subdivision:
            raise ConfigError("[sla] holiday_subdivision needs holiday_country as well")
        return None, None
    import holidays

    try:
        holidays.country_holidays(str(country), subdiv=str(subdivision) if subdivision else None)
    except NotImplementedError as exc:  # how the holidays library says it has no such country or subdivision
        raise ConfigError(f"[sla] holiday_country/holiday_subdivision: {exc} (see the holidays library's list)") from None
    return str(country), str(subdivision) if subdivision else None


def _duration(key: str, value: Any, day: dt.timedelta, *, allow_none: bool) -> dt.timedelta | None:
    """``"4h"``, ``"1d"``, ``"90m"``, ``"1d 4h"``; ``"none"`` (or false) for no target."""
    if value is False or (isinstance(value, str) and value.strip().lower() in NO_TARGET):
        if allow_none:
            return None
        raise ConfigError(f"{key} needs a duration such as \"2h\"")
    if not isinstance(value, str) or not _DURATION.match(value):
        raise ConfigError(
            f'{key} has {value!r}; write a business-time duration such as "4h", "1d", "90m" or "1d 4h"'
            + (' (or "none")' if allow_none else "")
        )
    total = dt.timedelta()
    for amount, unit in _DURATION_PART.findall(value):
        number = float(amount)
        unit = unit.lower()
        total += day * number if unit == "d" else dt.timedelta(hours=number if unit == "h" else number / 60)
    if total <= dt.timedelta() and not allow_none:
        raise ConfigError(f"{key} must be longer than zero")
    return total if total > dt.timedelta() else None


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"[sla] {key} must be true or false, got {value!r}")
    return value


def _whole(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key} must be a whole number of days, got {value!r}")
    return value


def _slack_id(key: str, value: Any, shape: re.Pattern[str], prefix: str) -> str | None:
    if value in (None, "", False):
        return None
    if not isinstance(value, str) or not shape.match(value):
        raise ConfigError(
            f"[sla] {key} must be a Slack ID starting with {prefix} (from its details page), got {value!r}"
        )
    return value

"""The [sla] table: built-in defaults, an operator's overrides, and a clear error for each mistake."""

from __future__ import annotations

import datetime as dt

import pytest

from intake.config import ConfigError, Settings
from intake.sla.settings import SlaSettings

H = dt.timedelta(hours=1)
TAXONOMY = Settings.from_env({}).category_names


def test_defaults_from_the_one_defaults_file():
    sla = SlaSettings.from_config(Settings.from_env({}).section("sla"), categories=TAXONOMY)
    assert str(sla.timezone) == "UTC"
    assert sla.business_days == frozenset(range(5)) and (sla.opens, sla.closes) == (540, 1020)
    assert sla.target_for("press") == 4 * H
    assert sla.target_for("partnership") == 8 * H  # one business day of 09:00-17:00
    assert sla.target_for("application") == sla.target_for(None) == 16 * H  # everything else: 2d
    assert sla.target_for("spam") is None and sla.target_for("automated") is None
    assert sla.due_soon == 2 * H and sla.digest_time == dt.time(9, 0) and sla.waiting_days == 5
    assert sla.oncall_usergroup is None and sla.channel is None


def test_an_operator_file_overrides_key_by_key(tmp_path):
    path = tmp_path / "intake.toml"
    path.write_text(
        '[sla]\ntimezone = "America/New_York"\nbusiness_hours = ["08:30", "18:00"]\n'
        'holidays = ["2026-12-24", 2026-12-31]\nholiday_country = "US"\nholiday_subdivision = "NY"\n'
        'oncall_usergroup = "S0ONCALL"\nescalation_usergroup = "S0LEADS"\nchannel = "C0DESK"\n'
        '[sla.first_response]\npress = "1h 30m"\ngeneral = "none"\n',
        encoding="utf-8",
    )
    settings = Settings.from_env({"INTAKE_CONFIG": str(path)})
    sla = SlaSettings.from_config(settings.section("sla"), categories=settings.category_names)
    assert str(sla.timezone) == "America/New_York"
    assert sla.business_day_length == dt.timedelta(hours=9, minutes=30)
    assert sla.holidays == {dt.date(2026, 12, 24), dt.date(2026, 12, 31)}
    assert (sla.holiday_country, sla.holiday_subdivision) == ("US", "NY")
    assert sla.target_for("press") == dt.timedelta(minutes=90)
    assert sla.target_for("general") is None
    assert sla.target_for("partnership") == dt.timedelta(hours=9, minutes=30)  # default "1d", longer day
    assert (sla.oncall_usergroup, sla.escalation_usergroup, sla.channel) == ("S0ONCALL", "S0LEADS", "C0DESK")


@pytest.mark.parametrize("table, words", [
    ({"timezone": "Mars/Olympus"}, "IANA time zone"),
    ({"business_days": []}, "business_days"),
    ({"business_days": ["mon", "funday"]}, "funday"),
    ({"business_hours": ["17:00", "09:00"]}, "closes"),
    ({"business_hours": ["9am", "5pm"]}, "HH:MM"),
    ({"business_hours": ["09:00"]}, "two local times"),
    ({"holidays": ["Christmas"]}, "not a date"),
    ({"holiday_country": "XX"}, "holiday_country"),
    ({"holiday_subdivision": "NY"}, "needs holiday_country"),
    ({"first_response": {"press": "soon"}}, "business-time duration"),
    ({"first_response": {"prees": "4h"}}, "not in the taxonomy"),
    ({"first_response": "4h"}, "must be a table"),
    ({"due_soon": "none"}, "due_soon"),
    ({"digest_time": "24:00"}, "before 24:00"),
    ({"waiting_days": -1}, "whole number"),
    ({"daily_digest": "yes"}, "true or false"),
    ({"oncall_usergroup": "@oncall"}, "Slack ID starting with S"),
    ({"channel": "#desk"}, "Slack ID starting with C"),
    ({"reminder": "1h"}, "unknown key"),
])
def test_each_mistake_is_named(table, words):
    with pytest.raises(ConfigError) as caught:
        SlaSettings.from_config(table, categories=TAXONOMY)
    assert words in str(caught.value)


def test_a_default_target_for_a_dropped_category_is_no_mistake():
    # An operator taxonomy without `press`: the built-in press target is simply unused.
    sla = SlaSettings.from_config({}, categories=["questions", "spam"])
    assert sla.target_for("questions") == 16 * H

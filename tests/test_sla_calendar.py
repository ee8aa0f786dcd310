"""Business-time arithmetic (intake.sla.calendar): examples a person can check by hand, then
properties that must hold for any instant and duration (hypothesis): weekends, holidays, daylight
saving changes in New York and Berlin, arrivals outside hours, monotonicity and additivity."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intake.sla.calendar import BusinessCalendar, NoBusinessTime

UTC = dt.timezone.utc
NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
H = dt.timedelta(hours=1)


def cal(zone=NY, *, days=range(5), opens=9 * 60, closes=17 * 60, closed=(), country=None, subdiv=None):
    public = holidays.country_holidays(country, subdiv=subdiv) if country else None
    return BusinessCalendar(zone, frozenset(days), opens, closes, frozenset(closed), public)


def local(zone, *args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=zone)


# ---- examples -------------------------------------------------------------------------------


def test_within_one_day():
    c = cal()
    assert c.add(local(NY, 2026, 12, 2, 10), 4 * H) == local(NY, 2026, 12, 2, 14)


def test_friday_afternoon_rolls_over_the_weekend():
    c = cal()
    # Friday 16:00 + 2h: one hour on Friday, one on Monday morning.
    assert c.add(local(NY, 2026, 12, 4, 16), 2 * H) == local(NY, 2026, 12, 7, 10)
    assert c.between(local(NY, 2026, 12, 4, 16), local(NY, 2026, 12, 7, 10)) == 2 * H


def test_arrival_outside_hours_starts_at_the_next_opening():
    c = cal()
    saturday_night = local(NY, 2026, 12, 5, 23, 30)
    assert c.add(saturday_night, 4 * H) == local(NY, 2026, 12, 7, 13)
    before_opening = local(NY, 2026, 12, 8, 6, 0)
    assert c.add(before_opening, H) == local(NY, 2026, 12, 8, 10)
    assert c.next_opening(before_opening) == local(NY, 2026, 12, 8, 9)
    assert c.between(saturday_night, local(NY, 2026, 12, 7, 9)) == dt.timedelta()


def test_a_whole_day_target_lands_at_the_same_time_next_business_day():
    c = cal()
    assert c.add(local(NY, 2026, 12, 3, 11), 8 * H) == local(NY, 2026, 12, 4, 11)
    assert c.add(local(NY, 2026, 12, 4, 11), 8 * H) == local(NY, 2026, 12, 7, 11)


def test_configured_and_public_holidays_are_closed():
    # Christmas 2026 is a Friday; New York's public holidays come from the holidays library.
    c = cal(country="US", subdiv="NY")
    assert not c.is_business_day(dt.date(2026, 12, 25))
    assert c.add(local(NY, 2026, 12, 24, 16), 2 * H) == local(NY, 2026, 12, 28, 10)
    thanksgiving = cal(country="US")
    assert thanksgiving.add(local(NY, 2026, 11, 25, 17), H) == local(NY, 2026, 11, 27, 10)
    office = cal(closed=[dt.date(2026, 12, 31)])
    assert office.add(local(NY, 2026, 12, 30, 16, 30), H) == local(NY, 2027, 1, 1, 9, 30)


def test_spring_forward_in_new_york_keeps_eight_hour_days():
    # DST starts Sunday 8 March 2026: Friday is EST (UTC-5), Monday is EDT (UTC-4).
    c = cal()
    due = c.add(local(NY, 2026, 3, 6, 16), 2 * H)
    assert due == local(NY, 2026, 3, 9, 10)
    assert due.astimezone(UTC).hour == 14  # 10:00 EDT, not 15:00 UTC as in winter
    assert c.between(local(NY, 2026, 3, 6, 9), local(NY, 2026, 3, 9, 17)) == 16 * H


def test_autumn_in_berlin_and_a_window_across_the_change():
    # DST ends Sunday 25 October 2026 in Berlin at 03:00 CEST -> 02:00 CET.
    c = cal(BERLIN)
    assert c.add(local(BERLIN, 2026, 10, 23, 16), 2 * H) == local(BERLIN, 2026, 10, 26, 10)
    # A desk open every day 00:00-06:00 has a 7-hour Sunday that day and a 5-hour one in March.
    night = cal(BERLIN, days=range(7), opens=0, closes=6 * 60)
    assert night.between(local(BERLIN, 2026, 10, 25, 0), local(BERLIN, 2026, 10, 25, 6)) == 7 * H
    assert night.between(local(BERLIN, 2026, 3, 29, 0), local(BERLIN, 2026, 3, 29, 6)) == 5 * H


def test_naive_instants_are_utc_and_results_are_aware():
    c = cal(ZoneInfo("UTC"))
    result = c.add(dt.datetime(2026, 12, 2, 10), H)
    assert result == dt.datetime(2026, 12, 2, 11, tzinfo=UTC) and result.tzinfo is not None


def test_a_calendar_with_no_open_day_fails_clearly():
    with pytest.raises(NoBusinessTime):
        cal(days=[]).add(local(NY, 2026, 12, 2, 10), H)
    with pytest.raises(ValueError):
        cal().add(local(NY, 2026, 12, 2, 10), -H)


# ---- properties -----------------------------------------------------------------------------

ZONES = st.sampled_from([NY, BERLIN, ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata"), ZoneInfo("Australia/Sydney")])
# Instants around the 2026 and 2027 DST changes as well as everything between.
INSTANTS = st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2027, 12, 31),
                        timezones=st.just(UTC))
DURATIONS = st.timedeltas(min_value=dt.timedelta(), max_value=dt.timedelta(hours=200))


@st.composite
def calendars(draw):
    zone = draw(ZONES)
    days = draw(st.sets(st.integers(0, 6), min_size=1))
    opens = draw(st.integers(0, 23 * 60))
    closes = draw(st.integers(opens + 15, 24 * 60))
    closed = draw(st.sets(st.dates(dt.date(2026, 1, 1), dt.date(2027, 12, 31)), max_size=20))
    country = draw(st.sampled_from([None, "US", "DE"]))
    return cal(zone, days=days, opens=opens, closes=closes, closed=closed, country=country)


@settings(max_examples=300, deadline=None)
@given(calendars(), INSTANTS, DURATIONS)
def test_between_undoes_add(c, start, amount):
    assert c.between(start, c.add(start, amount)) == amount


@settings(max_examples=300, deadline=None)
@given(calendars(), INSTANTS, DURATIONS.filter(lambda d: d > dt.timedelta()))
def test_a_due_instant_is_inside_business_hours(c, start, amount):
    due = c.add(start, amount)
    assert due > start
    just_before = due - dt.timedelta(microseconds=1)
    assert c.is_open(just_before)  # the last moment counted was a business moment
    assert c.is_business_day(c.local_date(just_before))


@settings(max_examples=200, deadline=None)
@given(calendars(), INSTANTS, INSTANTS, DURATIONS)
def test_add_is_monotonic_in_the_start(c, a, b, amount):
    early, late = sorted([a, b])
    assert c.add(early, amount) <= c.add(late, amount)


@settings(max_examples=200, deadline=None)
@given(calendars(), INSTANTS, DURATIONS, DURATIONS)
def test_add_is_monotonic_in_the_duration_and_additive(c, start, first, second):
    small, large = sorted([first, second])
    assert c.add(start, small) <= c.add(start, large)
    assert c.add(c.add(start, first), second) == c.add(start, first + second)


@settings(max_examples=200, deadline=None)
@given(calendars(), INSTANTS, INSTANTS, INSTANTS)
def test_between_adds_up_and_never_exceeds_elapsed_time(c, a, b, d):
    x, y, z = sorted([a, b, d])
    assert c.between(x, y) + c.between(y, z) == c.between(x, z)
    assert dt.timedelta() <= c.between(x, z) <= z - x
    assert c.between(z, x) == -c.between(x, z)


@settings(max_examples=100, deadline=None)
@given(INSTANTS, st.integers(1, 40))
def test_weekends_never_count(start, hours):
    c = cal(NY)
    due = c.add(start, hours * H)
    for offset in range(int((due - start) / H) + 1):
        moment = start + offset * H
        if moment < due and c.local_date(moment).weekday() >= 5:
            assert not c.is_open(moment)

"""Business-time arithmetic: add N business hours to an instant, count business time between two.

Pure functions of a :class:`BusinessCalendar` (time zone, open days, opening hours, closed dates);
no database and no clock of its own, so it is property-tested on its own
(tests/test_sla_calendar.py).

Every day's business window is built from *local* wall-clock times (``zoneinfo``) and then
handled as UTC instants. That is what makes daylight-saving changes come out right: 09:00–17:00
is eight real hours on either side of a change, a window that spans the change itself (a desk
open at 01:00–05:00) is one hour shorter or longer, and adding time is adding real elapsed
seconds inside the windows. Instants without a zone are taken as UTC (SQLite hands back naive
UTC datetimes).

Public holidays come from the ``holidays`` library (maintained, ~200 countries and their
subdivisions, observed-day rules included) rather than a list we would have to keep up to date.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator
from zoneinfo import ZoneInfo

if TYPE_CHECKING:  # pragma: no cover
    from intake.sla.settings import SlaSettings

UTC = dt.timezone.utc
# A calendar with no open day in this many days is a configuration mistake, not a long weekend.
MAX_SEARCH_DAYS = 3660
ZERO = dt.timedelta()


class NoBusinessTime(ValueError):
    """The calendar has no business hours for years ahead (every day closed)."""


def as_utc(when: dt.datetime) -> dt.datetime:
    """An aware UTC instant; a naive one is taken to be UTC already."""
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


@dataclass(frozen=True)
class BusinessCalendar:
    zone: ZoneInfo
    days: frozenset[int]  # date.weekday() numbers of open days
    opens: int  # minutes after local midnight
    closes: int  # up to 24 * 60
    closed_dates: frozenset[dt.date] = frozenset()
    public_holidays: Any = None  # a holidays.HolidayBase (a dict-like of dates), or None

    @classmethod
    def from_settings(cls, sla: "SlaSettings") -> "BusinessCalendar":
        public = None
        if sla.holiday_country:
            import holidays

            public = holidays.country_holidays(sla.holiday_country, subdiv=sla.holiday_subdivision)
        return cls(sla.timezone, sla.business_days, sla.opens, sla.closes, sla.holidays, public)

    # ---- days and windows ---------------------------------------------------------------------
    def is_business_day(self, day: dt.date) -> bool:
        if day.weekday() not in self.days or day in self.closed_dates:
            return False
        return self.public_holidays is None or day not in self.public_holidays

    def local_date(self, when: dt.datetime) -> dt.date:
        return as_utc(when).astimezone(self.zone).date()

    def local_instant(self, day: dt.date, minutes: int) -> dt.datetime:
        """The UTC instant of a local wall-clock time (minutes after midnight, up to 24:00)."""
        naive = dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=minutes)
        return naive.replace(tzinfo=self.zone).astimezone(UTC)

    def window(self, day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
        """That day's opening and closing as UTC instants, or None when it is closed."""
        if not self.is_business_day(day):
            return None
        opens, closes = self.local_instant(day, self.opens), self.local_instant(day, self.closes)
        # Opening hours that fall inside a skipped hour (clocks going forward) can end up empty.
        return (opens, closes) if closes > opens else None

    def windows(self, start: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """Business windows that end after ``start``, in order (the first may contain it)."""
        start = as_utc(start)
        day = self.local_date(start)
        last_open = day
        while True:
            found = self.window(day)
            if found is not None:
                last_open = day
                if found[1] > start:
                    yield found
            elif (day - last_open).days > MAX_SEARCH_DAYS:
                raise NoBusinessTime(f"no business day in the {MAX_SEARCH_DAYS} days after {last_open}")
            day += dt.timedelta(days=1)

    def is_open(self, when: dt.datetime) -> bool:
        found = self.window(self.local_date(when))
        return found is not None and found[0] <= as_utc(when) < found[1]

    # ---- arithmetic ---------------------------------------------------------------------------
    def add(self, start: dt.datetime, amount: dt.timedelta) -> dt.datetime:
        """The instant at which ``amount`` of business time has passed since ``start``.

        Adding zero returns ``start`` itself; otherwise the result lies inside (or at the closing
        edge of) a business window, so an inquiry that arrives on a Saturday with a 4-hour target
        is due at 13:00 on Monday.
        """
        start = as_utc(start)
        if amount < ZERO:
            raise ValueError("add() takes a duration of zero or more")
        if amount == ZERO:
            return start
        remaining = amount
        for opens, closes in self.windows(start):
            begin = max(opens, start)
            available = closes - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
        raise AssertionError("unreachable: windows() never ends")  # pragma: no cover

    def between(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """Business time from ``start`` to ``end``; negative when ``end`` comes first."""
        start, end = as_utc(start), as_utc(end)
        if end < start:
            return -self.between(end, start)
        total = ZERO
        for opens, closes in self.windows(start):
            if opens >= end:
                break
            total += min(closes, end) - max(opens, start)
        return total

    def next_opening(self, when: dt.datetime) -> dt.datetime:
        """``when`` itself during business hours, else the start of the next business window."""
        opens, _ = next(self.windows(when))
        return max(opens, as_utc(when))

"""Pay periods: a calendar from the config, cut at local midnight in the center's
time zone. Pure functions; the lifecycle (open → closing → closed) is decided
from a period's bounds, the clock and whether a version has been stored.

Period ids: `2026-10` (monthly), `2026-10-1` / `2026-10-2` (semi-monthly: the 1st
to the 15th, the 16th to the month's end), `2026-W43` (ISO weeks, Monday to
Sunday), or the ids of explicit ranges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from services.core.payroll_rules import Calendar, ExplicitRange, PeriodSettings

__all__ = ["Calendar", "ExplicitRange", "Period", "PeriodError", "PeriodSettings", "Status"]

Status = Literal["open", "closing", "closed"]


class PeriodError(ValueError):
    """An unknown or malformed period id, with what was expected."""


@dataclass(frozen=True)
class Period:
    id: str
    first: date  # local dates, inclusive
    last: date
    start: datetime  # UTC instants: local midnight of `first` ...
    end: datetime  # ... to local midnight after `last` (exclusive)


def _bounds(pid: str, first: date, last: date, tz: ZoneInfo) -> Period:
    def midnight(d: date) -> datetime:
        return datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC)

    return Period(pid, first, last, midnight(first), midnight(last + timedelta(days=1)))


def _month_end(year: int, month: int) -> date:
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return nxt - timedelta(days=1)


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_HALF = re.compile(r"^(\d{4})-(\d{2})-([12])$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


def parse(pid: str, cfg: PeriodSettings, tz: ZoneInfo) -> Period:
    """The period with this id under the configured calendar."""
    year = re.match(r"^(\d{4})-", pid)
    if year and not 1970 <= int(year[1]) < 9000:
        raise PeriodError(f"period {pid!r}: the year must lie between 1970 and 8999")
    try:
        if cfg.calendar == "monthly" and (m := _MONTH.match(pid)):
            y, mo = int(m[1]), int(m[2])
            return _bounds(pid, date(y, mo, 1), _month_end(y, mo), tz)
        if cfg.calendar == "semi_monthly" and (m := _HALF.match(pid)):
            y, mo, half = int(m[1]), int(m[2]), m[3]
            if half == "1":
                return _bounds(pid, date(y, mo, 1), date(y, mo, 15), tz)
            return _bounds(pid, date(y, mo, 16), _month_end(y, mo), tz)
        if cfg.calendar == "weekly" and (m := _WEEK.match(pid)):
            monday = date.fromisocalendar(int(m[1]), int(m[2]), 1)
            return _bounds(pid, monday, monday + timedelta(days=6), tz)
    except ValueError:
        pass
    if cfg.calendar == "explicit":
        for r in cfg.ranges:
            if r.id == pid:
                return _bounds(pid, r.first, r.last, tz)
        raise PeriodError(f"period {pid!r}: not one of the configured ranges")
    example = {"monthly": "2026-10", "semi_monthly": "2026-10-1 or 2026-10-2",
               "weekly": "2026-W43"}[cfg.calendar]  # fmt: skip
    raise PeriodError(f"period {pid!r}: not a {cfg.calendar} period id (like {example})")


def containing(instant: datetime, cfg: PeriodSettings, tz: ZoneInfo) -> Period | None:
    """The period that holds `instant` (None: between explicit ranges)."""
    d = instant.astimezone(tz).date()
    if cfg.calendar == "monthly":
        return parse(f"{d:%Y-%m}", cfg, tz)
    if cfg.calendar == "semi_monthly":
        return parse(f"{d:%Y-%m}-{1 if d.day <= 15 else 2}", cfg, tz)
    if cfg.calendar == "weekly":
        year, week, _ = d.isocalendar()
        return parse(f"{year}-W{week:02d}", cfg, tz)
    for r in cfg.ranges:
        if r.first <= d <= r.last:
            return parse(r.id, cfg, tz)
    return None


def recent(now: datetime, cfg: PeriodSettings, tz: ZoneInfo, count: int = 6) -> list[Period]:
    """The current period and the ones before it, newest first."""
    if cfg.calendar == "explicit":
        started = [parse(r.id, cfg, tz) for r in cfg.ranges]
        return sorted((p for p in started if p.start <= now), key=lambda p: p.start,
                      reverse=True)[:count]  # fmt: skip
    out: list[Period] = []
    at = now
    while len(out) < count:
        p = containing(at, cfg, tz)
        assert p is not None
        out.append(p)
        at = p.start - timedelta(microseconds=1)
    return out


def earliest_close(period: Period, fcr_window_hours: int, grace_hours: int) -> datetime:
    """When the FCR windows of the period's last calls have ended, plus the grace."""
    return period.end + timedelta(hours=fcr_window_hours + grace_hours)


def latest_closable(
    now: datetime, cfg: PeriodSettings, tz: ZoneInfo, fcr_window_hours: int, grace_hours: int
) -> Period | None:
    """The newest period that can be closed at `now` without force: its last calls'
    FCR windows and the grace have ended. On the first days of a month that is not
    the previous month but the one before it."""
    # The window and the grace are at most 31 days each (KpiDefinitions,
    # PeriodSettings), so even weekly periods need look back only this far.
    for period in recent(now, cfg, tz, count=12):
        if earliest_close(period, fcr_window_hours, grace_hours) <= now:
            return period
    return None


def status(period: Period, now: datetime, closed: bool) -> Status:
    if closed:
        return "closed"
    return "open" if now < period.end else "closing"

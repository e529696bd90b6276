"""Windows and intervals over minute buckets, cut in the center's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MINUTE = timedelta(minutes=1)
ROLLING = {"15m": 15, "30m": 30, "1h": 60}
WINDOWS = (*ROLLING, "today")
GRANULARITIES = {"15m": 15, "30m": 30, "1h": 60, "1d": 1440}
# calendar intervals: local midnight of each Monday (ISO weeks) or first of a month
CALENDAR = ("1w", "1mo")
MAX_SPAN = timedelta(days=400)
MAX_INTERVALS = 20_000


class WindowError(ValueError):
    pass


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(t: datetime) -> int:
    """Microseconds since the epoch of an aware datetime, in integer arithmetic
    (a float timestamp would round)."""
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def trailing(length: timedelta, now: datetime) -> tuple[datetime, datetime]:
    """[from, to) of a trailing window of whole minutes up to the end of the
    current minute (the minute in progress counts, as in the read API)."""
    end = floor_minute(now.astimezone(UTC)) + MINUTE
    return end - length, end


def window_bounds(window: str, now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[from, to) of a live window; `to` is the end of the current minute."""
    if window in ROLLING:
        return trailing(timedelta(minutes=ROLLING[window]), now)
    end = floor_minute(now.astimezone(UTC)) + MINUTE
    if window == "today":
        local = now.astimezone(tz)
        midnight = datetime.combine(local.date(), time(0), tzinfo=tz)
        return midnight.astimezone(UTC), end
    raise WindowError(f"window: must be one of {', '.join(WINDOWS)}, got {window!r}")


# Instants the API accepts: events are refused before 1970 (the door), and an
# instant shown in any time zone must stay a valid date (year 1 and 9999 overflow).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def parse_instant(name: str, value: str, *, minute_aligned: bool = True) -> datetime:
    try:
        dt = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise WindowError(f"{name}: not an RFC 3339 timestamp: {value!r}") from None
    if dt.tzinfo is None:
        raise WindowError(f"{name}: timestamp needs a UTC offset (e.g. Z or +08:00): {value!r}")
    if minute_aligned and (dt.second or dt.microsecond):
        raise WindowError(f"{name}: must be aligned to a minute (seconds = 0): {value!r}")
    try:
        utc = dt.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise WindowError(
            f"{name}: must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}: {value!r}"
        )
    return utc


def parse_bound(name: str, value: str, tz: ZoneInfo | None) -> datetime:
    """An instant, or with `tz` also a date (YYYY-MM-DD): that day's local
    midnight, which a page can ask for without knowing the zone's offset."""
    if tz is not None and len(value) == 10 and value[4] == "-" and value[7] == "-":
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise WindowError(f"{name}: not a date (YYYY-MM-DD): {value!r}") from None
        return parse_instant(name, datetime.combine(day, time(0), tzinfo=tz).isoformat())
    return parse_instant(name, value)


def explicit_bounds(from_: str, to: str, tz: ZoneInfo | None = None) -> tuple[datetime, datetime]:
    """[from, to) as asked; with `tz`, either may be a local date (its midnight:
    `to` a date is exclusive, so one day is from=D&to=D+1)."""
    start, end = parse_bound("from", from_, tz), parse_bound("to", to, tz)
    if end <= start:
        raise WindowError("to: must be after from")
    if end - start > MAX_SPAN:
        raise WindowError(f"to: span longer than {MAX_SPAN.days} days")
    return start, end


def interval_edges(
    start: datetime, end: datetime, granularity: str, tz: ZoneInfo
) -> list[datetime]:
    """Boundaries aligned in local time, clipped to [start, end]: first is start,
    last is end. A day runs local midnight to midnight (23 or 25 h across DST)."""
    if granularity not in GRANULARITIES and granularity not in CALENDAR:
        raise WindowError(
            f"granularity: must be one of {', '.join((*GRANULARITIES, *CALENDAR))}, "
            f"got {granularity!r}"
        )
    # Step in UTC: arithmetic on datetimes in a ZoneInfo zone is wall-clock
    # arithmetic, which would invent the hour a spring-forward day skips.
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    edges = [start]
    if granularity in ("1d", *CALENDAR):
        d: date = _next_day_start(start.astimezone(tz).date(), granularity)
        while True:
            b = datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC)
            if b >= end:
                break
            edges.append(b)
            d = _next_day_start(d, granularity)
            if len(edges) > MAX_INTERVALS:
                raise WindowError("granularity: too many intervals; choose a coarser one")
    else:
        step = timedelta(minutes=GRANULARITIES[granularity])
        b = _next_aligned(start, step, tz)
        while b < end:
            edges.append(b)
            b = _next_aligned(b, step, tz)
            if len(edges) > MAX_INTERVALS:
                raise WindowError("granularity: too many intervals; choose a coarser one")
    edges.append(end)
    return edges


def _next_day_start(d: date, granularity: str) -> date:
    """The first local day after d that starts an interval: the next day, the
    next Monday, or the first of the next month."""
    if granularity == "1w":
        return d + timedelta(days=7 - d.weekday())
    if granularity == "1mo":
        return date(d.year + d.month // 12, d.month % 12 + 1, 1)
    return d + timedelta(days=1)


def _next_aligned(t: datetime, step: timedelta, tz: ZoneInfo) -> datetime:
    """The first instant after t whose local wall-clock time is a multiple of step."""
    minutes = int(step.total_seconds() // 60)
    c = t + MINUTE
    while True:
        local = c.astimezone(tz)
        if (local.hour * 60 + local.minute) % minutes == 0:
            return c
        # jump close to the next boundary instead of walking minute by minute
        rem = minutes - (local.hour * 60 + local.minute) % minutes
        c = c + timedelta(minutes=rem) if rem > 1 else c + MINUTE


def local_shift(t: datetime, days: int, tz: ZoneInfo) -> datetime:
    """The same wall-clock time `days` later in `tz` (a week before 09:00 is
    09:00, whatever daylight saving did in between)."""
    local = t.astimezone(tz).replace(tzinfo=None) + timedelta(days=days)
    return local.replace(tzinfo=tz).astimezone(UTC)


def iso(t: datetime, tz: ZoneInfo) -> str:
    return t.astimezone(tz).isoformat()

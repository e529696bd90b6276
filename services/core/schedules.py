"""Agents' schedules: the CSV a planner uploads, read into activity segments.

One row per activity: `agent_id,date,start,end,activity` (the activity column may
be left out: every row is then `work`). `date` is the day the shift belongs to,
`start` and `end` are local wall-clock times (HH:MM or HH:MM:SS, `end` may be
24:00) in the configured time zone; an end at or before the start is on the next
day, so a night shift is one row. A row inside another row of the same agent and
day takes that part of it (a break inside a shift); in a shift that runs past
midnight, a row that would end before the shift begins is the next morning's (a
02:00 break in a 22:00-06:00 shift); rows that overlap without one holding the
other are refused. `<agent>,<date>,,,off` says the agent has no shift
that day (it replaces an earlier upload's).

Like manual items, a file is taken whole or not at all: every problem is listed
with its line and column. On a daylight-saving day the hours are the wall
clock's: a 00:00-06:00 shift lasts 5 hours the night clocks go forward and 7 the
night they go back (docs/staffing.md#schedules).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.core.problems import Problems
from services.core.staffing_rules import DAY_OFF
from services.core.timewin import epoch_us

COLUMNS = ("agent_id", "date", "start", "end", "activity")
# Rows of one agent-day: nesting is checked pair by pair (quadratic: 1,401 rows
# took 0.1 s, so the 200,000 rows an 8 MB body holds would take about two hours
# inside the request); no roster needs more than a day of half hours.
MAX_ROWS_PER_DAY = 48
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


@dataclass(frozen=True, slots=True)
class Segment:
    """One agent's scheduled activity over [start_us, end_us) (µs since the epoch)."""

    agent_id: str
    day: date
    start_us: int
    end_us: int
    activity: str


@dataclass
class ParsedSchedule(Problems):
    segments: list[Segment] = field(default_factory=list)
    # every (agent, day) the file speaks for, a day off included: the upload
    # replaces these, and only these, in the schedule in force
    days: set[tuple[str, date]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    agent: str
    day: date
    start: int  # µs
    end: int
    activity: str
    clock: tuple[time, time | None]  # as written: (start, end; None for 24:00)


def local_us(day: date, at: time, tz: ZoneInfo) -> int:
    """A wall-clock time of a local day as µs since the epoch (a time a
    spring-forward night skips is read with the offset before the change)."""
    return epoch_us(datetime.combine(day, at, tzinfo=tz).astimezone(UTC))


def _clock(text: str) -> time | str | None:
    """A wall-clock time; None for 24:00 (the next midnight); a string saying what
    is wrong otherwise."""
    m = _TIME.match(text)
    if m is None:
        return f"{text!r} is not a time (HH:MM or HH:MM:SS)"
    h, mi, sec = int(m[1]), int(m[2]), int(m[3] or 0)
    if (h, mi, sec) == (24, 0, 0):
        return None
    if h > 23 or mi > 59 or sec > 59:
        return f"{text!r} is not a time of day"
    return time(h, mi, sec)


def parse_csv(
    text: str, activities: set[str], agents: set[str] | None, tz: ZoneInfo
) -> ParsedSchedule:
    """Segments from a schedule CSV. `activities`: the configured names;
    `agents`: the roster (None: any agent id)."""
    out = ParsedSchedule()
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    header = [h.strip() for h in next(reader, [])]
    need = list(COLUMNS[:4])
    if header[:4] != need or header[4:] not in ([], ["activity"]):
        out.problem(
            f"line 1: the header must be {','.join(COLUMNS)} (activity may be left out), "
            f"got {','.join(header)[:200]!r}"
        )
        return out
    known = ", ".join(sorted(activities))
    rows: dict[tuple[str, date], list[_Row]] = {}
    first_line: dict[tuple[str, date], int] = {}
    off: dict[tuple[str, date], int] = {}
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            out.problem(f"line {line}: {len(row)} cells, the header has {len(header)}")
            continue
        cells = [c.strip() for c in row] + [""] * (len(header) - len(row))
        agent, day_text, start_text, end_text = cells[:4]
        activity = (cells[4] if len(cells) > 4 else "") or "work"
        if not agent:
            out.problem(f"line {line}, column 1: agent_id is empty")
            continue
        if agents is not None and agent not in agents:
            out.problem(f"line {line}, column 1: agent {agent!r} is not in the roster")
            continue
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            out.problem(f"line {line}, column 2: {day_text!r} is not a date (YYYY-MM-DD)")
            continue
        key = (agent, day)
        if activity == DAY_OFF:
            if start_text or end_text:
                out.problem(f"line {line}: a day off ({DAY_OFF}) has no start or end")
            elif key in first_line:
                out.problem(
                    f"line {line}: {agent} {day} is off, but line {first_line[key]} schedules it"
                )
            else:
                off[key] = line
                out.days.add(key)
            continue
        if activity not in activities:
            out.problem(
                f"line {line}, column 5: unknown activity {activity!r} (configured: {known}; "
                f"'{DAY_OFF}' for a day off)"
            )
            continue
        start, end = _clock(start_text), _clock(end_text)
        bad = False
        for col, value, name in ((3, start, "start"), (4, end, "end")):
            if isinstance(value, str):
                out.problem(f"line {line}, column {col} ({name}): {value}")
                bad = True
        if start is None:
            out.problem(f"line {line}, column 3 (start): 24:00 is the next day's 00:00")
            bad = True
        if bad or isinstance(start, str) or isinstance(end, str) or start is None:
            continue
        start_us, end_us = _span(day, start, end, tz)
        if end_us <= start_us:  # a 02:00-03:00 row on the night 02:xx is skipped
            out.problem(f"line {line}: {start_text}-{end_text} on {day} lasts no time")
            continue
        if key in off:
            out.problem(f"line {line}: {agent} {day} is off on line {off[key]}")
            continue
        if len(rows.get(key, ())) == MAX_ROWS_PER_DAY:
            out.problem(
                f"line {line}: {agent} {day} has more than {MAX_ROWS_PER_DAY} rows (a day in "
                "half-hour activities is 48)"
            )
            continue
        first_line.setdefault(key, line)
        rows.setdefault(key, []).append(
            _Row(line, agent, day, start_us, end_us, activity, (start, end))
        )
        out.days.add(key)
    for day_rows in rows.values():
        _flatten(_after_midnight(day_rows, tz), out)
    out.segments.sort(key=lambda s: (s.agent_id, s.start_us))
    return out


def _span(day: date, start: time, end: time | None, tz: ZoneInfo) -> tuple[int, int]:
    """A row's [start, end) in µs: an end at or before the start is the next day's."""
    end_day = day + timedelta(days=1) if end is None or end <= start else day
    return local_us(day, start, tz), local_us(end_day, end or time(0), tz)


def _after_midnight(rows: list[_Row], tz: ZoneInfo) -> list[_Row]:
    """In a shift that runs past midnight, a row that ends before the shift begins
    is the next morning's: `22:00-06:00 work` then `02:00-02:30 break` on the same
    date is a break at 2 in the night, as planners write it."""
    midnight = local_us(rows[0].day + timedelta(days=1), time(0), tz)
    night = [r.start for r in rows if r.end > midnight]
    if not night:
        return rows
    out = []
    for r in rows:
        if r.end <= min(night):
            start, end = _span(r.day + timedelta(days=1), r.clock[0], r.clock[1], tz)
            r = _Row(r.line, r.agent, r.day, start, end, r.activity, r.clock)
        out.append(r)
    return out


def _flatten(rows: list[_Row], out: ParsedSchedule) -> None:
    """One agent-day's rows as segments that do not overlap: where rows nest, the
    inner one (the shorter) holds the time."""
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            if a.start < b.end and b.start < a.end:
                inside = (a.start <= b.start and b.end <= a.end) or (
                    b.start <= a.start and a.end <= b.end
                )
                same = a.start == b.start and a.end == b.end
                if same or not inside:
                    out.problem(
                        f"line {b.line}: overlaps line {a.line} ({a.agent} {a.day}) without "
                        "one lying inside the other"
                    )
                    return
    edges = sorted({t for r in rows for t in (r.start, r.end)})
    pieces: list[Segment] = []
    for s, e in itertools.pairwise(edges):
        covering = [r for r in rows if r.start <= s and e <= r.end]
        if not covering:
            continue
        inner = min(covering, key=lambda r: r.end - r.start)
        last = pieces[-1] if pieces else None
        if last is not None and last.activity == inner.activity and last.end_us == s:
            pieces[-1] = Segment(last.agent_id, last.day, last.start_us, e, last.activity)
        else:
            pieces.append(Segment(inner.agent, inner.day, s, e, inner.activity))
    out.segments.extend(pieces)

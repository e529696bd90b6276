"""Schedule CSVs: segments in local wall-clock time, nesting, days off, and every
problem named by line and column."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from services.core.schedules import ParsedSchedule, parse_csv
from services.core.staffing_rules import StaffingSettings

ACTIVITIES = set(StaffingSettings().activities)
SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
HEADER = "agent_id,date,start,end,activity\n"


def parse(body: str, tz: ZoneInfo = SHANGHAI, agents: set[str] | None = None) -> ParsedSchedule:
    return parse_csv(HEADER + body, ACTIVITIES, agents, tz)


def utc(text: str) -> int:
    dt = datetime.fromisoformat(text).astimezone(UTC)
    return int(dt.timestamp()) * 1_000_000


def spans(p: ParsedSchedule) -> list[tuple[str, str, str, str]]:
    def fmt(us: int, tz: ZoneInfo = SHANGHAI) -> str:
        return datetime.fromtimestamp(us / 1e6, tz).strftime("%d %H:%M")

    return [(s.agent_id, fmt(s.start_us), fmt(s.end_us), s.activity) for s in p.segments]


def test_a_break_inside_a_shift_takes_its_part_of_the_shift() -> None:
    p = parse("a1,2026-12-07,09:00,18:00,work\na1,2026-12-07,12:00,13:00,lunch\n")
    assert p.problems == []
    assert spans(p) == [
        ("a1", "07 09:00", "07 12:00", "work"),
        ("a1", "07 12:00", "07 13:00", "lunch"),
        ("a1", "07 13:00", "07 18:00", "work"),
    ]
    assert p.segments[0].start_us == utc("2026-12-07T09:00:00+08:00")


def test_a_night_shift_ends_the_next_morning_and_belongs_to_the_day_it_starts() -> None:
    p = parse("a1,2026-12-07,22:00,06:00\n")  # no activity column value: work
    assert p.problems == []
    assert spans(p) == [("a1", "07 22:00", "08 06:00", "work")]
    assert p.segments[0].day == date(2026, 12, 7)
    p = parse("a2,2026-12-07,16:00,24:00\n")
    assert spans(p) == [("a2", "07 16:00", "08 00:00", "work")]


def test_the_activity_column_may_be_left_out() -> None:
    p = parse_csv(
        "agent_id,date,start,end\na1,2026-12-07,09:00,17:30\n", ACTIVITIES, None, SHANGHAI
    )
    assert p.problems == [] and [s.activity for s in p.segments] == ["work"]


def test_shifts_across_daylight_saving_changes_last_the_wall_clocks_hours() -> None:
    # Berlin: clocks go forward 2027-03-28 02:00 → 03:00, back 2026-10-25 03:00 → 02:00
    spring = parse("a1,2027-03-27,22:00,06:00\n", BERLIN).segments[0]
    autumn = parse("a1,2026-10-24,22:00,06:00\n", BERLIN).segments[0]
    assert (spring.end_us - spring.start_us) / 3.6e9 == 7
    assert (autumn.end_us - autumn.start_us) / 3.6e9 == 9


def test_a_day_off_speaks_for_the_day_without_a_segment() -> None:
    p = parse("a1,2026-12-07,,,off\na2,2026-12-07,09:00,17:00,work\n")
    assert p.problems == []
    assert p.days == {("a1", date(2026, 12, 7)), ("a2", date(2026, 12, 7))}
    assert [s.agent_id for s in p.segments] == ["a2"]


def test_every_bad_row_is_named_by_line_and_column_and_nothing_is_taken() -> None:
    p = parse(
        "a1,2026-12-07,09:00,18:00,work\n"
        "a1,2026-12-07,17:00,19:00,break\n"  # 3: overlaps the shift's end
        ",2026-12-07,09:00,10:00,work\n"  # 4: no agent
        "a2,2026-13-01,09:00,10:00,work\n"  # 5: no such date
        "a2,2026-12-07,9h,10:00,work\n"  # 6: not a time
        "a2,2026-12-07,09:00,25:00,work\n"  # 7: not a time of day
        "a2,2026-12-07,09:00,10:00,lunhc\n"  # 8: unknown activity
        "a3,2026-12-07,09:00,10:00,work\n"
        "a3,2026-12-07,,,off\n"  # 10: off and scheduled
        "a4,2026-12-07,09:00,10:00,work,extra\n"  # 11: too many cells
        "a5,2026-12-07,09:00,10:00,off\n"  # 12: a day off with times
        "a6,2026-12-07,24:00,06:00,work\n"  # 13: starts at 24:00
    )
    assert p.problems == [
        "line 4, column 1: agent_id is empty",
        "line 5, column 2: '2026-13-01' is not a date (YYYY-MM-DD)",
        "line 6, column 3 (start): '9h' is not a time (HH:MM or HH:MM:SS)",
        "line 7, column 4 (end): '25:00' is not a time of day",
        "line 8, column 5: unknown activity 'lunhc' (configured: break, coaching, lunch, "
        "meeting, offline, training, work; 'off' for a day off)",
        "line 10: a3 2026-12-07 is off, but line 9 schedules it",
        "line 11: 6 cells, the header has 5",
        "line 12: a day off (off) has no start or end",
        "line 13, column 3 (start): 24:00 is the next day's 00:00",
        "line 3: overlaps line 2 (a1 2026-12-07) without one lying inside the other",
    ]


def test_a_header_that_is_not_the_schedules_is_refused_at_line_1() -> None:
    p = parse_csv("agent,day,from,to\n", ACTIVITIES, None, SHANGHAI)
    assert p.problems[0].startswith("line 1: the header must be agent_id,date,start,end,activity")


def test_an_agent_outside_the_roster_is_refused() -> None:
    p = parse("ghost,2026-12-07,09:00,17:00,work\n", agents={"a1"})
    assert p.problems == ["line 2, column 1: agent 'ghost' is not in the roster"]


def test_a_spreadsheets_byte_order_mark_and_blank_lines_are_accepted() -> None:
    p = parse_csv("\ufeff" + HEADER + "\n a1 ,2026-12-07, 09:00 ,17:00, work \n\n", ACTIVITIES,
                  None, SHANGHAI)  # fmt: skip
    assert p.problems == [] and spans(p) == [("a1", "07 09:00", "07 17:00", "work")]


def test_a_break_after_midnight_in_a_night_shift_is_the_next_mornings() -> None:
    p = parse("a1,2026-12-07,22:00,06:00,work\na1,2026-12-07,02:00,02:30,break\n")
    assert p.problems == []
    assert spans(p) == [
        ("a1", "07 22:00", "08 02:00", "work"),
        ("a1", "08 02:00", "08 02:30", "break"),
        ("a1", "08 02:30", "08 06:00", "work"),
    ]


def test_an_agent_day_of_more_rows_than_a_day_of_half_hours_is_refused() -> None:
    rows = "".join(f"a1,2026-12-07,{h:02d}:{m:02d},{h:02d}:{m + 29:02d},work\n"
                   for h in range(24) for m in (0, 30))  # fmt: skip
    assert parse(rows).problems == []  # 48 half hours: a full day
    many = rows + "a1,2026-12-07,23:59,23:59:30,break\n" * 5000
    p = parse(many)
    assert p.problems[0] == (
        "line 50: a1 2026-12-07 has more than 48 rows (a day in half-hour activities is 48)"
    )
    assert p.more_problems == 5000 - 50

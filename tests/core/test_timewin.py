from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from services.core.timewin import WindowError, explicit_bounds, interval_edges, window_bounds

NY = ZoneInfo("America/New_York")


def test_a_day_is_local_midnight_to_midnight_23_hours_on_spring_forward() -> None:
    start, end = explicit_bounds("2026-03-08T00:00:00-05:00", "2026-03-10T00:00:00-04:00")
    edges = interval_edges(start, end, "1d", NY)
    assert [(b - a).total_seconds() / 3600 for a, b in pairwise(edges)] == [
        23,
        24,
    ]


def test_a_day_is_25_hours_on_fall_back() -> None:
    start, end = explicit_bounds("2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00")
    edges = interval_edges(start, end, "1d", NY)
    assert len(edges) == 2 and (edges[1] - edges[0]).total_seconds() == 25 * 3600


def test_hours_across_fall_back_are_all_one_hour_and_local_aligned() -> None:
    start, end = explicit_bounds("2026-11-01T00:00:00-04:00", "2026-11-01T04:00:00-05:00")
    edges = interval_edges(start, end, "1h", NY)
    assert len(edges) == 6  # 00, 01 EDT, 01 EST, 02, 03, 04
    assert all((b - a).total_seconds() == 3600 for a, b in pairwise(edges))


def test_quarter_hours_in_a_half_hour_offset_zone_align_to_local_clock() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    start, end = explicit_bounds("2026-11-20T09:07:00+05:30", "2026-11-20T10:00:00+05:30")
    edges = interval_edges(start, end, "15m", kolkata)
    assert [e.astimezone(kolkata).strftime("%H:%M") for e in edges] == [
        "09:07",
        "09:15",
        "09:30",
        "09:45",
        "10:00",
    ]


def test_rolling_window_ends_with_the_current_minute() -> None:
    now = datetime(2026, 11, 20, 9, 30, 41, tzinfo=UTC)
    start, end = window_bounds("15m", now, NY)
    assert (start.minute, end.minute) == (16, 31)
    today, _ = window_bounds("today", now, NY)
    assert today.astimezone(NY).hour == 0


@pytest.mark.parametrize(("a", "b"), [("2026-11-20T09:00:00", "2026-11-20T10:00:00Z"), ("x", "y")])
def test_bad_bounds_raise_with_the_parameter_named(a: str, b: str) -> None:
    with pytest.raises(WindowError, match="from"):
        explicit_bounds(a, b)


def test_weeks_start_at_local_monday_midnight_and_are_168_hours_but_across_dst() -> None:
    # Thursday 2026-10-22 to Thursday 2026-11-12: New York falls back on Sunday 1 Nov
    start, end = explicit_bounds("2026-10-22T00:00:00-04:00", "2026-11-12T00:00:00-05:00")
    edges = interval_edges(start, end, "1w", NY)
    local = [e.astimezone(NY) for e in edges]
    assert [d.strftime("%a %d %H:%M") for d in local] == [
        "Thu 22 00:00", "Mon 26 00:00", "Mon 02 00:00", "Mon 09 00:00", "Thu 12 00:00",
    ]  # fmt: skip
    assert (edges[2] - edges[1]).total_seconds() == 169 * 3600  # the week holding fall-back


def test_months_start_on_the_first_and_cross_the_year() -> None:
    start, end = explicit_bounds("2026-11-15T00:00:00-05:00", "2027-02-10T00:00:00-05:00")
    edges = interval_edges(start, end, "1mo", NY)
    assert [e.astimezone(NY).strftime("%Y-%m-%d") for e in edges] == [
        "2026-11-15", "2026-12-01", "2027-01-01", "2027-02-01", "2027-02-10",
    ]  # fmt: skip


def test_an_unknown_granularity_names_every_one_accepted() -> None:
    start, end = explicit_bounds("2026-11-15T00:00:00Z", "2026-11-16T00:00:00Z")
    with pytest.raises(WindowError, match="15m, 30m, 1h, 1d, 1w, 1mo, got '2h'"):
        interval_edges(start, end, "2h", NY)

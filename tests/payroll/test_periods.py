"""The pay-period calendar: ids, local-midnight bounds, and bad ids named."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.payroll.periods import (
    PeriodError,
    PeriodSettings,
    containing,
    latest_closable,
    parse,
    recent,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")


def test_monthly_period_runs_from_local_midnight_to_local_midnight() -> None:
    p = parse("2026-10", PeriodSettings(), SHANGHAI)
    assert p.start == datetime(2026, 9, 30, 16, tzinfo=UTC)
    assert p.end == datetime(2026, 10, 31, 16, tzinfo=UTC)


def test_a_month_with_a_daylight_saving_change_is_cut_on_the_wall_clock() -> None:
    p = parse("2026-10", PeriodSettings(), BERLIN)  # summer time ends on 25 October
    assert p.start == datetime(2026, 9, 30, 22, tzinfo=UTC)  # +02:00
    assert p.end == datetime(2026, 10, 31, 23, tzinfo=UTC)  # +01:00


def test_semi_monthly_and_weekly_ids() -> None:
    semi = PeriodSettings(calendar="semi_monthly")
    assert (
        parse("2026-02-2", semi, SHANGHAI).first.day,
        parse("2026-02-2", semi, SHANGHAI).last.day,
    ) == (16, 28)
    weekly = PeriodSettings(calendar="weekly")
    w = parse("2026-W43", weekly, SHANGHAI)
    assert (str(w.first), str(w.last)) == ("2026-10-19", "2026-10-25")
    assert containing(datetime(2026, 10, 25, 15, 59, tzinfo=UTC), weekly, SHANGHAI) == w


def test_recent_lists_the_current_period_and_those_before_it() -> None:
    ids = [p.id for p in recent(datetime(2026, 1, 10, tzinfo=UTC), PeriodSettings(), SHANGHAI, 3)]
    assert ids == ["2026-01", "2025-12", "2025-11"]


@pytest.mark.parametrize(
    ("pid", "calendar", "message"),
    [
        ("2026-13", "monthly", "not a monthly period id (like 2026-10)"),
        ("October", "monthly", "not a monthly period id"),
        ("2026-10", "weekly", "not a weekly period id (like 2026-W43)"),
        ("2026-W54", "weekly", "not a weekly period id"),
    ],
)
def test_bad_period_ids_say_what_was_expected(pid: str, calendar: str, message: str) -> None:
    with pytest.raises(PeriodError, match=re.escape(message)):
        parse(pid, PeriodSettings(calendar=calendar), SHANGHAI)


def test_explicit_ranges_must_not_overlap() -> None:
    with pytest.raises(ValidationError, match="overlap"):
        PeriodSettings.model_validate({"calendar": "explicit", "ranges": [
            {"id": "a", "from": "2026-10-01", "to": "2026-10-20"},
            {"id": "b", "from": "2026-10-20", "to": "2026-10-31"}]})  # fmt: skip


def closable_id(
    now: datetime, cfg: PeriodSettings, tz: ZoneInfo, fcr_hours: int, grace_hours: int
) -> str | None:
    period = latest_closable(now, cfg, tz, fcr_hours, grace_hours)
    return None if period is None else period.id


@pytest.mark.parametrize(
    ("local_now", "expected"),
    [
        # 00:30 on the 1st: October's last calls' FCR windows (72 h + 6 h grace)
        # ended long ago, November's end on the 4th at 06:00
        ((2026, 12, 1, 0, 30), "2026-10"),
        ((2026, 12, 4, 5, 59), "2026-10"),
        ((2026, 12, 4, 6, 0), "2026-11"),
        ((2026, 12, 31, 23, 59), "2026-11"),
    ],
)
def test_latest_closable_is_the_newest_period_whose_fcr_windows_and_grace_have_ended(
    local_now: tuple[int, int, int, int, int], expected: str
) -> None:
    now = datetime(*local_now, tzinfo=SHANGHAI)
    assert closable_id(now, PeriodSettings(), SHANGHAI, 72, 6) == expected


def test_latest_closable_counts_the_grace_on_the_wall_clock_across_a_daylight_saving_change() -> (
    None
):
    # Berlin's summer time ends on 25 October 2026: October ends at local midnight
    # in winter time (31 Oct 23:00 UTC), and its close is 72 real hours later
    monthly = PeriodSettings()
    assert closable_id(datetime(2026, 11, 3, 23, tzinfo=UTC), monthly, BERLIN, 72, 0) == "2026-10"
    assert (
        closable_id(datetime(2026, 11, 3, 22, 59, tzinfo=UTC), monthly, BERLIN, 72, 0) == "2026-09"
    )
    weekly = PeriodSettings(calendar="weekly")
    # W43 (19-25 Oct) ends at Monday 26 Oct 00:00 CET = 25 Oct 23:00 UTC
    assert closable_id(datetime(2026, 10, 28, 23, tzinfo=UTC), weekly, BERLIN, 72, 0) == "2026-W43"


def test_latest_closable_is_none_before_any_explicit_period_can_close() -> None:
    cfg = PeriodSettings.model_validate(
        {"calendar": "explicit", "ranges": [{"id": "a", "from": "2026-10-01", "to": "2026-10-31"}]}
    )
    assert latest_closable(datetime(2026, 11, 2, tzinfo=UTC), cfg, SHANGHAI, 72, 6) is None
    assert closable_id(datetime(2026, 11, 4, tzinfo=UTC), cfg, SHANGHAI, 72, 6) == "a"

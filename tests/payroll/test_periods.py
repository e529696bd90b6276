"""The pay-period calendar: ids, local-midnight bounds, and bad ids named."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.payroll.periods import PeriodError, PeriodSettings, containing, parse, recent

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
        parse(pid, PeriodSettings(calendar=calendar), SHANGHAI)  # type: ignore[arg-type]


def test_explicit_ranges_must_not_overlap() -> None:
    with pytest.raises(ValidationError, match="overlap"):
        PeriodSettings.model_validate({"calendar": "explicit", "ranges": [
            {"id": "a", "from": "2026-10-01", "to": "2026-10-20"},
            {"id": "b", "from": "2026-10-20", "to": "2026-10-31"}]})  # fmt: skip

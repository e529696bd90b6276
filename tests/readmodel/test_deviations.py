"""Reading deviations (services/readmodel/deviations.py): the baseline's spans."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.readmodel.deviations import baseline_spans

BERLIN = ZoneInfo("Europe/Berlin")  # summer time from 2026-03-29


def test_the_baseline_keeps_the_wall_clock_hours_across_a_daylight_saving_change() -> None:
    start = datetime(2026, 4, 6, 10, tzinfo=BERLIN)  # a Monday, summer time
    end = datetime(2026, 4, 6, 11, tzinfo=BERLIN)
    spans = baseline_spans(start.astimezone(UTC), end.astimezone(UTC), 2, BERLIN)
    local = [(b.astimezone(BERLIN), e.astimezone(BERLIN)) for b, e in spans]
    assert [(b.date(), b.hour, e.hour) for b, e in local] == [
        (date(2026, 3, 30), 10, 11),  # after the change
        (date(2026, 3, 23), 10, 11),  # before it: one hour later in UTC than a plain 14 days
    ]
    assert spans[1][0] == datetime(2026, 3, 23, 9, tzinfo=UTC)


def test_a_month_long_period_takes_the_whole_weeks_before_it_day_by_day_not_overlapping_it() -> (
    None
):
    start = datetime(2026, 4, 1, tzinfo=BERLIN)  # a Wednesday, the pay month April
    end = datetime(2026, 5, 1, tzinfo=BERLIN)
    spans = baseline_spans(start.astimezone(UTC), end.astimezone(UTC), 4, BERLIN)
    assert len(spans) == 28
    assert spans[0][1] == start and spans[-1][0] == datetime(2026, 3, 4, tzinfo=BERLIN)
    oldest_first = spans[::-1]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(oldest_first))
    local = [(b.astimezone(BERLIN), e.astimezone(BERLIN)) for b, e in spans]
    assert all(b.hour == 0 and e.hour == 0 for b, e in local)  # local days, even across 29 March
    assert [e - b for b, e in spans].count(timedelta(hours=23)) == 1  # the spring-forward day

"""Agent state time: split across minute buckets, days and daylight-saving changes
by wall time, whatever order the state changes arrive in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from services.core.agents import StateEvent, add_change, merge_states, trim
from services.core.calls import Counters, DeltaKey, prune
from services.core.timewin import interval_edges

MIN = 60_000_000
CAP = 48 * 60 * MIN  # longer than any state below but the capped one


def us(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def st(eid: str, t: datetime, state: str, reason: str | None = None) -> StateEvent:
    return [eid, us(t), state, reason]


def apply(*batches: list[StateEvent]) -> tuple[dict[DeltaKey, Counters], dict[Any, int]]:
    timeline: list[StateEvent] = []
    deltas: dict[DeltaKey, Counters] = {}
    reasons: dict[Any, int] = {}
    for batch in batches:
        change = merge_states(timeline, batch, CAP)
        if change is None:
            continue
        add_change(deltas, reasons, change, "a1")
        timeline = change.timeline
    return deltas, reasons


def per_interval(deltas: dict[DeltaKey, Counters], edges: list[datetime], field: str) -> list[int]:
    out = [0] * (len(edges) - 1)
    for (kind, _i, bucket), c in deltas.items():
        if kind != "agent":
            continue
        for i in range(len(out)):
            if us(edges[i]) <= bucket < us(edges[i + 1]):
                out[i] += c.get(field, 0)
    return out


def test_a_state_held_from_0950_to_1010_puts_ten_minutes_in_each_hour() -> None:
    d = datetime(2026, 11, 20, 9, 50, 30, tzinfo=UTC)
    deltas, _ = apply([st("1", d, "available"), st("2", d + timedelta(minutes=20), "on_call")])
    edges = [datetime(2026, 11, 20, h, tzinfo=UTC) for h in (9, 10, 11)]
    assert per_interval(deltas, edges, "available_us") == [int(9.5 * MIN), int(10.5 * MIN)]
    assert per_interval(deltas, edges, "logged_in_us") == [int(9.5 * MIN), int(10.5 * MIN)]
    # the first and last minute buckets hold only their share
    first = deltas[("agent", "a1", us(d.replace(second=0)))]
    assert first == {"logged_in_us": 30_000_000, "available_us": 30_000_000}


def test_a_late_event_splits_the_segment_it_falls_in_and_nothing_else() -> None:
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    evs = [
        st("1", t0, "available"),
        st("2", t0 + timedelta(minutes=10), "on_call"),
        st("3", t0 + timedelta(minutes=14), "wrap_up"),
        st("4", t0 + timedelta(minutes=15), "not_ready", "lunch"),
        st("5", t0 + timedelta(minutes=45), "logged_out"),
    ]
    in_order, reasons_a = apply(evs)
    late, reasons_b = apply([evs[0], evs[2], evs[4]], [evs[3], evs[1]], evs)  # out of order, twice

    def total(d: dict[DeltaKey, Counters], f: str) -> int:
        return sum(c.get(f, 0) for (k, _i, _b), c in d.items() if k == "agent")

    for f, minutes in (("available_us", 10), ("on_call_us", 4), ("wrap_up_us", 1),
                       ("not_ready_us", 30), ("logged_in_us", 45)):  # fmt: skip
        assert total(in_order, f) == minutes * MIN, f
        assert total(late, f) == minutes * MIN, f
    assert sum(v for (k, *_r), v in reasons_b.items() if k == "agent") == 30 * MIN
    assert {r for (_k, _i, _b, r) in reasons_a} == {"lunch"}


def test_a_state_across_local_midnight_is_split_between_the_two_days() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    start = datetime(2026, 11, 20, 23, 30, tzinfo=tz)
    deltas, _ = apply(
        [st("1", start, "available"), st("2", start + timedelta(hours=1), "logged_out")]
    )
    edges = interval_edges(
        datetime(2026, 11, 20, tzinfo=tz), datetime(2026, 11, 22, tzinfo=tz), "1d", tz
    )
    assert per_interval(deltas, edges, "logged_in_us") == [30 * MIN, 30 * MIN]


def test_daylight_saving_days_hold_23_and_25_hours_of_a_state_held_all_day() -> None:
    tz = ZoneInfo("America/New_York")
    for day, hours in (
        (datetime(2026, 3, 8, tzinfo=tz), 23),
        (datetime(2026, 11, 1, tzinfo=tz), 25),
    ):
        nxt = datetime(day.year, day.month, day.day + 1, tzinfo=tz)
        deltas, _ = apply(
            [
                st("1", day - timedelta(hours=1), "not_ready", "sick"),
                st("2", nxt + timedelta(hours=1), "logged_out"),
            ]
        )
        edges = interval_edges(day, nxt, "1d", tz)
        assert per_interval(deltas, edges, "not_ready_us") == [hours * 60 * MIN]
        # the hour intervals of that day: 23 or 25 of them, each a full hour
        hourly = interval_edges(day, nxt, "1h", tz)
        assert per_interval(deltas, hourly, "not_ready_us") == [60 * MIN] * hours


def test_logged_out_time_is_not_logged_in_time_and_the_open_state_is_not_stored() -> None:
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    deltas, _ = apply([st("1", t0, "logged_out"), st("2", t0 + timedelta(hours=1), "available")])
    assert deltas == {}  # an hour logged out, then an open state: nothing closed yet


def test_the_same_event_delivered_again_changes_nothing() -> None:
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    evs = [st("1", t0, "available"), st("2", t0 + timedelta(minutes=3), "on_call")]
    first = merge_states([], evs, CAP)
    assert first is not None
    assert merge_states(first.timeline, evs, CAP) is None


def test_conflicting_copies_of_one_state_event_count_once_whatever_the_order() -> None:
    # "2" is sent twice with different times and states (a buggy source): whichever
    # copy arrives first, and whether the copies share a batch or not, the copy
    # whose serialisation sorts first is the one counted, once.
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    base = [st("1", t0, "available"), st("3", t0 + timedelta(minutes=30), "logged_out")]
    early = st("2", t0 + timedelta(minutes=5), "on_call")
    late = st("2", t0 + timedelta(minutes=20), "wrap_up")
    winner = min(early, late, key=lambda e: orjson.dumps(e))

    def counted(*batches: list[StateEvent]) -> Any:
        # a copy replaced later leaves zeros behind (added, then taken away)
        deltas, reasons = apply(*batches)
        return prune(deltas), {k: v for k, v in reasons.items() if v}

    expected = counted([*base, winner])
    assert expected[0][("agent", "a1", us(t0 + timedelta(minutes=5)))]["on_call_us"] == MIN
    orders = [
        [base, [early], [late]],
        [base, [late], [early]],
        [[late], base, [early]],
        [[early, late], base],
        [[late, early, *base]],
        [base, [late], [late, early]],
    ]
    for batches in orders:
        assert counted(*batches) == expected, batches


def test_trimming_keeps_the_state_in_force_at_the_horizon() -> None:
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    tl = [st(str(i), t0 + timedelta(hours=i), "available") for i in range(5)]
    kept = trim(tl, us(t0 + timedelta(hours=2, minutes=30)))
    assert [e[0] for e in kept] == ["2", "3", "4"]


def test_a_state_longer_than_the_cap_counts_only_up_to_the_cap() -> None:
    # a logout that never came: available at 08:00 Monday, next event Wednesday
    t0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    cap = 12 * 60 * MIN
    timeline: list[StateEvent] = []
    deltas: dict[DeltaKey, Counters] = {}
    reasons: dict[Any, int] = {}
    for batch in ([st("1", t0, "available")], [st("2", t0 + timedelta(days=2), "on_call")]):
        change = merge_states(timeline, batch, cap)
        assert change is not None
        add_change(deltas, reasons, change, "a1")
        timeline = change.timeline
    agent = [(b, c) for (k, _i, b), c in deltas.items() if k == "agent"]
    assert sum(c["logged_in_us"] for _b, c in agent) == cap
    assert max(b for b, _c in agent) == us(t0) + cap - MIN

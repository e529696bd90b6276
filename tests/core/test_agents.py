"""Agent state timelines: the segments they count, whatever order the state changes
arrive in. Splitting segments across minutes, days and daylight-saving changes is
done by Postgres, and tested there (tests/api/test_queries.py)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson

from services.core.agents import SegmentRow, StateEvent, merge_states, signed_segments, trim

MIN = 60_000_000
CAP = 48 * 60 * MIN  # longer than any state below but the capped one


def us(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def st(eid: str, t: datetime, state: str, reason: str | None = None) -> StateEvent:
    return [eid, us(t), state, reason]


def apply(*batches: list[StateEvent], cap: int = CAP) -> list[SegmentRow]:
    timeline: list[StateEvent] = []
    rows: list[SegmentRow] = []
    for batch in batches:
        change = merge_states(timeline, batch, cap)
        if change is None:
            continue
        rows += signed_segments(change, "a1")
        timeline = change.timeline
    return rows


def net(rows: list[SegmentRow]) -> dict[tuple[int, int, str, str | None], int]:
    """The segments that count, with their multiplicity (an added segment removed
    later counts zero times)."""
    c: Counter[tuple[int, int, str, str | None]] = Counter()
    for _a, start, end, state, reason, sign in rows:
        c[(start, end, state, reason)] += sign
    return {k: v for k, v in c.items() if v}


def time_in(rows: list[SegmentRow], state: str | None = None) -> int:
    return sum(sign * (e - s) for _a, s, e, st_, _r, sign in rows if state in (None, st_))


def test_a_late_event_splits_the_segment_it_falls_in_and_nothing_else() -> None:
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    evs = [
        st("1", t0, "available"),
        st("2", t0 + timedelta(minutes=10), "on_call"),
        st("3", t0 + timedelta(minutes=14), "wrap_up"),
        st("4", t0 + timedelta(minutes=15), "not_ready", "lunch"),
        st("5", t0 + timedelta(minutes=45), "logged_out"),
    ]
    in_order = apply(evs)
    late = apply([evs[0], evs[2], evs[4]], [evs[3], evs[1]], evs)  # out of order, twice
    assert net(late) == net(in_order)
    for state, minutes in (("available", 10), ("on_call", 4), ("wrap_up", 1),
                           ("not_ready", 30), (None, 45)):  # fmt: skip
        assert time_in(in_order, state) == minutes * MIN, state
        assert time_in(late, state) == minutes * MIN, state
    assert {r for _a, _s, _e, _st, r, _n in in_order} == {None, "lunch"}


def test_a_not_ready_state_without_a_reason_is_stored_as_unspecified() -> None:
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    rows = apply([st("1", t0, "not_ready"), st("2", t0 + timedelta(minutes=5), "available")])
    assert rows == [("a1", us(t0), us(t0) + 5 * MIN, "not_ready", "unspecified", 1)]


def test_logged_out_time_is_not_logged_in_time_and_the_open_state_is_not_stored() -> None:
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    rows = apply([st("1", t0, "logged_out"), st("2", t0 + timedelta(hours=1), "available")])
    assert rows == []  # an hour logged out, then an open state: nothing closed yet


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

    def counted(*batches: list[StateEvent]) -> dict[tuple[int, int, str, str | None], int]:
        # a copy replaced later is added, then taken away: it nets to nothing
        return net(apply(*batches))

    expected = counted([*base, winner])
    assert expected[(us(t0), us(t0) + 5 * MIN, "available", None)] == 1
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
    rows = apply([st("1", t0, "available")], [st("2", t0 + timedelta(days=2), "on_call")], cap=cap)
    assert rows == [("a1", us(t0), us(t0) + cap, "available", None, 1)]

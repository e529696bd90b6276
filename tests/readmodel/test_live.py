"""The open part of an agent's state (services/readmodel/live.py), without a
database: it counts in any range exactly as the closed state will once the
agent's next event arrives, so a figure does not jump when the state closes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.core.agents import compact_state, merge_states
from services.core.kpi import zero_counters
from services.core.timewin import epoch_us
from services.readmodel.live import Live

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CAP = timedelta(hours=12)


def live(now: datetime, since: datetime, state: str = "on_call") -> Live:
    return Live(now=now, agents=[("a1", state, None, epoch_us(since))], waiting=[],
                team_of_agent={}, team_of_queue={}, tz=ZoneInfo("UTC"),
                cap_us=int(CAP.total_seconds() * 1_000_000))  # fmt: skip


def open_seconds(view: Live, start: datetime, end: datetime) -> float:
    counters = zero_counters()
    view.add_open_time("agent", "a1", counters, {}, start, end)
    return counters["on_call_us"] / 1_000_000


def closed_seconds(since: datetime, closed_at: datetime, start: datetime, end: datetime) -> float:
    """The same state once the next event (at closed_at) closes it: its segment
    as the worker stores it, cut to [start, end)."""
    events = [
        compact_state({"event_id": "s1", "ts": epoch_us(since), "agent_id": "a1", "state": "on_call"}),
        compact_state({"event_id": "s2", "ts": epoch_us(closed_at), "agent_id": "a1",
                       "state": "available"}),
    ]  # fmt: skip
    change = merge_states([], events, int(CAP.total_seconds() * 1_000_000))
    assert change is not None
    lo, hi = epoch_us(start), epoch_us(end)
    return (
        sum(
            max(0, min(e, hi) - max(s, lo))
            for _id, s, e, state, _r in change.added
            if state == "on_call"
        )
        / 1_000_000
    )


@pytest.mark.parametrize(
    ("since", "now", "start", "end", "want"),
    [
        # a range in the past that the open state overlaps: the overlap
        (T0, T0 + timedelta(minutes=30), T0, T0 + timedelta(minutes=10), 600.0),
        # a range that ended before the state began: nothing
        (T0, T0 + timedelta(minutes=30), T0 - timedelta(hours=1), T0, 0.0),
        # a live range: up to now
        (T0, T0 + timedelta(minutes=30), T0, T0 + timedelta(hours=1), 1800.0),
        # an open state older than max_state_hours: at most the cap, as closed
        (T0, T0 + timedelta(hours=20), T0, T0 + timedelta(days=1), 12 * 3600.0),
    ],
)
def test_an_open_state_counts_in_a_range_as_it_will_once_closed(
    since: datetime, now: datetime, start: datetime, end: datetime, want: float
) -> None:
    assert open_seconds(live(now, since), start, end) == want
    assert closed_seconds(since, now, start, end) == want

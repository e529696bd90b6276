"""Agent tracking at the retention horizon: what cannot be placed is refused, not
miscounted."""

from __future__ import annotations

from services.core.agents import SegmentRow, StateEvent, trim
from services.core.settings import Settings
from services.kpi_stream.core import track_agents

DAY = 86_400 * 1_000_000
SETTINGS = Settings(call_state_retention_days=1, hash_key="test")


def time_in(segments: list[SegmentRow], *states: str) -> int:
    """The net time the signed segments add in `states`."""
    return sum(sign * (end - start) for _a, start, end, st, _r, sign in segments if st in states)


def test_a_state_event_older_than_retention_is_refused_and_counts_nothing() -> None:
    # three days of alternating states, trimmed to one day as track_agents does
    timeline: list[StateEvent] = [
        [f"e{h}", h * 3_600_000_000, "available" if h % 2 else "on_call", None] for h in range(72)
    ]
    kept = trim(timeline, timeline[-1][1] - DAY)
    late: StateEvent = ["late", 10 * 3_600_000_000 + 60_000_000, "not_ready", "lunch"]
    result = track_agents({"a1": [late]}, {"a1": kept}, SETTINGS)
    assert result.too_old == 1
    assert result.changed == {} and result.segments == []


def test_a_late_state_event_inside_retention_moves_time_between_states() -> None:
    timeline: list[StateEvent] = [
        [f"e{h}", h * 3_600_000_000, "available", None] for h in range(30)
    ]
    kept = trim(timeline, timeline[-1][1] - DAY)
    late: StateEvent = ["late", 20 * 3_600_000_000 + 30 * 60_000_000, "not_ready", "lunch"]
    result = track_agents({"a1": [late]}, {"a1": kept}, SETTINGS)
    assert result.too_old == 0
    # half an hour moves from available to not_ready; logged-in time is unchanged
    assert time_in(result.segments, "available", "not_ready") == 0
    assert time_in(result.segments, "not_ready") == 30 * 60_000_000

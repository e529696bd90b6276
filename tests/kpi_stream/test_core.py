"""Agent tracking at the retention horizon: what cannot be placed is refused, not
miscounted."""

from __future__ import annotations

from typing import Any

from services.core.agents import SegmentRow, StateEvent, trim
from services.core.settings import Settings
from services.kpi_stream.core import FcrRow, apply_facts, track_agents

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


def test_a_batch_holding_weeks_of_one_agent_counts_them_all() -> None:
    """A history imported faster than the worker reads it: one batch spans three
    retention periods of an agent that has no stored timeline yet."""
    events: list[StateEvent] = []
    for d in range(3):
        events.append([f"in{d}", d * DAY + 3_600_000_000, "available", None])
        events.append([f"out{d}", d * DAY + 4 * 3_600_000_000, "logged_out", None])
    result = track_agents({"a1": events}, {"a1": None}, SETTINGS)
    assert result.too_old == 0
    assert time_in(result.segments, "available") == 3 * 3 * 3_600_000_000
    # kept back to one retention period before the newest, as before
    assert result.changed["a1"][0][1] >= events[-1][1] - DAY - 4 * 3_600_000_000


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


MIN = 60_000_000
HOUR = 60 * MIN


def fact(call_id: str, offered_min: int, n: int = 3) -> dict[str, Any]:
    return {"call_id": call_id, "customer": "c", "offered_at": offered_min * MIN, "queue": "q",
            "team": "t", "answered": True, "short_abandoned": False, "unresolved": False,
            "last_agent": "a", "n": n}  # fmt: skip


def test_a_call_loaded_at_the_edge_of_a_window_keeps_the_outcome_its_unloaded_repeat_gave_it() -> (
    None
):
    # calls at 0, 50 and 100 minutes, window 1 h: B (50) is repeated by C (100)
    rows = {f["call_id"]: FcrRow(f) for f in (fact("A", 0), fact("B", 50), fact("C", 100))}
    full = apply_facts((), {"c": rows}, 10 * HOUR, HOUR, touched=["c"])
    stored = {cid: row for cid, row in full.changed.items()}
    assert stored["B"].contrib.entities[("center", "all")].get("fcr_failed") == 1  # type: ignore[union-attr]
    # a new copy of A's fact arrives: only calls within an hour of A are loaded
    # (A and B, not C); B's outcome depends on C, which was not loaded
    partial = {"c": {k: stored[k] for k in ("A", "B")}}
    out = apply_facts([fact("A", 0, n=4)], partial, 10 * HOUR, HOUR, spans={"c": (0, 0)})
    assert "B" not in out.changed and out.deltas == {}
    # without the span, B would have been recomputed without C, as resolved
    wrong = apply_facts([fact("A", 0, n=4)], partial, 10 * HOUR, HOUR)
    assert "B" in wrong.changed

"""Agent time: from an agent's `agent.state` events to seconds per state.

An agent's states form a timeline: each event starts a *segment* that lasts until
the agent's next event (by time, then event id) but at most `max_state_hours`
(after that the agent counts as logged out), and the last one stays open. A
closed segment is stored as it is (agent_segments), and a read sums its overlap
with the asked range, by wall time: a state held 09:50–10:10 puts ten minutes in
each hour. Team and center time is split into minute buckets when written
(services/kpi_stream/processor.py). The open segment is added at read time up to
"now" (services/readmodel/live.py), never stored.

Like call assembly, the figures are a function of the *set* of events, not of
their arrival order: a late event splits the segment it falls in, and the delta
is the difference between the segments before and after, over the stretch of the
timeline the change touches. Times are integer microseconds.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import orjson

# A compact stored state change: [event_id, ts_us, state, reason | None]
StateEvent = list[Any]
# (start event id, start, end, state, reason): identifies a closed segment
Segment = tuple[str, int, int, str, str | None]

NO_REASON = "unspecified"


def compact_state(event: Mapping[str, Any]) -> StateEvent:
    return [event["event_id"], int(event["ts"]), event["state"], event.get("reason") or None]


# (time, id): the timeline's order, a total order on a deduplicated set
timeline_key = itemgetter(1, 0)
_ts = itemgetter(1)


def _segments(timeline: list[StateEvent], lo: int, hi: int, cap_us: int) -> set[Segment]:
    """Closed segments starting at indices lo..hi-1, none longer than cap_us."""
    out: set[Segment] = set()
    for i in range(max(lo, 0), min(hi, len(timeline) - 1)):
        eid, start, state, reason = timeline[i]
        out.add((eid, start, min(timeline[i + 1][1], start + cap_us), state, reason))
    return out


@dataclass(slots=True)
class TimelineChange:
    timeline: list[StateEvent]
    removed: set[Segment] = field(default_factory=set)
    added: set[Segment] = field(default_factory=set)
    # the events now stored that were not (new ones, and the copies that replace a
    # conflicting one of the same id), sorted; and the earliest time the change
    # touched (of those and of the copies they replace)
    written: list[StateEvent] = field(default_factory=list)
    earliest_us: int = 0


def _stored_copy(timeline: list[StateEvent], ev: StateEvent) -> StateEvent:
    """The timeline's event with ev's id: found by ev's own key when it is the same
    event again (a replay), else by a scan (a conflicting copy, rare)."""
    i = bisect_left(timeline, timeline_key(ev), key=timeline_key)
    if i < len(timeline) and timeline[i][0] == ev[0]:
        return timeline[i]
    return next(e for e in timeline if e[0] == ev[0])


def merge_states(
    timeline: list[StateEvent], new: Iterable[StateEvent], cap_us: int
) -> TimelineChange | None:
    """Merge state events into a sorted timeline. None when nothing changed.

    As with call events, a repeated id with different content keeps the copy
    whose serialisation sorts first, so the result never depends on arrival order.
    """
    ids = {ev[0] for ev in timeline}
    added: dict[str, StateEvent] = {}
    replaced: list[StateEvent] = []
    for ev in new:
        eid = ev[0]
        old = added.get(eid)
        if old is None and eid in ids:
            old = _stored_copy(timeline, ev)
        if old == ev:
            continue
        if old is not None:
            if orjson.dumps(ev) >= orjson.dumps(old):
                continue
            if eid not in added:
                replaced.append(old)
        added[eid] = ev
    if not added:
        return None
    fresh = sorted(added.values(), key=timeline_key)
    if not replaced and (not timeline or timeline_key(fresh[0]) > timeline_key(timeline[-1])):
        # the common case, events in order: appended without re-sorting the timeline
        merged = timeline + fresh
    else:
        gone = {ev[0] for ev in replaced}
        merged = sorted([ev for ev in timeline if ev[0] not in gone] + fresh, key=timeline_key)
    changed_keys = [timeline_key(ev) for ev in replaced] + [
        timeline_key(fresh[0]),
        timeline_key(fresh[-1]),
    ]
    lo_key, hi_key = min(changed_keys), max(changed_keys)
    # Segments outside [predecessor of lo_key, hi_key] have the same start event and
    # the same next event before and after the merge; only the stretch between can
    # differ, and the set difference cancels whatever did not.
    before = _segments(
        timeline,
        bisect_left(timeline, lo_key, key=timeline_key) - 1,
        bisect_right(timeline, hi_key, key=timeline_key) + 1,
        cap_us,
    )
    after = _segments(
        merged,
        bisect_left(merged, lo_key, key=timeline_key) - 1,
        bisect_right(merged, hi_key, key=timeline_key) + 1,
        cap_us,
    )
    earliest = min([fresh[0][1], *(ev[1] for ev in replaced)])
    return TimelineChange(merged, before - after, after - before, fresh, earliest)


def trim(timeline: list[StateEvent], horizon_us: int) -> list[StateEvent]:
    """Drop events before `horizon_us` but the last of them (it starts the segment
    in force at the horizon). Their segments were counted already; a state event
    before the horizon is refused by track_agents (docs/metrics.md)."""
    i = bisect_left(timeline, horizon_us, key=_ts)
    return timeline[i - 1 :] if i > 1 else timeline


# Segments are stored cut at whole hours, so every row that overlaps [s, e) starts
# after s minus this, whatever the longest state (max_state_hours): reads bound
# their index scans with it. An hour keeps most segments whole (a few minutes each).
SEGMENT_PIECE_US = 3_600_000_000

# A row of agent_segments: (agent, start_us, end_us, state, reason, sign).
SegmentRow = tuple[str, int, int, str, str | None, int]


def signed_segments(change: TimelineChange, agent: str) -> list[SegmentRow]:
    """A timeline change as rows of agent_segments: each removed segment with sign
    -1, each added one with +1 (the two sets never share a segment). Logged-out and
    empty segments count no time and are left out; a not-ready segment without a
    reason is stored as NO_REASON, other states without one."""
    rows: list[SegmentRow] = []
    for segments, sign in ((change.removed, -1), (change.added, 1)):
        for _eid, start, end, state, reason in segments:
            if state == "logged_out" or end <= start:
                continue
            why = (reason or NO_REASON) if state == "not_ready" else None
            rows.append((agent, start, end, state, why, sign))
    return rows


def open_overlap(since_us: int, now_us: int, start_us: int, end_us: int, cap_us: int) -> int:
    """Microseconds of an open state (since → now, at most cap_us) inside [start, end)."""
    return max(0, min(now_us, since_us + cap_us, end_us) - max(since_us, start_us))

"""Agent time: from an agent's `agent.state` events to seconds per state.

An agent's states form a timeline: each event starts a *segment* that lasts until
the agent's next event (by time, then event id) but at most `max_state_hours`
(after that the agent counts as logged out), and the last one stays open. A
closed segment adds its length to every minute bucket it overlaps, by wall time
(a state held 09:50–10:10 puts ten minutes in each hour), so any window or
interval sums whole buckets. The open segment is added at read time up to "now"
(services/api/queries.py), never stored.

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

from services.core.calls import MINUTE_US, Counters, DeltaKey, bucket_of
from services.core.kpi import AGENT_STATES

# A compact stored state change: [event_id, ts_us, state, reason | None]
StateEvent = list[Any]
# (start event id, start, end, state, reason): identifies a closed segment
Segment = tuple[str, int, int, str, str | None]
ReasonKey = tuple[str, str, int, str]  # (kind, id, bucket_us, reason)

NO_REASON = "unspecified"


def compact_state(event: Mapping[str, Any]) -> StateEvent:
    return [event["event_id"], int(event["ts"]), event["state"], event.get("reason") or None]


# (time, id): the timeline's order, a total order on a deduplicated set
_key = itemgetter(1, 0)
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


def _stored_copy(timeline: list[StateEvent], ev: StateEvent) -> StateEvent:
    """The timeline's event with ev's id: found by ev's own key when it is the same
    event again (a replay), else by a scan (a conflicting copy, rare)."""
    i = bisect_left(timeline, _key(ev), key=_key)
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
    fresh = sorted(added.values(), key=_key)
    if not replaced and (not timeline or _key(fresh[0]) > _key(timeline[-1])):
        # the common case, events in order: appended without re-sorting the timeline
        merged = timeline + fresh
    else:
        gone = {ev[0] for ev in replaced}
        merged = sorted([ev for ev in timeline if ev[0] not in gone] + fresh, key=_key)
    changed_keys = [_key(ev) for ev in replaced] + [_key(fresh[0]), _key(fresh[-1])]
    lo_key, hi_key = min(changed_keys), max(changed_keys)
    # Segments outside [predecessor of lo_key, hi_key] have the same start event and
    # the same next event before and after the merge; only the stretch between can
    # differ, and the set difference cancels whatever did not.
    before = _segments(
        timeline,
        bisect_left(timeline, lo_key, key=_key) - 1,
        bisect_right(timeline, hi_key, key=_key) + 1,
        cap_us,
    )
    after = _segments(
        merged,
        bisect_left(merged, lo_key, key=_key) - 1,
        bisect_right(merged, hi_key, key=_key) + 1,
        cap_us,
    )
    return TimelineChange(merged, before - after, after - before)


def trim(timeline: list[StateEvent], horizon_us: int) -> list[StateEvent]:
    """Drop events before `horizon_us` but the last of them (it starts the segment
    in force at the horizon). Their segments were counted already; a state event
    before the horizon is refused by track_agents (docs/metrics.md)."""
    i = bisect_left(timeline, horizon_us, key=_ts)
    return timeline[i - 1 :] if i > 1 else timeline


# One agent's time deltas by minute bucket, before they are spread to the agent,
# team and center rows: {bucket_us: {column: us}}, {(bucket_us, reason): us}.
BucketTime = dict[int, Counters]
BucketReasons = dict[tuple[int, str], int]


_COLUMN = {state: f"{state}_us" for state in AGENT_STATES}


def _segment_time(time: BucketTime, reasons: BucketReasons, seg: Segment, sign: int) -> None:
    """Add (sign=1) or remove (sign=-1) a closed segment's time, minute by minute."""
    _eid, start, end, state, reason = seg
    if state == "logged_out" or end <= start:
        return
    column = _COLUMN[state]
    rk_reason = (reason or NO_REASON) if state == "not_ready" else None
    # The hottest loop of agent tracking (a minute of every segment): plain
    # comparisons instead of min/max calls, and a slot created whole.
    b = bucket_of(start)
    while b < end:
        nb = b + MINUTE_US
        overlap = ((nb if nb < end else end) - (b if b > start else start)) * sign
        slot = time.get(b)
        if slot is None:
            time[b] = {"logged_in_us": overlap, column: overlap}
        else:
            slot["logged_in_us"] += overlap
            slot[column] = slot.get(column, 0) + overlap
        if rk_reason is not None:
            rk = (b, rk_reason)
            reasons[rk] = reasons.get(rk, 0) + overlap
        b = nb


def add_change(
    deltas: dict[DeltaKey, Counters],
    reasons: dict[ReasonKey, int],
    change: TimelineChange,
    agent: str,
) -> None:
    """Add a timeline change's time (added segments minus removed ones) to the
    agent's own minute buckets. Team and center sums are added by Postgres, in the
    statement that writes these rows (services/kpi_stream/processor.py): adding
    every agent-minute to two more rows here was a sixth of the worker's CPU."""
    time: BucketTime = {}
    time_reasons: BucketReasons = {}
    for seg in change.removed:
        _segment_time(time, time_reasons, seg, -1)
    for seg in change.added:
        _segment_time(time, time_reasons, seg, 1)
    for b, counters in time.items():
        key = ("agent", agent, b)
        slot = deltas.get(key)
        if slot is None:
            deltas[key] = counters  # fresh per call, used once: no copy
            continue
        for name, us in counters.items():
            slot[name] = slot.get(name, 0) + us
    for (b, reason), us in time_reasons.items():
        rk = ("agent", agent, b, reason)
        reasons[rk] = reasons.get(rk, 0) + us


def open_overlap(since_us: int, now_us: int, start_us: int, end_us: int, cap_us: int) -> int:
    """Microseconds of an open state (since → now, at most cap_us) inside [start, end)."""
    return max(0, min(now_us, since_us + cap_us, end_us) - max(since_us, start_us))

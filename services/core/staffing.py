"""Staffing arithmetic: pure functions over an interval's load, the schedule in
force and agents' state segments. Definitions: docs/metrics.md#staffing and
docs/staffing.md; the queueing models: services/core/erlang.py.

Times are integer microseconds since the epoch; agent counts per interval are
averages over the interval (two agents scheduled for half of it are one agent),
as workforce tools show them.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.core.erlang import Prediction, required_agents
from services.core.schedules import Segment
from services.core.staffing_rules import DAY_OFF, PRODUCTIVE_STATES, Activity, Goal

US = 1_000_000

# A state segment of an agent: (start_us, end_us, state, reason)
StateSpan = tuple[int, int, str, str | None]


def overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def patience_seconds(abandoned: int, wait_all_us: int) -> float | None:
    """Mean patience under exponential patience: Σ waits of every call that queued
    (answered, abandoned or otherwise ended) / abandons, the maximum-likelihood
    estimate from censored waits (Mandelbaum & Zeltyn, "Data-stories about
    (im)patient customers", 2013). None without abandons (Erlang C then), or
    when nobody waited (every abandon at 0 s says nothing of patience)."""
    if abandoned <= 0 or wait_all_us <= 0:
        return None
    return wait_all_us / US / abandoned


@dataclass(frozen=True, slots=True)
class Requirement:
    """The agents an interval's load needs, under each model."""

    erlang_c: Prediction | None
    erlang_a: Prediction | None  # None: no patience measured
    chosen: Prediction | None  # the configured model's (Erlang C without patience)


def requirement(
    offered: int,
    seconds: float,
    aht_s: float | None,
    goal: Goal,
    patience_s: float | None,
    model: str,
    max_occupancy: float | None,
) -> Requirement | None:
    """Required agents for `offered` calls over `seconds` with handle time
    `aht_s`; None when the load is unknown (calls but no handle time)."""
    if offered == 0:
        none = Prediction(0, 1.0, None, 0.0, 0.0, 0.0)
        return Requirement(none, none if patience_s is not None else None, none)
    if aht_s is None or aht_s <= 0 or seconds <= 0:
        return None
    rate = offered / seconds
    c = required_agents(rate, aht_s, goal.seconds, goal.target, None, max_occupancy)
    a = (
        required_agents(rate, aht_s, goal.seconds, goal.target, patience_s, max_occupancy)
        if patience_s is not None
        else None
    )
    return Requirement(c, a, a if model == "erlang_a" and a is not None else c)


def scheduled_agents(
    segments: Iterable[Segment], edges_us: Sequence[int], productive: set[str]
) -> list[float]:
    """Average agents scheduled in a productive activity per interval."""
    totals = [0] * (len(edges_us) - 1)
    for seg in segments:
        if seg.activity not in productive:
            continue
        # only the intervals the segment touches
        first = max(0, bisect_right(edges_us, seg.start_us) - 1)
        for i in range(first, len(totals)):
            if edges_us[i] >= seg.end_us:
                break
            totals[i] += overlap(seg.start_us, seg.end_us, edges_us[i], edges_us[i + 1])
    return [us / (edges_us[i + 1] - edges_us[i]) for i, us in enumerate(totals)]


def schedule_fit(pairs: Iterable[tuple[float | None, float | None]]) -> float | None:
    """排班契合率: 1 − Σ|scheduled − required| / Σ required over the intervals
    whose requirement is known (pairs: (scheduled, required)). 1 is a schedule
    that matches the need in every interval; understaffing and overstaffing cost
    alike, in agent-intervals, against the need; it falls below 0 when the
    schedule misses by more than the whole need. None when nothing is required."""
    miss = need = 0.0
    for scheduled, required in pairs:
        if required is None or scheduled is None:
            continue
        miss += abs(scheduled - required)
        need += required
    return None if need == 0 else 1 - miss / need


def _adheres(activity: Activity | None, state: str, reason: str | None) -> bool:
    if activity is None or state not in activity.states:
        return False
    return state != "not_ready" or not activity.reasons or (reason or "") in activity.reasons


@dataclass(frozen=True, slots=True)
class AgentSchedule:
    """One agent's schedule figures over a span (docs/metrics.md#staffing)."""

    scheduled_seconds: float
    adhered_seconds: float
    worked_seconds: float  # logged in, any state
    scheduled_shifts: int
    attended_shifts: int
    late_shifts: int
    lateness_seconds: float

    def fields(self) -> dict[str, Any]:
        s = self.scheduled_seconds
        return {
            "scheduled_seconds": s,
            "adherence_rate": self.adhered_seconds / s if s else None,
            "conformance_rate": self.worked_seconds / s if s else None,
            "scheduled_shifts": self.scheduled_shifts,
            "attended_shifts": self.attended_shifts,
            "absent_shifts": self.scheduled_shifts - self.attended_shifts,
            "late_shifts": self.late_shifts,
            "lateness_seconds": self.lateness_seconds,
            "attendance_rate": (
                self.attended_shifts / self.scheduled_shifts if self.scheduled_shifts else None
            ),
        }


# The schedule fields of an agent, in the payroll CSV's order (what a scorecard
# may score beside the catalogue's figures).
SCHEDULE_FIELDS: tuple[str, ...] = tuple(AgentSchedule(0, 0, 0, 0, 0, 0, 0).fields())


def agent_schedule(
    segments: Sequence[Segment],
    states: Sequence[StateSpan],
    activities: Mapping[str, Activity],
    start_us: int,
    end_us: int,
    now_us: int,
    grace_us: int,
    early_us: int,
) -> AgentSchedule:
    """Adherence, conformance and attendance of one agent over [start, end).

    - adherence: of the scheduled time in the span, the share in a state the
      activity allows (a `work` row: available, on call or wrap-up);
    - conformance: time logged in within the span / scheduled time in it;
    - attendance: of the shifts (an agent-day's rows, first start to last end)
      starting in the span whose start plus the grace has passed, those with a
      login between `early` before the start and the end; a login later than the
      grace after the start is late, by that much.
    `states`: the agent's state segments (logged-out time left out), open one
    included up to now."""
    # State segments are disjoint, so sorted by start they are sorted by end too:
    # those overlapping [s, e) are the run from the first that ends after s.
    states = sorted(states)
    ends = [st[1] for st in states]

    def touching(s: int, e: int) -> Iterable[StateSpan]:
        for i in range(bisect_right(ends, s), len(states)):
            if states[i][0] >= e:
                break
            yield states[i]

    scheduled = adhered = 0
    shifts: dict[Any, tuple[int, int]] = {}
    for seg in segments:
        if seg.activity == DAY_OFF:
            continue
        first, last = shifts.get(seg.day, (seg.start_us, seg.end_us))
        shifts[seg.day] = (min(first, seg.start_us), max(last, seg.end_us))
        s, e = max(seg.start_us, start_us), min(seg.end_us, end_us)
        if e <= s:
            continue
        scheduled += e - s
        act = activities.get(seg.activity)
        for st0, st1, state, reason in touching(s, e):
            if _adheres(act, state, reason):
                adhered += overlap(s, e, st0, st1)
    worked = sum(overlap(st0, st1, start_us, end_us) for st0, st1, _s, _r in states)
    counted = attended = late = 0
    lateness = 0
    for first, last in shifts.values():
        if not (start_us <= first < end_us) or first + grace_us > now_us:
            continue
        counted += 1
        lo = first - early_us
        login = next(iter(touching(lo, last)), None)
        if login is None:
            continue
        attended += 1
        arrived = max(login[0], lo)
        if arrived > first + grace_us:
            late += 1
            lateness += arrived - first
    return AgentSchedule(scheduled / US, adhered / US, worked / US, counted, attended, late,
                         lateness / US)  # fmt: skip


def productive_us(counters: Mapping[str, int]) -> int:
    """Time available, on call or in wrap-up: an agent at work on the phones."""
    return sum(int(counters.get(f"{s}_us", 0)) for s in PRODUCTIVE_STATES)


def weighted_forecast(
    history: Sequence[tuple[float, float] | None], weights: Sequence[float]
) -> float | None:
    """Σ wₖ·numeratorₖ / Σ wₖ·denominatorₖ over the weeks with data (history[k]:
    (numerator, denominator) k + 1 weeks back, None before the data begins).
    For offered calls the denominator is 1 per week (a weighted mean); for AHT it
    is the week's handled calls (a pooled, weighted mean)."""
    num = den = 0.0
    for k, week in enumerate(history):
        if week is None or k >= len(weights):
            continue
        num += weights[k] * week[0]
        den += weights[k] * week[1]
    return None if den == 0 else num / den


def wape(pairs: Iterable[tuple[float, float | None]]) -> float | None:
    """Σ|actual − forecast| / Σ actual over the intervals with a forecast (pairs:
    (actual, forecast)): the forecast's error in calls, as a share of the calls
    that came. None when no call came."""
    miss = came = 0.0
    for actual, forecast in pairs:
        if forecast is None:
            continue
        miss += abs(actual - forecast)
        came += actual
    return None if came == 0 else miss / came

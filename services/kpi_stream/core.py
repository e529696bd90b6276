"""The worker's batch logic, free of I/O.

Two stages, each idempotent:

1. *Assembly* (events topic, partitioned by call): merge the batch's events into
   each call's stored event set; recompute the call's contribution; the bucket
   delta is new − previously applied. Calls with a customer also yield a
   *customer fact* for stage 2.
2. *FCR* (fcr topic, partitioned by customer): upsert facts into the customer's
   call list, recompute that customer's FCR contributions, apply the delta.

Replaying any input after a crash finds the events already in the stored set (or
the fact already stored), recomputes the same contribution, and applies a zero
delta: nothing counted twice. Storage and caching live in processor.py; the
in-memory driver in tests runs exactly these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.core.agents import (
    SegmentRow,
    StateEvent,
    compact_state,
    merge_states,
    signed_segments,
    timeline_key,
    trim,
)
from services.core.calls import (
    Compact,
    Contribution,
    Counters,
    DeltaKey,
    add_delta,
    assess,
    compact,
    customer_fact,
    fcr_contributions,
    merge_events,
    prune,
)
from services.core.events import CALL_EVENT_TYPES
from services.core.settings import UNASSIGNED_TEAM, Settings


@dataclass(slots=True)
class CallState:
    events: dict[str, Compact]
    contrib: Contribution | None = None
    fact: dict[str, Any] | None = None

    def copy(self) -> CallState:
        return CallState(dict(self.events), self.contrib, self.fact)


@dataclass(slots=True)
class AssemblyResult:
    changed: dict[str, CallState] = field(default_factory=dict)
    deltas: dict[DeltaKey, Counters] = field(default_factory=dict)
    facts: list[dict[str, Any]] = field(default_factory=list)
    max_ts: int | None = None


def group_events(
    events: Iterable[Mapping[str, Any]],
) -> tuple[dict[str, list[Compact]], dict[str, list[StateEvent]]]:
    """(call events by call, state events by agent)."""
    by_call: dict[str, list[Compact]] = {}
    by_agent: dict[str, list[StateEvent]] = {}
    for ev in events:
        typ = ev["type"]
        if typ in CALL_EVENT_TYPES:
            by_call.setdefault(ev["call_id"], []).append(compact(ev))
        elif typ == "agent.state":
            by_agent.setdefault(ev["agent_id"], []).append(compact_state(ev))
    return by_call, by_agent


@dataclass(slots=True)
class AgentResult:
    changed: dict[str, list[StateEvent]] = field(default_factory=dict)
    segments: list[SegmentRow] = field(default_factory=list)
    max_ts: int | None = None
    too_old: int = 0  # state events beyond retention, not counted
    # (agent, event) of every state event to store (agent_state_events), and per
    # changed agent the earliest time its change touched
    written: list[tuple[str, StateEvent]] = field(default_factory=list)
    earliest: dict[str, int] = field(default_factory=dict)


def track_agents(
    by_agent: Mapping[str, list[StateEvent]],
    timelines: Mapping[str, list[StateEvent] | None],
    settings: Settings,
    tail_us: int | None = None,
    keep: Mapping[str, int] | None = None,
) -> AgentResult:
    """Merge state events into the agents' timelines (`timelines` holds every agent
    of `by_agent`, None for one not seen before) and return the segments that
    changed, signed (their teams' and the center's minutes are summed from them
    when written).

    Without `tail_us`, a changed timeline keeps every event back to the retention
    horizon. With it, only its *tail*: the events of the last `tail_us` before its
    newest, and none dropped that this change touched or that `keep` (per agent:
    the earliest time a change not yet stored touched) says is still in flight;
    the rest is stored apart (agent_state_events) and the worker loads it back
    only for an event that falls before the tail (processor.py)."""
    out = AgentResult()
    cap_us = settings.kpi.max_state_us
    for agent, new in by_agent.items():
        known = timelines.get(agent) or []
        latest = max(ev[1] for ev in new)
        if out.max_ts is None or latest > out.max_ts:
            out.max_ts = latest
        # Retention is measured from the agent's own latest event, not the wall
        # clock, so a replay of old data keeps what it needs and the result never
        # depends on when it ran. The stored timeline was trimmed to its own
        # latest event's horizon, so an event before that could not be placed
        # between its true neighbours: it would run up to the oldest kept event and
        # count time already counted. The events of this batch are all here: a
        # batch that holds weeks of one agent (a history imported faster than the
        # worker takes it) places them all, and is trimmed afterwards. (Measured
        # against the batch's own newest event, a month's backfill lost 9-15 of 31
        # shifts of some agents: they looked absent.)
        retention = settings.call_state_retention_us
        stored = known[-1][1] - retention if known else None
        placeable = [ev for ev in new if stored is None or ev[1] >= stored]
        horizon = max(latest, known[-1][1] if known else latest) - retention
        out.too_old += len(new) - len(placeable)
        change = merge_states(known, placeable, cap_us)
        if change is None:
            continue
        out.segments += signed_segments(change, agent)
        out.written += [(agent, ev) for ev in change.written]
        out.earliest[agent] = change.earliest_us
        if tail_us is not None:
            floor = min(change.earliest_us, (keep or {}).get(agent, change.earliest_us))
            horizon = max(horizon, min(change.timeline[-1][1] - tail_us, floor))
        out.changed[agent] = trim(change.timeline, horizon)
    return out


def unknown_ids(
    by_agent: Mapping[str, list[StateEvent]], tails: Mapping[str, list[StateEvent] | None]
) -> list[tuple[str, str]]:
    """(agent, event id) of the new state events whose id their agent's tail does
    not hold, for agents with a stored timeline: each may replace a stored copy
    from before the tail (a conflicting copy keeps the one that sorts first)."""
    out: list[tuple[str, str]] = []
    for agent, new in by_agent.items():
        tail = tails.get(agent)
        if tail:
            ids = {ev[0] for ev in tail}
            out += [(agent, ev[0]) for ev in new if ev[0] not in ids]
    return out


def history_needs(
    by_agent: Mapping[str, list[StateEvent]],
    tails: Mapping[str, list[StateEvent] | None],
    copies: Mapping[str, list[StateEvent]],
    retention_us: int,
) -> dict[str, tuple[int, StateEvent]]:
    """Per agent whose change reaches before its tail (a new event, or the stored
    copy a new one may replace, before the tail's first event): (the earliest time
    it reaches, the tail's first event). Events track_agents refuses as older
    than retention need nothing."""
    out: dict[str, tuple[int, StateEvent]] = {}
    for agent, new in by_agent.items():
        tail = tails.get(agent)
        if not tail:
            continue
        first, oldest = timeline_key(tail[0]), tail[-1][1] - retention_us
        before = [
            ev[1]
            for ev in (*new, *copies.get(agent, ()))
            if timeline_key(ev) < first and ev[1] >= oldest
        ]
        if before:
            out[agent] = (min(before), tail[0])
    return out


def assemble(
    by_call: Mapping[str, list[Compact]],
    states: Mapping[str, CallState | None],
    settings: Settings,
) -> AssemblyResult:
    """Merge a batch into the calls' states. `states` holds the current state of
    every call in `by_call` (None for a call not seen before)."""
    out = AssemblyResult()
    defs = settings.kpi
    for call_id, new_events in by_call.items():
        for ev in new_events:
            if out.max_ts is None or ev[2] > out.max_ts:
                out.max_ts = ev[2]
        prior = states.get(call_id)
        state = prior.copy() if prior is not None else CallState({})
        if not merge_events(state.events, new_events):
            continue  # every event already known: a duplicate or a replay
        contrib, summary = assess(
            call_id, state.events, defs, settings.team_of_queue, UNASSIGNED_TEAM
        )
        add_delta(out.deltas, state.contrib, contrib)
        state.contrib = contrib
        fact = customer_fact(summary, defs, settings.team_of_queue, UNASSIGNED_TEAM)
        if fact is not None:
            fact["n"] = len(state.events)
            if state.fact is None or _fact_body(state.fact) != _fact_body(fact):
                out.facts.append(fact)
        state.fact = fact
        out.changed[call_id] = state
    out.deltas = prune(out.deltas)
    return out


def _fact_body(fact: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fact.items() if k != "n"}


@dataclass(slots=True)
class FcrRow:
    fact: dict[str, Any]
    contrib: Contribution | None = None

    @property
    def pending(self) -> bool:
        """Answered but not yet final: the watermark sweep must look at it again."""
        if not self.fact["answered"]:
            return False
        return self.contrib is None or not self.contrib.entities.get(("center", "all"), {}).get(
            "fcr_final"
        )


@dataclass(slots=True)
class FcrResult:
    changed: dict[str, FcrRow] = field(default_factory=dict)  # call_id -> row
    deltas: dict[DeltaKey, Counters] = field(default_factory=dict)


def apply_facts(
    facts: Iterable[Mapping[str, Any]],
    customers: Mapping[str, dict[str, FcrRow]],
    watermark_us: int,
    window_us: int,
    touched: Iterable[str] = (),
    spans: Mapping[str, tuple[int, int]] | None = None,
) -> FcrResult:
    """Upsert facts into their customers' call lists (newest fact per call wins by
    its event count `n`, so a stale copy replayed later changes nothing) and
    recompute FCR for every customer touched by a fact or listed in `touched`.

    `spans`: for a customer with a span (lo, hi), the changes are in [lo, hi], and
    only the calls offered in [lo − window, hi] are recomputed, from the calls in
    [lo − window, hi + window]: theirs are the outcomes a change in [lo, hi] can
    move, and each one's window lies inside that. `customers` holds at least those
    calls of such a customer (the worker loads no more of one with many calls);
    for a customer without a span all of its calls are recomputed."""
    out = FcrResult()
    working: dict[str, dict[str, FcrRow]] = {}

    def rows_of(customer: str) -> dict[str, FcrRow]:
        if customer not in working:
            working[customer] = dict(customers.get(customer, {}))
        return working[customer]

    for cust in touched:
        rows_of(cust)
    for fact in facts:
        rows = rows_of(fact["customer"])
        row = rows.get(fact["call_id"])
        if row is not None and row.fact.get("n", 0) > fact.get("n", 0):
            continue
        if row is not None and row.fact == fact:
            continue
        rows[fact["call_id"]] = FcrRow(dict(fact), row.contrib if row else None)
        out.changed[fact["call_id"]] = rows[fact["call_id"]]

    for customer, rows in working.items():
        span = spans.get(customer) if spans is not None else None
        pool: Iterable[FcrRow] = rows.values()
        if span is not None:
            # a call's outcome depends on the calls of the window after it: those
            # recomputed, [lo - window, hi], need [lo - window, hi + window], not
            # the customer's whole history (a regular caller's month)
            lo, hi = span[0] - window_us, span[1] + window_us
            pool = [r for r in pool if lo <= r.fact["offered_at"] <= hi]
        new = fcr_contributions((r.fact for r in pool), watermark_us, window_us)
        for call_id, row in rows.items():
            if span is not None and not span[0] - window_us <= row.fact["offered_at"] <= span[1]:
                continue  # its window reaches past what was loaded; nothing moved it
            contrib = new.get(call_id)
            if contrib == row.contrib:
                continue
            add_delta(out.deltas, row.contrib, contrib)
            updated = FcrRow(row.fact, contrib)
            rows[call_id] = updated
            out.changed[call_id] = updated
    out.deltas = prune(out.deltas)
    return out


def merge_into(acc: dict[DeltaKey, Counters], more: Mapping[DeltaKey, Counters]) -> None:
    for key, counters in more.items():
        slot = acc.setdefault(key, {})
        for name, value in counters.items():
            slot[name] = slot.get(name, 0) + value

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


def track_agents(
    by_agent: Mapping[str, list[StateEvent]],
    timelines: Mapping[str, list[StateEvent] | None],
    settings: Settings,
) -> AgentResult:
    """Merge state events into the agents' timelines (`timelines` holds every agent
    of `by_agent`, None for one not seen before) and return the segments that
    changed, signed (their teams' and the center's minutes are summed from them
    when written)."""
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
        out.changed[agent] = trim(change.timeline, horizon)
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

    `spans`: for a customer whose calls were loaded only from lo − window to
    hi + window (`customers` holds those), only the calls offered in [lo − window,
    hi] are recomputed: theirs are the outcomes a change in [lo, hi] can move, and
    each one's window lies inside what was loaded. A customer without a span has
    all of its calls loaded."""
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
        new = fcr_contributions((r.fact for r in rows.values()), watermark_us, window_us)
        span = spans.get(customer) if spans is not None else None
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

"""Hypothesis strategies: call-center scenarios and the ways they get delivered."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

BASE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
US = 1_000_000
QUEUES = ["billing", "tech", "orphan"]  # "orphan" is not in the roster
TEAM_OF_QUEUE = {"billing": "billing", "tech": "tech"}
AGENTS = ["a1", "a2", "a3"]
CUSTOMERS = ["+8613800000001", "+8613800000002", "+8613800000003"]
# How real PBXs write a caller id they do not have: none of them is a customer.
WITHHELD = ["0", "", "anonymous", " Restricted ", "<unknown>", "PRIVATE"]
# The same instant written with different offsets must mean the same thing.
OFFSETS = [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]
# call.ended.reason (cti-event schema revision 2)
END_REASONS = ["abandoned", "timeout", "closed", "full", "diverted", "no_agents",
               "agents_left", "exit_key", "voicemail", "callback"]  # fmt: skip


def stamp(offset_us: int, tz: timezone) -> str:
    return (BASE + timedelta(microseconds=offset_us)).astimezone(tz).isoformat()


@st.composite
def durations(draw: Any, max_s: int) -> int:
    """Seconds, sometimes with microseconds, with the edges (0, 5 s, 20 s) likely."""
    whole = draw(st.one_of(st.sampled_from([0, 4, 5, 19, 20, 21]), st.integers(0, max_s)))
    frac = draw(st.one_of(st.just(0), st.integers(0, US - 1)))
    return int(whole * US + frac)


@st.composite
def call(draw: Any, idx: int) -> list[dict[str, Any]]:
    cid = f"c{idx}"
    tz = draw(st.sampled_from(OFFSETS))
    evs: list[tuple[int, dict[str, Any]]] = []

    def add(t: int, typ: str, **fields: Any) -> None:
        evs.append((t, {"type": typ, "call_id": cid, **fields}))

    t0 = draw(st.integers(0, 3 * 3600)) * US + draw(st.sampled_from([0, 0, 1, 999_999]))
    if draw(st.integers(0, 11)) == 0:  # hung up in the IVR, before any queue
        ivr: dict[str, Any] = {}
        if draw(st.booleans()):
            ivr["queue_id"] = draw(st.sampled_from(QUEUES))
        add(t0, "call.ivr_abandoned", **ivr)
        if draw(st.integers(0, 4)) == 0:  # ... or so it said: it reached a queue after all
            add(t0 + draw(durations(30)), "call.offered", queue_id=draw(st.sampled_from(QUEUES)))
        return [{"event_id": f"{cid}-{n}", "occurred_at": stamp(t, tz), **body}
                for n, (t, body) in enumerate(evs)]  # fmt: skip
    offered: dict[str, Any] = {"queue_id": draw(st.sampled_from(QUEUES))}
    if draw(st.booleans()):
        offered["customer_id"] = draw(st.sampled_from(CUSTOMERS * 2 + WITHHELD))
    add(t0, "call.offered", **offered)
    kind = draw(
        st.sampled_from(["answered", "answered", "answered", "abandoned", "timed_out", "waiting"])
    )
    t = t0

    def callback(at: int) -> None:
        """Some of: offered, accepted, completed (each may be missing or late)."""
        for stage in ("offered", "accepted", "completed"):
            if draw(st.booleans()):
                add(at, "call.callback", stage=stage)
            at += draw(durations(900))

    if kind == "answered":
        agent = draw(st.sampled_from(AGENTS))
        t += draw(durations(60))
        if draw(st.booleans()):
            add(t, "call.ringing", agent_id=agent)
            t += draw(durations(10))
        add(t, "call.answered", agent_id=agent)
        t += draw(durations(300))
        if draw(st.booleans()):
            add(t, "call.hold", agent_id=agent)
            t += draw(durations(60))
            if draw(st.integers(0, 3)):
                add(t, "call.resumed", agent_id=agent)
            t += draw(durations(60))
        last = agent
        if draw(st.integers(0, 3)) == 0:
            other = draw(st.sampled_from([a for a in AGENTS if a != agent]))
            add(t, "call.transferred", agent_id=agent, to_agent_id=other)
            if draw(st.booleans()):
                add(t + draw(durations(30)), "call.wrapup_ended", agent_id=agent)
            t += draw(durations(10))
            add(t, "call.ringing", agent_id=other)
            t += draw(durations(10))
            add(t, "call.answered", agent_id=other)
            t += draw(durations(200))
            last = other
        if draw(st.integers(0, 5)):
            add(t, "call.ended", ended_by=draw(st.sampled_from(["customer", "agent"])))
            if draw(st.booleans()):
                add(t + draw(durations(60)), "call.wrapup_ended", agent_id=last)
            for _ in range(draw(st.integers(0, 2))):  # the latest disposition wins
                disp: dict[str, Any] = {}
                resolved = draw(st.sampled_from([True, False, None]))
                if resolved is not None:
                    disp["resolved"] = resolved
                if draw(st.integers(0, 3)) == 0:
                    disp["complaint"] = draw(st.booleans())
                if draw(st.integers(0, 2)) == 0:
                    disp["sale_amount"] = draw(
                        st.sampled_from([0, 0.1, 0.2, 19.99, 100, 1234.565, 0.005])
                    )
                add(t + draw(durations(60)), "call.disposition", agent_id=last, **disp)
            for _ in range(draw(st.integers(0, 2))):  # a second survey replaces the first
                add(t + draw(durations(120)), "survey.completed", score=draw(st.integers(1, 5)))
    elif kind in ("abandoned", "timed_out"):
        if draw(st.booleans()):
            add(t + draw(durations(10)), "call.ringing", agent_id=draw(st.sampled_from(AGENTS)))
        if draw(st.integers(0, 3)) == 0:
            callback(t + draw(durations(60)))
        t += draw(durations(90))
        by = "customer" if kind == "abandoned" else draw(st.sampled_from(["system", "agent"]))
        ended: dict[str, Any] = {"ended_by": by}
        reason = draw(st.sampled_from([None, None, None, *END_REASONS]))
        if reason is not None:
            ended["reason"] = reason
            if reason == "exit_key" and draw(st.booleans()):
                ended["key"] = draw(st.sampled_from(["1", "#", "0"]))
        add(t, "call.ended", **ended)
    elif draw(st.booleans()):
        add(t + draw(durations(10)), "call.ringing", agent_id=draw(st.sampled_from(AGENTS)))
    elif draw(st.booleans()):
        callback(t + draw(durations(60)))  # a waiting call that took a callback
    if kind == "answered" and draw(st.integers(0, 7)) == 0:
        callback(t0 + draw(durations(20)))  # offered while it waited, then answered
    if draw(st.integers(0, 9)) == 0:
        evs = [e for e in evs if e[1]["type"] != "call.offered"]  # the arrival never reaches us
    return [
        {"event_id": f"{cid}-{n}", "occurred_at": stamp(t, tz), **body}
        for n, (t, body) in enumerate(evs)
    ]


STATES = ["logged_out", "available", "on_call", "wrap_up", "not_ready"]
REASONS = [None, None, "break", "lunch", "training"]
# a4 is in no team of the roster; a1, a2 are billing's and a3 tech's
TEAM_OF_AGENT = {"a1": "billing", "a2": "billing", "a3": "tech"}
STATE_AGENTS = [*AGENTS, "a4"]


@st.composite
def agent_states(draw: Any, agent: str) -> list[dict[str, Any]]:
    """An agent's state changes: some minutes apart, some at the same instant, some
    on minute boundaries, spanning hours (bucket and hour edges)."""
    tz = draw(st.sampled_from(OFFSETS))
    t = draw(st.integers(0, 3600)) * US
    out = []
    for n in range(draw(st.integers(0, 8))):
        step = draw(
            st.one_of(
                st.just(0),
                # 3600 s is exactly the property tests' one-hour state cap, 3601 s
                # and two hours are beyond it
                st.sampled_from([60 * US, 3600 * US, 3601 * US, 7200 * US]),
                st.integers(0, 40 * 60).map(lambda s: s * US),
                durations(600),
            )
        )
        t += step
        ev: dict[str, Any] = {
            "event_id": f"{agent}-s{n}",
            "type": "agent.state",
            "occurred_at": stamp(t, tz),
            "agent_id": agent,
            "state": draw(st.sampled_from(STATES)),
        }
        reason = draw(st.sampled_from(REASONS))
        if reason is not None:
            ev["reason"] = reason
        out.append(ev)
    return out


@st.composite
def scenarios(draw: Any, max_calls: int = 12) -> list[dict[str, Any]]:
    n = draw(st.integers(1, max_calls))
    events: list[dict[str, Any]] = []
    for i in range(n):
        events.extend(draw(call(i)))
    for agent in STATE_AGENTS:
        if draw(st.booleans()):
            events.extend(draw(agent_states(agent)))
    return events


@st.composite
def deliveries(draw: Any, events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Shuffled, some events repeated (retries, replays), cut into batches."""
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))
    stream = list(events)
    dup_share = draw(st.sampled_from([0.0, 0.1, 0.5]))
    stream += [e for e in events if rnd.random() < dup_share]
    rnd.shuffle(stream)
    batches: list[list[dict[str, Any]]] = []
    i = 0
    while i < len(stream):
        size = rnd.choice([1, 2, 5, 20, 1000])
        batches.append(stream[i : i + size])
        i += size
    return batches

"""One call as a record (GET /v1/calls): what the figures counted of it, from the
call's stored events and the counters the worker applied for it, so the calls
behind a figure add up to it (docs/reports.md#call-detail)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from services.core.calls import Compact, Contribution
from services.core.kpi import UNANSWERED_OUTCOMES
from services.core.qa_calls import suspicious as flags

US = 1_000_000

# What a call can have come to: answered, one of the unanswered outcomes of
# docs/metrics.md#how-unanswered-calls-end, still waiting, or left in the IVR.
OUTCOMES: tuple[str, ...] = ("answered", *UNANSWERED_OUTCOMES, "in_queue", "ivr_abandoned")
# A call's first-call resolution: not a candidate (not answered), unidentified
# (answered, no customer id), pending (its window open), resolved, not resolved
FCR_STATES = ("unidentified", "pending", "resolved", "not_resolved")


def _seconds(us: int | None) -> float | None:
    return None if us is None else us / US


def outcome_of(c: Mapping[str, int]) -> str | None:
    """The outcome a call's own counters say (exactly one is 1)."""
    for name in OUTCOMES:
        if c.get(name):
            return name
    return None


def fcr_state(queue_counters: Mapping[str, int], fcr: Contribution | None) -> str | None:
    if not queue_counters.get("answered"):
        return None
    if queue_counters.get("fcr_unidentified"):
        return "unidentified"
    mine = next(iter(fcr.entities.values()), {}) if fcr is not None else {}
    if mine.get("fcr_failed"):
        return "not_resolved"
    if mine.get("fcr_resolved"):
        return "resolved"
    return "pending"


def call_record(
    call_id: str,
    events: Iterable[Compact],
    contrib: Contribution | None,
    fcr: Contribution | None,
    team_of_queue: Mapping[str, str],
    default_team: str,
) -> dict[str, Any] | None:
    """The record of one call; None for a call the figures do not count yet (no
    call.offered). Times are µs since the epoch; durations seconds."""
    if contrib is None or not contrib.entities:
        return None
    ordered = sorted(events, key=lambda e: (e[2], e[0]))
    offered = next((e for e in ordered if e[1] == "call.offered"), None)
    ivr = next((e for e in ordered if e[1] == "call.ivr_abandoned"), None)
    ended = next((e for e in ordered if e[1] == "call.ended"), None)
    disp = next((e for e in reversed(ordered) if e[1] == "call.disposition"), None)
    survey = next((e for e in reversed(ordered) if e[1] == "survey.completed"), None)
    first = offered or ivr
    assert first is not None  # a contribution needs one of them
    extra = first[4] or {}
    queue = extra.get("queue_id")
    c = contrib.entities.get(("queue", queue)) if queue else None
    if c is None:
        c = contrib.entities.get(("center", "all"), {})
    outcome = outcome_of(c)
    wait = c.get("wait_answered_us") if outcome == "answered" else c.get("wait_all_us")
    if wait is None and outcome == "answered":
        wait = 0
    elif wait is None and outcome not in (None, "in_queue", "ivr_abandoned"):
        # not a queued outcome (closed, full, ...): no wait in the figures, but the
        # record says how long after its arrival the call ended
        wait = max(0, ended[2] - first[2]) if ended is not None else 0
    agents: list[dict[str, Any]] = []
    for (kind, agent), ac in contrib.entities.items():
        if kind != "agent":
            continue
        agents.append({
            "agent_id": agent,
            "answered": bool(ac.get("answered")),
            "ring_seconds": _seconds(ac.get("ring_us")) if ac.get("ring_count") else None,
            "talk_seconds": _seconds(ac.get("talk_us", 0)) if ac.get("handled") else None,
            "hold_seconds": _seconds(ac.get("hold_us", 0)) if ac.get("handled") else None,
            "acw_seconds": _seconds(ac.get("acw_us", 0)) if ac.get("handled") else None,
            "transferred": bool(ac.get("transfers")),
        })  # fmt: skip
    agents.sort(key=lambda a: str(a["agent_id"]))
    eextra = (ended[4] or {}) if ended else {}
    dextra = (disp[4] or {}) if disp else {}
    handled = bool(c.get("handled"))
    return {
        "call_id": call_id,
        "offered_us": first[2],
        "queue_id": queue,
        "team": team_of_queue.get(queue, default_team) if queue else None,
        "outcome": outcome,
        "reason": eextra.get("reason"),
        "ended_by": eextra.get("ended_by"),
        "key": eextra.get("key"),
        "wait_seconds": _seconds(wait),
        "talk_seconds": _seconds(c.get("talk_us", 0)) if handled else None,
        "hold_seconds": _seconds(c.get("hold_us", 0)) if handled else None,
        "acw_seconds": _seconds(c.get("acw_us", 0)) if handled else None,
        "answered_legs": sum(1 for e in ordered if e[1] == "call.answered"),
        "transferred": bool(c.get("transfers")),
        "agents": agents,
        "last_agent": next((e[3] for e in reversed(ordered) if e[1] == "call.answered"), None),
        "fcr": fcr_state(c, fcr),
        "survey_score": (survey[4] or {}).get("score") if survey else None,
        "resolved": dextra.get("resolved"),
        "complaint": dextra.get("complaint") is True if disp else None,
        "sale_amount": (c["sales_amount_cents"] / 100) if c.get("sales_amount_cents") else None,
        "customer": extra.get("customer_id") if offered else None,
        "callback_offered": bool(c.get("callbacks_offered")),
    }


def matches(
    record: Mapping[str, Any],
    *,
    agent: str | None = None,
    outcome: str | None = None,
    min_wait: float | None = None,
    fcr: str | None = None,
    suspicious: str | None = None,
    short_seconds: float = 10.0,
) -> bool:
    """The filters of GET /v1/calls that are not the store's (range, queue, team).
    `suspicious`: one of qa_calls.SUSPICIOUS, in `agent`'s part of the call (any
    agent's without one)."""
    if agent is not None and all(a["agent_id"] != agent for a in record["agents"]):
        return False
    if suspicious is not None:
        legs = [agent] if agent is not None else [a["agent_id"] for a in record["agents"]]
        if not any(suspicious in flags(record, a, short_seconds) for a in legs):
            return False
    if outcome is not None and record["outcome"] != outcome:
        return False
    if min_wait is not None and (
        record["wait_seconds"] is None or record["wait_seconds"] < min_wait
    ):
        return False
    return fcr is None or record["fcr"] == fcr

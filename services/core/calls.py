"""Call assembly: from the *set* of a call's events to its additive counters.

Everything here is a pure function of the deduplicated event set, never of the
order in which events arrived. That is what makes the pipeline's figures
independent of delivery order, duplicates and replays: the worker stores each
call's event set and the counters it last applied, and applies only the
difference when the set grows (see services/kpi_stream/processor.py).

Times are integer microseconds since the epoch so sums are exact.
Definitions: docs/metrics.md.

One file, over 400 lines, on purpose: every counter of a call (the catalogue's
outcomes, waits, handling, surveys, each agent's legs, the FCR fact) comes out of
one sort of its events in `assess`, and its helpers read the same summary; split
across files, one definition would have to be followed through several.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import orjson

from services.core.kpi import (
    ABANDONED_WAIT_BINS,
    ANSWERED_WAIT_BINS,
    QUEUED_OUTCOMES,
    REASON_OUTCOME,
    wait_bin,
)
from services.core.settings import KpiDefinitions

MINUTE_US = 60_000_000
SECOND_US = 1_000_000

# Fields of an event that assembly needs beyond id/type/time/agent. Everything
# else (unknown extras included) is dropped from the stored call state.
# An event stored before a field was kept (call.ended.reason) and sent again with
# it (a re-import, a replay) has the same id and more fields: its serialisation
# sorts first (`,` before `}` after the common prefix), so the richer copy wins
# (merge_events) and old calls take the new meaning without a migration.
_KEEP = {
    "call.offered": ("queue_id", "customer_id", "direction"),
    "call.ended": ("ended_by", "reason", "key"),
    "call.callback": ("stage",),
    "call.ivr_abandoned": ("queue_id",),
    "call.transferred": ("to_queue_id", "to_agent_id"),
    "call.disposition": ("resolved", "category", "complaint", "sale_amount"),
    "survey.completed": ("score",),
}

# A compact stored event: [event_id, type, ts_us, agent_id | None, extra | None]
Compact = list[Any]
EntityKey = tuple[str, str]  # (kind, id)
Counters = dict[str, int]

# An agent's figures in one queue (GET /v1/kpis/agent/{id}?by=queue): the agent's
# legs of the calls of that queue, as an entity of their own. The id joins the two
# with a control character, which no agent or queue id can hold (the schema
# refuses them), so it splits back unambiguously.
AGENT_QUEUE = "agent_queue"
AGENT_QUEUE_SEP = "\x1f"


def agent_queue_id(agent: str, queue: str) -> str:
    return f"{agent}{AGENT_QUEUE_SEP}{queue}"


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one call adds to the minute bucket of its arrival."""

    bucket_us: int
    entities: dict[EntityKey, Counters]

    def to_json(self) -> list[Any]:
        """[bucket_us, [[counters, [kind, id, kind, id, ...]], ...]]: entities with
        the same counters share one entry. The center, team and queue of a call
        always do (and with FCR counters its agent too), so the stored call and
        FCR rows are a third smaller than with one entry per entity."""
        groups: list[list[Any]] = []
        for (kind, ident), counters in self.entities.items():
            for group in groups:
                if group[0] == counters:
                    group[1].extend((kind, ident))
                    break
            else:
                groups.append([counters, [kind, ident]])
        return [self.bucket_us, groups]

    @staticmethod
    def from_json(data: list[Any] | None) -> Contribution | None:
        if not data:
            return None
        entities: dict[EntityKey, Counters] = {}
        for entry in data[1]:
            if len(entry) == 3:  # stored by earlier versions: [kind, id, counters]
                entities[(entry[0], entry[1])] = dict(entry[2])
                continue
            counters, ids = entry
            for j in range(0, len(ids), 2):
                entities[(ids[j], ids[j + 1])] = dict(counters)
        return Contribution(int(data[0]), entities)


EMPTY = Contribution(0, {})


def compact(event: Mapping[str, Any]) -> Compact:
    keep = _KEEP.get(event["type"])
    extra = {k: event[k] for k in keep if k in event} if keep else None
    return [
        event["event_id"],
        event["type"],
        int(event["ts"]),
        event.get("agent_id"),
        extra or None,
    ]


def merge_events(existing: dict[str, Compact], new: Iterable[Compact]) -> bool:
    """Add events to a call's set, deduplicated by event_id. Returns True if it changed.

    A repeated id with different content is the same event sent twice with a
    difference we cannot arbitrate; to stay order-independent the copy whose
    serialisation sorts first wins, whichever arrived first.
    """
    changed = False
    for ev in new:
        eid = ev[0]
        old = existing.get(eid)
        if old is None or (old != ev and orjson.dumps(ev) < orjson.dumps(old)):
            existing[eid] = ev
            changed = True
    return changed


def bucket_of(ts_us: int) -> int:
    return ts_us - ts_us % MINUTE_US


def _sorted(events: Iterable[Compact]) -> list[Compact]:
    # (time, id) is a total order on a deduplicated set: ties never depend on arrival.
    return sorted(events, key=lambda e: (e[2], e[0]))


def _hold_total(ordered: list[Compact], start: int, end: int) -> int:
    """Time on hold inside [start, end]; an open hold closes at `end`."""
    total = 0
    held_since: int | None = None
    for _eid, typ, ts, _ag, _x in ordered:
        if typ == "call.hold" and held_since is None:
            held_since = ts
        elif typ == "call.resumed" and held_since is not None:
            total += max(0, min(ts, end) - max(held_since, start))
            held_since = None
    if held_since is not None:
        total += max(0, end - max(held_since, start))
    return total


@dataclass(frozen=True, slots=True)
class CallSummary:
    """The assembled call: what the counters and the FCR stage are derived from."""

    call_id: str
    offered_at: int | None
    queue_id: str | None
    customer_id: str | None
    answered_at: int | None
    ended_at: int | None
    ended_by: str | None
    last_agent: str | None
    unresolved: bool
    # answered | in_queue | unknown (no call.offered) | ivr_abandoned | one of
    # core.kpi.UNANSWERED_OUTCOMES
    outcome: str
    transferred: bool = False
    survey_score: int | None = None  # the latest survey's
    complaint: bool = False  # the latest disposition's
    sale_cents: int | None = None  # the latest disposition's sale_amount, in cents
    left_at: int | None = None  # unanswered: when it left the queue (its wait's end)
    callback_offered: bool = False
    callback_completed_at: int | None = None
    ivr_at: int | None = None  # the first call.ivr_abandoned
    ivr_queue: str | None = None  # the queue that IVR would have sent it to


def _summary(call_id: str, ordered: list[Compact]) -> CallSummary:
    offered = ended = latest_disp = latest_survey = ivr = None
    transferred = False
    answers: list[Compact] = []
    callback: dict[str, int] = {}  # stage -> its first time
    for e in ordered:  # one pass; `ordered` is by (time, id)
        typ = e[1]
        if typ == "call.answered":
            answers.append(e)
        elif typ == "call.offered":
            if offered is None:
                offered = e
        elif typ == "call.ended":
            if ended is None:
                ended = e
        elif typ == "call.disposition":
            latest_disp = e
        elif typ == "call.transferred":
            transferred = True
        elif typ == "survey.completed":
            latest_survey = e
        elif typ == "call.callback":
            callback.setdefault((e[4] or {}).get("stage", ""), e[2])
        elif typ == "call.ivr_abandoned" and ivr is None:
            ivr = e
    disp = (latest_disp[4] or {}) if latest_disp else {}
    unresolved = disp.get("resolved") is False
    amount = disp.get("sale_amount")
    eextra = (ended[4] or {}) if ended else {}
    reason = eextra.get("reason")
    if ended is not None and reason == "callback":  # the first acceptance counts
        callback["accepted"] = min(callback.get("accepted", ended[2]), ended[2])
    # accepted, or completed without an acceptance sent: the caller took it
    taken = [callback[k] for k in ("accepted", "completed") if k in callback]
    left_at: int | None = None
    if offered is None:
        outcome = "ivr_abandoned" if ivr is not None else "unknown"
    elif answers:
        outcome = "answered"
    elif taken:
        outcome, left_at = "callbacks_accepted", min(taken)
    elif ended is not None:
        if reason in REASON_OUTCOME:
            outcome = REASON_OUTCOME[reason]
        else:
            outcome = "abandoned" if eextra.get("ended_by") == "customer" else "timed_out"
        left_at = ended[2]
    else:
        outcome = "in_queue"
    oextra = (offered[4] or {}) if offered else {}
    return CallSummary(
        call_id=call_id,
        offered_at=offered[2] if offered else None,
        queue_id=oextra.get("queue_id"),
        customer_id=oextra.get("customer_id"),
        answered_at=answers[0][2] if answers else None,
        ended_at=ended[2] if ended else None,
        ended_by=(ended[4] or {}).get("ended_by") if ended else None,
        last_agent=answers[-1][3] if answers else None,
        unresolved=unresolved,
        outcome=outcome,
        transferred=transferred,
        survey_score=(latest_survey[4] or {}).get("score") if latest_survey else None,
        complaint=disp.get("complaint") is True,
        sale_cents=to_cents(amount) if amount else None,
        left_at=left_at,
        callback_offered=bool(callback),
        callback_completed_at=callback.get("completed"),
        ivr_at=ivr[2] if ivr else None,
        ivr_queue=(ivr[4] or {}).get("queue_id") if ivr else None,
    )


def to_cents(amount: float | int) -> int:
    """Exact minor units: the decimal the sender wrote (orjson keeps the shortest
    repr), rounded half-even to cents."""
    return int((Decimal(str(amount)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def call_contribution(
    call_id: str,
    events: Mapping[str, Compact],
    defs: KpiDefinitions,
    team_of_queue: Mapping[str, str],
    default_team: str,
) -> Contribution:
    """Counters this call adds to its arrival bucket (everything but FCR)."""
    return assess(call_id, events, defs, team_of_queue, default_team)[0]


def assess(
    call_id: str,
    events: Mapping[str, Compact],
    defs: KpiDefinitions,
    team_of_queue: Mapping[str, str],
    default_team: str,
) -> tuple[Contribution, CallSummary]:
    """The call's contribution and its summary, from one sort of its events."""
    ordered = _sorted(events.values())
    s = _summary(call_id, ordered)
    if s.outcome == "ivr_abandoned":
        return _ivr_contribution(s, team_of_queue, default_team), s
    if s.offered_at is None or s.queue_id is None:
        # Without its arrival we cannot attribute the call; it waits for call.offered.
        return EMPTY, s
    offered_at = s.offered_at
    sl_us = defs.service_level_seconds * SECOND_US
    short_us = defs.short_abandon_seconds * SECOND_US

    c: Counters = {"offered": 1}
    wait = 0
    if s.outcome == "answered":
        assert s.answered_at is not None
        wait = max(0, s.answered_at - offered_at)
        c["answered"] = 1
        c["wait_answered_us"] = wait
        c[ANSWERED_WAIT_BINS[wait_bin(wait)]] = 1
        if wait <= sl_us:
            c["answered_within_sl"] = 1
    elif s.left_at is not None:
        wait = max(0, s.left_at - offered_at)
        c[s.outcome] = 1
        if s.outcome == "abandoned":
            c[ABANDONED_WAIT_BINS[wait_bin(wait)]] = 1
            if short_us > 0 and wait < short_us:
                c["short_abandoned"] = 1
            if wait <= sl_us:
                c["abandoned_within_sl"] = 1
    else:
        c["in_queue"] = 1
    if s.outcome in QUEUED_OUTCOMES:
        c["waited"] = 1
        c["wait_all_us"] = wait
    if s.callback_offered:
        c["callbacks_offered"] = 1
    if s.outcome == "callbacks_accepted" and s.callback_completed_at is not None:
        assert s.left_at is not None
        c["callbacks_completed"] = 1
        c["callback_wait_us"] = max(0, s.callback_completed_at - s.left_at)

    if s.transferred:
        c["transfers"] = 1
    outcomes: Counters = {}
    if s.survey_score is not None:
        outcomes["surveys"] = 1
        if s.survey_score >= defs.satisfied_min_score:
            outcomes["satisfied"] = 1
    if s.complaint:
        outcomes["complaints"] = 1
    if s.sale_cents is not None:  # a sale is a positive amount as sent, even < 1 cent
        outcomes["sales"] = 1
        outcomes["sales_amount_cents"] = s.sale_cents
    if s.outcome == "answered" and s.customer_id is None:
        # no caller id, or a withheld one (dropped at ingest): not an FCR candidate,
        # counted where the candidates are (the queue's side and who answered last)
        outcomes["fcr_unidentified"] = 1
    c.update(outcomes)
    if s.answered_at is not None and s.ended_at is not None:
        start, end = s.answered_at, max(s.ended_at, s.answered_at)
        hold = _hold_total(ordered, start, end)
        c["handled"] = 1
        c["hold_us"] = hold
        c["talk_us"] = max(0, end - start - hold)
        wraps = [e[2] for e in ordered if e[1] == "call.wrapup_ended"]
        c["acw_us"] = max(0, max(wraps) - s.ended_at) if wraps else 0

    team = team_of_queue.get(s.queue_id, default_team)
    shared = _nonzero(c)  # one dict for the three: contributions are never mutated
    entities: dict[EntityKey, Counters] = {
        ("center", "all"): shared,
        ("team", team): shared,
        ("queue", s.queue_id): shared,
    }
    for agent, ac in _agent_counters(ordered, s).items():
        if agent == s.last_agent:
            ac.update(outcomes)  # surveys and dispositions go to who answered last
        entities[("agent", agent)] = ac
        entities[(AGENT_QUEUE, agent_queue_id(agent, s.queue_id))] = ac
    return Contribution(bucket_of(offered_at), entities), s


def _ivr_contribution(
    s: CallSummary, team_of_queue: Mapping[str, str], default_team: str
) -> Contribution:
    """A call that hung up in the IVR and never reached a queue: counted apart,
    for the center and, when the event names the queue it was headed to, for that
    queue and its team; it is no offered call."""
    assert s.ivr_at is not None
    c = {"ivr_abandoned": 1}
    entities: dict[EntityKey, Counters] = {("center", "all"): c}
    if s.ivr_queue is not None:
        entities[("team", team_of_queue.get(s.ivr_queue, default_team))] = c
        entities[("queue", s.ivr_queue)] = c
    return Contribution(bucket_of(s.ivr_at), entities)


def _agent_counters(ordered: list[Compact], s: CallSummary) -> dict[str, Counters]:
    """Each agent's own legs: a leg runs from its answer to its transfer or the call end."""
    by_agent: dict[str, list[Compact]] = {}
    for e in ordered:
        if e[3] is not None:
            by_agent.setdefault(e[3], []).append(e)
    out: dict[str, Counters] = {}
    for agent, mine in by_agent.items():
        answers: list[int] = []
        transfers: list[int] = []
        wraps: list[int] = []
        rings: list[int] = []
        presented = False
        for _eid, typ, ts, _ag, _x in mine:  # one pass, in (time, id) order
            if typ == "call.answered":
                answers.append(ts)
                presented = True
            elif typ == "call.ringing":
                rings.append(ts)
                presented = True
            elif typ == "call.transferred":
                transfers.append(ts)
            elif typ == "call.wrapup_ended":
                wraps.append(ts)
        if not presented:
            continue
        c: Counters = {"presented": 1}
        if transfers:
            c["transfers"] = 1
        if answers:
            c["answered"] = 1
            # the last ring at or before the first answer (a tie in time counts)
            before = [r for r in rings if r <= answers[0]]
            if before:
                c["ring_count"] = 1
                c["ring_us"] = answers[0] - before[-1]
            handled = talk = hold_sum = 0
            last_leg_end: int | None = None
            for start in answers:
                end = next((t for t in transfers if t >= start), None)
                if end is None:
                    if s.ended_at is None:
                        continue
                    end = max(s.ended_at, start)
                hold = _hold_total(mine, start, end)
                handled += 1
                hold_sum += hold
                talk += max(0, end - start - hold)
                last_leg_end = end
            if last_leg_end is not None:
                c["handled"] = handled
                c["hold_us"] = hold_sum
                c["talk_us"] = talk
                c["acw_us"] = max(0, max(wraps) - last_leg_end) if wraps else 0
        out[agent] = _nonzero(c)
    return out


def _nonzero(c: Counters) -> Counters:
    return {k: v for k, v in c.items() if v}


def customer_fact(
    s: CallSummary, defs: KpiDefinitions, team_of_queue: Mapping[str, str], default_team: str
) -> dict[str, Any] | None:
    """What the FCR stage needs to know about a call, keyed by customer."""
    if s.customer_id is None or s.offered_at is None or s.queue_id is None:
        return None
    short_us = defs.short_abandon_seconds * SECOND_US
    short = (
        s.outcome == "abandoned"
        and short_us > 0
        and s.ended_at is not None
        and max(0, s.ended_at - s.offered_at) < short_us
    )
    return {
        "call_id": s.call_id,
        "customer": s.customer_id,
        "offered_at": s.offered_at,
        "queue": s.queue_id,
        "team": team_of_queue.get(s.queue_id, default_team),
        "answered": s.outcome == "answered",
        "short_abandoned": short,
        "unresolved": s.unresolved,
        "last_agent": s.last_agent,
    }


def fcr_contributions(
    facts: Iterable[Mapping[str, Any]], watermark_us: int, window_us: int
) -> dict[str, Contribution]:
    """FCR counters of every call of one customer, given all the customer's facts.

    A candidate (answered, with a customer) is repeated when another of the
    customer's calls that is not a short abandon is offered strictly after it and
    no later than offered_at + window; final once repeated, unresolved, or once
    the event-time watermark passes offered_at + window.
    """
    facts = sorted(facts, key=lambda f: (f["offered_at"], f["call_id"]))
    repeats = [f["offered_at"] for f in facts if not f["short_abandoned"]]  # sorted
    out: dict[str, Contribution] = {}
    for f in facts:
        if not f["answered"]:
            continue
        t0 = f["offered_at"]
        # is there a repeat offered in (t0, t0 + window]?
        i = bisect_right(repeats, t0)
        repeated = i < len(repeats) and repeats[i] <= t0 + window_us
        failed = repeated or f["unresolved"]
        final = failed or watermark_us > t0 + window_us
        c: Counters = {"fcr_candidates": 1}
        if failed:
            c["fcr_failed"] = 1
        if final:
            c["fcr_final"] = 1
            if not failed:
                c["fcr_resolved"] = 1
        entities: dict[EntityKey, Counters] = {
            ("center", "all"): dict(c),
            ("team", f["team"]): dict(c),
            ("queue", f["queue"]): dict(c),
        }
        if f["last_agent"] is not None:
            entities[("agent", f["last_agent"])] = dict(c)
            entities[(AGENT_QUEUE, agent_queue_id(f["last_agent"], f["queue"]))] = dict(c)
        out[f["call_id"]] = Contribution(bucket_of(t0), entities)
    return out


DeltaKey = tuple[str, str, int]  # (kind, id, bucket_us)


def add_delta(
    acc: dict[DeltaKey, Counters], old: Contribution | None, new: Contribution | None
) -> None:
    """Accumulate new − old into a batch's bucket deltas."""
    for contrib, sign in ((old, -1), (new, 1)):
        if contrib is None:
            continue
        for (kind, ident), counters in contrib.entities.items():
            slot = acc.setdefault((kind, ident, contrib.bucket_us), {})
            for name, value in counters.items():
                slot[name] = slot.get(name, 0) + sign * value


def prune(acc: dict[DeltaKey, Counters]) -> dict[DeltaKey, Counters]:
    out = {}
    for key, counters in acc.items():
        if all(counters.values()):  # the common case, checked without a copy
            out[key] = counters
            continue
        nz = {k: v for k, v in counters.items() if v}
        if nz:
            out[key] = nz
    return out

"""A small batch implementation of docs/metrics.md, written to be obviously right
rather than fast: it sees every event at once, in no particular order, and
computes each figure straight from its definition with exact integers and
Fractions. The streaming pipeline must agree with it whatever the delivery order,
batching or duplication.

It shares no code with services/ except the raw-event parsing of timestamps, and
no data but the default list of withheld caller-id patterns (a setting).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from itertools import pairwise
from typing import Any

from services.core.events import WITHHELD_CALLER_IDS

UNASSIGNED = "unassigned"
US = 1_000_000

# docs/metrics.md, "How unanswered calls end": call.ended.reason -> the field
# that counts it; without a reason, abandoned if the customer ended it, else
# timed out.
REASONS = {
    "abandoned": "abandoned", "timeout": "timed_out", "closed": "closed", "full": "queue_full",
    "diverted": "diverted", "no_agents": "blocked_at_entry", "agents_left": "blocked_in_queue",
    "exit_key": "exited_by_key", "voicemail": "to_voicemail", "callback": "callbacks_accepted",
}  # fmt: skip
UNANSWERED = tuple(REASONS.values())
# the default misses: every unanswered outcome but closed calls and callbacks
MISSES = tuple(o for o in UNANSWERED if o not in ("closed", "callbacks_accepted"))
# calls that waited in the queue (the all-calls wait): not those refused at entry
QUEUED = ("answered", "abandoned", "timed_out", "blocked_in_queue", "exited_by_key",
          "to_voicemail", "callbacks_accepted")  # fmt: skip


def _exact_us(dt: datetime) -> int:
    from datetime import UTC

    delta = dt.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


@dataclass
class RefCall:
    call_id: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def of(self, typ: str, agent: str | None = None) -> list[dict[str, Any]]:
        out = [e for e in self.events if e["type"] == typ]
        if agent is not None:
            out = [e for e in out if e.get("agent_id") == agent]
        return sorted(out, key=lambda e: (e["_t"], e["event_id"]))


def _first(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    return events[0] if events else None


def held(call: RefCall, start: int, end: int, agent: str | None = None) -> int:
    """Sum of hold→resumed intervals inside [start, end]; an open hold ends at end."""
    marks = [
        e
        for e in call.events
        if e["type"] in ("call.hold", "call.resumed") and (agent is None or e["agent_id"] == agent)
    ]
    marks.sort(key=lambda e: (e["_t"], e["event_id"]))
    intervals = []
    on_hold_from = None
    for m in marks:
        if m["type"] == "call.hold" and on_hold_from is None:
            on_hold_from = m["_t"]
        elif m["type"] == "call.resumed" and on_hold_from is not None:
            intervals.append((on_hold_from, m["_t"]))
            on_hold_from = None
    if on_hold_from is not None:
        intervals.append((on_hold_from, end))
    return sum(max(0, min(b, end) - max(a, start)) for a, b in intervals)


def _per_call(
    raw_events: list[dict[str, Any]],
    team_of_queue: dict[str, str],
    short_abandon_seconds: int,
    fcr_window_hours: int,
    withheld_caller_ids: tuple[str, ...],
    by_bucket: bool,
) -> tuple[dict[str, dict[str, Any]], dict[str, RefCall], dict[str, dict[str, Any]],
           dict[str, dict[str, bool]], dict[tuple[Any, ...], int]]:  # fmt: skip
    """(unique events, calls, per-call facts, FCR per call, IVR abandons per entity)."""

    def customer(raw: str | None) -> str | None:
        """No customer when absent, or when any withheld pattern matches it whole."""
        if raw is None:
            return None
        stripped = raw.strip()
        if any(re.fullmatch(p, stripped, re.IGNORECASE) for p in withheld_caller_ids):
            return None
        return raw

    unique: dict[str, dict[str, Any]] = {}
    for e in raw_events:
        unique.setdefault(
            e["event_id"], {**e, "_t": _exact_us(datetime.fromisoformat(e["occurred_at"]))}
        )
    watermark = max((e["_t"] for e in unique.values()), default=0)
    calls: dict[str, RefCall] = {}
    for e in unique.values():
        if "call_id" in e:
            calls.setdefault(e["call_id"], RefCall(e["call_id"])).events.append(e)

    short = short_abandon_seconds * US
    window = fcr_window_hours * 3600 * US

    # --- per call facts -----------------------------------------------------
    info: dict[str, dict[str, Any]] = {}
    ivr: dict[tuple[Any, ...], int] = defaultdict(int)  # IVR abandons per entity
    for c in calls.values():
        offered = _first(c.of("call.offered"))
        if offered is None:
            left_ivr = _first(c.of("call.ivr_abandoned"))
            if left_ivr is not None:
                b = left_ivr["_t"] - left_ivr["_t"] % (60 * US)
                keys = [("center", "all")]
                if left_ivr.get("queue_id"):
                    q = left_ivr["queue_id"]
                    keys += [("team", team_of_queue.get(q, UNASSIGNED)), ("queue", q)]
                for key in keys:
                    ivr[(*key, b) if by_bucket else key] += 1
            continue
        t0 = offered["_t"]
        answers = c.of("call.answered")
        ended = _first(c.of("call.ended"))
        disps = c.of("call.disposition")
        f: dict[str, Any] = {
            "t0": t0,
            "queue": offered["queue_id"],
            "team": team_of_queue.get(offered["queue_id"], UNASSIGNED),
            "customer": customer(offered.get("customer_id")),
            "answered": bool(answers),
            "answered_at": answers[0]["_t"] if answers else None,
            "last_agent": answers[-1]["agent_id"] if answers else None,
            "ended_at": ended["_t"] if ended else None,
            "ended_by": ended["ended_by"] if ended else None,
            "unresolved": bool(disps) and disps[-1].get("resolved") is False,
            "complaint": bool(disps) and disps[-1].get("complaint") is True,
            "sale": (
                Fraction(str(disps[-1]["sale_amount"]))
                if disps and disps[-1].get("sale_amount")
                else None
            ),
            "score": c.of("survey.completed")[-1]["score"] if c.of("survey.completed") else None,
            "transferred": bool(c.of("call.transferred")),
        }
        stages = c.of("call.callback")
        took = [e["_t"] for e in stages if e["stage"] in ("accepted", "completed")]
        if ended is not None and ended.get("reason") == "callback":
            took.append(ended["_t"])
        done = [e["_t"] for e in stages if e["stage"] == "completed"]
        f["callback_offered"] = bool(stages) or bool(took)
        f["outcome"] = None  # answered, in queue: no unanswered outcome
        left = None
        if answers:
            f["wait"] = max(0, answers[0]["_t"] - t0)
        elif took:
            f["outcome"], left = "callbacks_accepted", min(took)
        elif ended is not None:
            reason = ended.get("reason")
            by_caller = ended["ended_by"] == "customer"
            f["outcome"] = REASONS[reason] if reason else "abandoned" if by_caller else "timed_out"
            left = ended["_t"]
        f["wait"] = f.get("wait", max(0, left - t0) if left is not None else None)
        f["callback_wait"] = (
            max(0, done[0] - left) if f["outcome"] == "callbacks_accepted" and done else None
        )
        f["abandoned"] = f["outcome"] == "abandoned"
        f["timed_out"] = f["outcome"] == "timed_out"
        f["short"] = f["abandoned"] and short > 0 and f["wait"] < short
        info[c.call_id] = f

    # --- FCR, per customer ------------------------------------------------------
    fcr: dict[str, dict[str, bool]] = {}
    by_customer: dict[str, list[str]] = defaultdict(list)
    for cid, f in info.items():
        if f["customer"] is not None:
            by_customer[f["customer"]].append(cid)
    for cids in by_customer.values():
        for cid in cids:
            f = info[cid]
            if not f["answered"]:
                continue
            repeated = any(
                other != cid
                and not info[other]["short"]
                and f["t0"] < info[other]["t0"] <= f["t0"] + window
                for other in cids
            )
            failed = repeated or f["unresolved"]
            final = failed or watermark > f["t0"] + window
            fcr[cid] = {"failed": failed, "final": final, "resolved": final and not failed}

    return unique, calls, info, fcr, ivr


def reference(
    raw_events: list[dict[str, Any]],
    *,
    team_of_queue: dict[str, str],
    service_level_seconds: int = 20,
    short_abandon_seconds: int = 5,
    fcr_window_hours: int = 72,
    satisfied_min_score: int = 4,
    max_state_hours: int = 12,
    team_of_agent: dict[str, str] | None = None,
    by_bucket: bool = False,
    withheld_caller_ids: tuple[str, ...] = WITHHELD_CALLER_IDS,
    answer_rate_misses: tuple[str, ...] = MISSES,
    service_level_misses: tuple[str, ...] = MISSES,
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Figures per (kind, id) — or per (kind, id, minute bucket) with by_bucket."""
    team_of_agent = team_of_agent or {}

    unique, calls, info, fcr, ivr = _per_call(raw_events, team_of_queue, short_abandon_seconds,
                                              fcr_window_hours, withheld_caller_ids, by_bucket)  # fmt: skip
    sl = service_level_seconds * US

    # --- group calls by entity ----------------------------------------------------
    groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    agent_groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for cid, f in info.items():
        b = f["t0"] - f["t0"] % (60 * US)
        for key in (("center", "all"), ("team", f["team"]), ("queue", f["queue"])):
            groups[(*key, b) if by_bucket else key].append(cid)
        agents = {
            e["agent_id"]
            for e in calls[cid].events
            if e["type"] in ("call.ringing", "call.answered")
        }
        for a in agents:
            agent_groups[(("agent", a, b) if by_bucket else ("agent", a))].append(cid)
            # the agent's figures in the call's queue (?by=queue): the same legs
            pair = ("agent_queue", f"{a}\x1f{f['queue']}")
            agent_groups[(*pair, b) if by_bucket else pair].append(cid)

    times = _agent_times(unique.values(), team_of_agent, by_bucket, max_state_hours * 3600 * US)
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key in set(groups) | set(ivr) | {k for k in times if k[0] in ("center", "team")}:
        cids = groups.get(key, [])
        out[key] = _call_figures(
            [info[c] for c in cids], [fcr.get(c) for c in cids], calls, cids, sl,
            (answer_rate_misses, service_level_misses),
        )  # fmt: skip
        out[key]["ivr_abandoned"] = ivr.get(key, 0)
        out[key] |= _outcome_figures([info[c] for c in cids], satisfied_min_score)
        if key[0] != "queue":  # queues have no agents
            out[key] |= _time_figures(times.get(key, {}), out[key]["answered"])
    for key in set(agent_groups) | {k for k in times if k[0] == "agent"}:
        cids = agent_groups.get(key, [])
        agent = key[1].split("\x1f")[0]
        out[key] = _agent_figures(agent, cids, calls, info, fcr)
        mine = [info[c] for c in cids if info[c]["last_agent"] == agent]
        out[key] |= _outcome_figures(mine, satisfied_min_score, answered=out[key]["answered"])
        if key[0] == "agent":  # time is the agent's, not a queue's
            out[key] |= _time_figures(times.get(key, {}), out[key]["answered"])
    return out


STATES = ("available", "on_call", "wrap_up", "not_ready")
MINUTE = 60 * US


def _agent_times(
    events: Any, team_of_agent: dict[str, str], by_bucket: bool, cap: int
) -> dict[tuple[Any, ...], dict[str, int]]:
    """Microseconds per state (and per not-ready reason), per entity: each state
    lasts from its event to the agent's next one, but no longer than `cap`; the
    last one is still open and not counted. Split by wall time, one microsecond
    at a time in spirit: here one minute at a time."""
    per_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["type"] == "agent.state":
            per_agent[e["agent_id"]].append(e)
    out: dict[tuple[Any, ...], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for agent, evs in per_agent.items():
        evs.sort(key=lambda e: (e["_t"], e["event_id"]))
        for cur, nxt in pairwise(evs):
            if cur["state"] == "logged_out":
                continue
            start, end = cur["_t"], min(nxt["_t"], cur["_t"] + cap)
            minute = start - start % MINUTE
            while minute < end:
                part = min(end, minute + MINUTE) - max(start, minute)
                for ent in (
                    ("agent", agent),
                    ("team", team_of_agent.get(agent, UNASSIGNED)),
                    ("center", "all"),
                ):
                    slot = out[(*ent, minute) if by_bucket else ent]
                    slot["logged_in"] += part
                    slot[cur["state"]] += part
                    if cur["state"] == "not_ready":
                        slot["reason:" + (cur.get("reason") or "unspecified")] += part
                minute += MINUTE
    return {k: dict(v) for k, v in out.items() if v["logged_in"]}


def _time_figures(t: dict[str, int], answered: int) -> dict[str, Any]:
    busy = t.get("on_call", 0) + t.get("wrap_up", 0)
    logged_in = t.get("logged_in", 0)
    return {
        "logged_in_seconds": float(Fraction(logged_in, US)),
        **{f"{s}_seconds": float(Fraction(t.get(s, 0), US)) for s in STATES},
        "not_ready_by_reason": {
            k.removeprefix("reason:"): float(Fraction(v, US))
            for k, v in sorted(t.items())
            if k.startswith("reason:") and v
        },
        "occupancy": _rate(busy, busy + t.get("available", 0)),
        "utilization": _rate(busy, logged_in),
        "calls_per_hour": None
        if not logged_in
        else float(Fraction(answered * 3600 * US, logged_in)),
    }


EDGES = (5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300)


def _bin_edge(wait_us: int) -> int | None:
    """Upper edge of the bin a wait falls in (None: beyond the last edge)."""
    for edge in EDGES:
        if wait_us <= edge * US:
            return edge
    return None


def _histogram(waits: list[int]) -> list[int]:
    edges = [_bin_edge(w) for w in waits]
    return [sum(1 for e in edges if e == edge) for edge in EDGES] + [edges.count(None)]


def _percentile(waits: list[int], percent: int) -> float | None:
    """The bin edge of the k-th shortest wait, k = ceil(percent% of n)."""
    if not waits:
        return None
    k = int(Fraction(len(waits) * percent, 100).__ceil__())
    edge = _bin_edge(sorted(waits)[k - 1])
    return float(edge if edge is not None else EDGES[-1])


def _outcome_figures(
    fs: list[dict[str, Any]], satisfied_min: int, answered: int | None = None
) -> dict[str, Any]:
    """Surveys and dispositions: the latest of each per call."""
    n_answered = sum(1 for f in fs if f["answered"]) if answered is None else answered
    surveys = [f["score"] for f in fs if f["score"] is not None]
    satisfied = sum(1 for s in surveys if s >= satisfied_min)
    sales = [f["sale"] for f in fs if f["sale"]]
    complaints = sum(1 for f in fs if f["complaint"])
    # cents, rounded half-even (Python's round on an exact Fraction)
    total = sum(round(s * 100) for s in sales)
    return {
        "surveys": len(surveys),
        "satisfied": satisfied,
        "csat": _rate(satisfied, len(surveys)),
        "survey_rate": _rate(len(surveys), n_answered),
        "complaints": complaints,
        "complaint_rate": _rate(complaints, n_answered),
        "sales": len(sales),
        "sales_amount": total / 100,
        "conversion_rate": _rate(len(sales), n_answered),
    }


def _rate(n: int, d: int) -> float | None:
    return None if d == 0 else float(Fraction(n, d))


def _mean_s(total_us: int, n: int) -> float | None:
    return None if n == 0 else float(Fraction(total_us, n * US))


def _fcr_fields(flags: list[dict[str, bool]], unidentified: int) -> dict[str, Any]:
    cand = len(flags)
    failed = sum(f["failed"] for f in flags)
    final = sum(f["final"] for f in flags)
    resolved = sum(f["resolved"] for f in flags)
    return {
        "fcr_candidates": cand,
        "fcr_final": final,
        "fcr_resolved": resolved,
        "fcr_rate": _rate(resolved, final),
        "fcr_rate_provisional": _rate(cand - failed, cand),
        "fcr_unidentified": unidentified,
    }


def _call_figures(
    fs: list[dict[str, Any]],
    fcrs: list[dict[str, bool] | None],
    calls: dict[str, RefCall],
    cids: list[str],
    sl: int,
    misses: tuple[tuple[str, ...], tuple[str, ...]],
) -> dict[str, Any]:
    answered = [f for f in fs if f["answered"]]
    abandoned = [f for f in fs if f["abandoned"]]
    short = [f for f in abandoned if f["short"]]
    timed_out = [f for f in fs if f["timed_out"]]
    n_of = {o: sum(1 for f in fs if f["outcome"] == o) for o in UNANSWERED}

    def base(counted: tuple[str, ...]) -> int:
        """answered + the counted unanswered outcomes, short abandons left out"""
        missed = [f for f in fs if f["outcome"] in counted and not f["short"]]
        return len(answered) + len(missed)

    every = len(answered) + sum(n_of.values())
    queued = [f for f in fs if (f["outcome"] if not f["answered"] else "answered") in QUEUED]
    completed = [f["callback_wait"] for f in fs if f["callback_wait"] is not None]
    handled = []
    for cid, f in zip(cids, fs, strict=True):
        if f["answered"] and f["ended_at"] is not None:
            start, end = f["answered_at"], max(f["ended_at"], f["answered_at"])
            hold = held(calls[cid], start, end)
            wraps = calls[cid].of("call.wrapup_ended")
            acw = max(0, wraps[-1]["_t"] - f["ended_at"]) if wraps else 0
            handled.append((max(0, end - start - hold), hold, acw))
    n = len(handled)
    talk, hold, acw = (sum(h[i] for h in handled) for i in range(3))
    within = sum(1 for f in answered if f["wait"] <= sl)
    return {
        "offered": len(fs),
        "answered": len(answered),
        "abandoned": len(abandoned),
        "short_abandoned": len(short),
        "timed_out": len(timed_out),
        "in_queue": sum(1 for f in fs if not f["answered"] and f["outcome"] is None),
        **{o: n_of[o] for o in UNANSWERED[2:-1]},
        "saturated": n_of["queue_full"] + n_of["diverted"],
        "blocked": n_of["blocked_at_entry"] + n_of["blocked_in_queue"],
        "answered_within_sl": within,
        "abandoned_within_sl": sum(1 for f in abandoned if f["wait"] <= sl),
        "answer_rate": _rate(len(answered), base(misses[0])),
        "service_level": _rate(within, base(misses[1])),
        "service_level_answered": _rate(within, len(answered)),
        "service_level_offered": _rate(within, every),
        "service_level_abandons_positive": _rate(
            within + sum(1 for f in abandoned if f["wait"] <= sl), every
        ),
        "asa_seconds": _mean_s(sum(f["wait"] for f in answered), len(answered)),
        "awt_seconds": _mean_s(sum(f["wait"] for f in queued), len(queued)),
        "callbacks_offered": sum(1 for f in fs if f["callback_offered"]),
        "callbacks_accepted": n_of["callbacks_accepted"],
        "callbacks_completed": len(completed),
        "avg_callback_wait_seconds": _mean_s(sum(completed), len(completed)),
        "wait_p50_seconds": _percentile([f["wait"] for f in answered], 50),
        "wait_p90_seconds": _percentile([f["wait"] for f in answered], 90),
        "wait_histogram": {
            "edges_seconds": list(EDGES),
            "answered": _histogram([f["wait"] for f in answered]),
            "abandoned": _histogram([f["wait"] for f in abandoned]),
        },
        "handled": n,
        "aht_seconds": _mean_s(talk + hold + acw, n),
        "avg_talk_seconds": _mean_s(talk, n),
        "avg_hold_seconds": _mean_s(hold, n),
        "avg_acw_seconds": _mean_s(acw, n),
        "transfers": sum(1 for f in fs if f["transferred"]),
        **_fcr_fields(
            [x for x in fcrs if x is not None],
            sum(1 for f in answered if f["customer"] is None),
        ),
    }


def _agent_figures(
    agent: str,
    cids: list[str],
    calls: dict[str, RefCall],
    info: dict[str, dict[str, Any]],
    fcr: dict[str, dict[str, bool]],
) -> dict[str, Any]:
    answered = rings = ring_total = transfers = 0
    legs: list[tuple[int, int]] = []  # (talk, hold)
    acw_total = 0
    for cid in cids:
        c, f = calls[cid], info[cid]
        mine_answers = c.of("call.answered", agent)
        mine_transfers = c.of("call.transferred", agent)
        if mine_transfers:
            transfers += 1
        if not mine_answers:
            continue
        answered += 1
        first = mine_answers[0]["_t"]
        before = [e["_t"] for e in c.of("call.ringing", agent) if e["_t"] <= first]
        if before:
            rings += 1
            ring_total += first - before[-1]
        last_end = None
        for a in mine_answers:
            start = a["_t"]
            later = [e["_t"] for e in mine_transfers if e["_t"] >= start]
            if later:
                end = later[0]
            elif f["ended_at"] is not None:
                end = max(f["ended_at"], start)
            else:
                continue
            hold = held(c, start, end, agent)
            legs.append((max(0, end - start - hold), hold))
            last_end = end
        if last_end is not None:
            wraps = c.of("call.wrapup_ended", agent)
            acw_total += max(0, wraps[-1]["_t"] - last_end) if wraps else 0
    presented = len(cids)
    n = len(legs)
    talk = sum(x[0] for x in legs)
    hold = sum(x[1] for x in legs)
    flags = [fcr[c] for c in cids if c in fcr and info[c]["last_agent"] == agent]
    return {
        "presented": presented,
        "answered": answered,
        "rona": presented - answered,
        "answer_rate": _rate(answered, presented),
        "avg_ring_seconds": _mean_s(ring_total, rings),
        "handled": n,
        "aht_seconds": _mean_s(talk + hold + acw_total, n),
        "avg_talk_seconds": _mean_s(talk, n),
        "avg_hold_seconds": _mean_s(hold, n),
        "avg_acw_seconds": _mean_s(acw_total, n),
        "transfers": transfers,
        **_fcr_fields(
            flags,
            sum(1 for c in cids if info[c]["last_agent"] == agent and info[c]["customer"] is None),
        ),
    }


# --- staffing: scheduled and staffed agents per interval ------------------------


def scheduled_per_interval(
    schedule_csv: str, tz: Any, edges: list[datetime], agents: set[str]
) -> list[float]:
    """Agents scheduled on the phones per interval, averaged, minute by minute:
    a minute of an agent counts when a `work` row covers it and no other row of
    the same agent-day does (breaks lie inside shifts). Exact for rows on whole
    minutes, as the simulator's plan is. Rows whose end is at or before their
    start end the next day; rows before a night shift's start are the next
    morning's."""
    from datetime import date, time, timedelta

    rows: dict[tuple[str, str], list[tuple[datetime, datetime, str]]] = defaultdict(list)
    for line in schedule_csv.strip().splitlines()[1:]:
        agent, day, start, end, activity = line.split(",")
        if agent not in agents or activity == "off":
            continue
        d = date.fromisoformat(day)
        s = datetime.combine(d, time.fromisoformat(start), tz)
        e = datetime.combine(d, time.fromisoformat(end), tz)
        if e <= s:
            e = datetime.combine(d + timedelta(days=1), time.fromisoformat(end), tz)
        rows[(agent, day)].append((s, e, activity))
    minutes: dict[datetime, int] = defaultdict(int)  # UTC minute -> agents on the phones
    for day_rows in rows.values():
        night = [s for s, e, _ in day_rows if e.date() > s.date()]
        fixed = []
        for s, e, what in day_rows:
            if night and e <= min(night):  # the next morning's
                s, e = s + timedelta(days=1), e + timedelta(days=1)
            fixed.append((s.astimezone(UTC), e.astimezone(UTC), what))
        work = [(s, e) for s, e, w in fixed if w == "work"]
        away = [(s, e) for s, e, w in fixed if w != "work"]
        for s, e in work:
            t = s
            while t < e:
                if not any(a <= t < b for a, b in away):
                    minutes[t] += 1
                t += timedelta(minutes=1)
    out = []
    for a, b in pairwise(edges):
        total = sum(n for t, n in minutes.items() if a <= t < b)
        out.append(total * 60 / (b - a).total_seconds())
    return out


def staffed_per_interval(
    raw_events: list[dict[str, Any]],
    team_of_agent: dict[str, str],
    team: str,
    edges: list[datetime],
    max_state_hours: int = 12,
) -> list[float]:
    """A team's agents available, on call or in wrap-up per interval, averaged:
    its minute buckets of agent time (`_agent_times`) summed over the interval."""
    events = [dict(e, _t=_exact_us(datetime.fromisoformat(e["occurred_at"]))) for e in raw_events]
    times = _agent_times(events, team_of_agent, True, max_state_hours * 3600 * US)
    out = []
    for a, b in pairwise(edges):
        lo, hi = _exact_us(a), _exact_us(b)
        busy = sum(
            t.get(s, 0)
            for key, t in times.items()
            if key[0] == "team" and key[1] == team and lo <= key[2] < hi
            for s in ("available", "on_call", "wrap_up")
        )
        out.append(busy / (hi - lo))
    return out


def call_views(
    raw_events: list[dict[str, Any]],
    *,
    team_of_queue: dict[str, str],
    short_abandon_seconds: int = 5,
    fcr_window_hours: int = 72,
    withheld_caller_ids: tuple[str, ...] = WITHHELD_CALLER_IDS,
) -> dict[str, dict[str, Any]]:
    """Each offered call as the drill-down should show it: outcome, wait, queue,
    team, FCR state, survey, complaint, transfer, agents presented."""
    _u, calls, info, fcr, _ivr = _per_call(raw_events, team_of_queue, short_abandon_seconds,
                                           fcr_window_hours, withheld_caller_ids, False)  # fmt: skip
    out = {}
    for cid, f in info.items():
        state = fcr.get(cid)
        if not f["answered"]:
            fcr_state = None
        elif f["customer"] is None:
            fcr_state = "unidentified"
        elif state is not None and state["failed"]:
            fcr_state = "not_resolved"
        elif state is not None and state["resolved"]:
            fcr_state = "resolved"
        else:
            fcr_state = "pending"
        out[cid] = {
            "outcome": "answered" if f["answered"] else f["outcome"] or "in_queue",
            "wait_seconds": None if f["wait"] is None else f["wait"] / US,
            "queue_id": f["queue"],
            "team": f["team"],
            "fcr": fcr_state,
            "survey_score": f["score"],
            "transferred": f["transferred"],
            "agents": sorted({e["agent_id"] for e in calls[cid].events
                              if e["type"] in ("call.ringing", "call.answered")}),
        }  # fmt: skip
    return out

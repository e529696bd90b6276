"""KPI math: rates and averages from summed counters. Pure functions.

Every figure is computed here and only here, from counters summed over any set
of minute buckets (a window, an interval, a payroll period), so the same window
gives the same number in the API, the intervals and Prometheus. A rate or an
average whose denominator is zero is ``None`` (JSON ``null``), never 0.
Definitions: docs/metrics.md.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Upper edges (seconds) of the queue-wait bins. A bin holds lo < wait <= hi (the
# first 0 <= wait <= 5), so "within T" for any edge T is a sum of whole bins and
# agrees with answered_within_sl, which counts wait <= threshold.
WAIT_BIN_EDGES: tuple[int, ...] = (5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300)
_BIN_LABELS = (*(str(e) for e in WAIT_BIN_EDGES), "inf")
ANSWERED_WAIT_BINS: tuple[str, ...] = tuple(f"answered_wait_{x}" for x in _BIN_LABELS)
ABANDONED_WAIT_BINS: tuple[str, ...] = tuple(f"abandoned_wait_{x}" for x in _BIN_LABELS)
AGENT_STATES: tuple[str, ...] = ("available", "on_call", "wrap_up", "not_ready")
AGENT_TIME_COUNTERS: tuple[str, ...] = ("logged_in_us", *(f"{s}_us" for s in AGENT_STATES))

# How a call that was offered and never answered ended: one counter each, by
# arrival (docs/metrics.md, "How unanswered calls end"). `call.ended.reason`
# names them in the contract (REASON_OUTCOME).
UNANSWERED_OUTCOMES: tuple[str, ...] = (
    "abandoned",  # the caller hung up while queued
    "timed_out",  # the queue's longest wait passed
    "closed",  # the queue was closed (its schedule): never queued
    "queue_full",  # the queue was full: never queued ("full" is an SQL keyword)
    "diverted",  # sent elsewhere by a load rule before queueing
    "blocked_at_entry",  # refused on entry: no agent could take it
    "blocked_in_queue",  # put out of the queue when its last agent left
    "exited_by_key",  # the caller pressed a key to leave
    "to_voicemail",  # the caller left for voicemail
    "callbacks_accepted",  # the caller left the queue to be called back
)
# call.ended.reason (the contract's words) -> the unanswered outcome it counts as
# (UNANSWERED_OUTCOMES). Without a reason: abandoned when ended_by is
# the customer, else timed_out, as before reasons existed.
REASON_OUTCOME: dict[str, str] = {
    "abandoned": "abandoned",
    "timeout": "timed_out",
    "closed": "closed",
    "full": "queue_full",
    "diverted": "diverted",
    "no_agents": "blocked_at_entry",
    "agents_left": "blocked_in_queue",
    "exit_key": "exited_by_key",
    "voicemail": "to_voicemail",
    "callback": "callbacks_accepted",
}
# Which of them count against the answer rate and the service level unless the
# settings say otherwise (kpi.answer_rate_misses, kpi.service_level_misses). What
# the seeds' centers mean by 接通率 (人工接通率: answered / calls that asked for an
# agent): a call nobody could answer because the queue was closed is no missed
# answer, and a callback is served later, by its own figures; every other way
# of not reaching an agent in service hours is a miss.
DEFAULT_MISSES: tuple[str, ...] = tuple(
    o for o in UNANSWERED_OUTCOMES if o not in ("closed", "callbacks_accepted")
)
# Outcomes of calls that waited in the queue before they left it: the average
# wait over all calls (awt_seconds) is over these, as Wazo's AWT is; the refused
# ones (closed, queue full, diverted, blocked at entry) never waited.
QUEUED_OUTCOMES: tuple[str, ...] = (
    "answered", "abandoned", "timed_out", "blocked_in_queue", "exited_by_key",
    "to_voicemail", "callbacks_accepted",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Bases:
    """The unanswered outcomes that count against the answer rate and against
    the service level (KpiDefinitions.bases). Applied when figures are read, so
    a change of setting applies to every period at once."""

    answer_rate: tuple[str, ...] = DEFAULT_MISSES
    service_level: tuple[str, ...] = DEFAULT_MISSES


DEFAULT_BASES = Bases()

# Additive counters kept per (entity kind, entity id, minute bucket).
# Durations are integer microseconds so sums are exact in any order.
COUNTERS: tuple[str, ...] = (
    # calls, by arrival (center, team, queue)
    "offered",
    "answered",
    "abandoned",
    "short_abandoned",
    "timed_out",
    "in_queue",
    *UNANSWERED_OUTCOMES[2:],  # closed … callbacks_accepted
    "answered_within_sl",
    "abandoned_within_sl",
    "wait_answered_us",
    # the all-calls average wait: calls that waited in the queue, and their waits
    "waited",
    "wait_all_us",
    # callbacks (offered to a queued caller; completed when it reached the caller)
    "callbacks_offered",
    "callbacks_completed",
    "callback_wait_us",
    # calls that hung up in the IVR before reaching a queue
    "ivr_abandoned",
    # handling (calls; an agent's own legs)
    "handled",
    "talk_us",
    "hold_us",
    "acw_us",
    "transfers",
    # agents
    "presented",
    "ring_count",
    "ring_us",
    # first-call resolution (fcr_unidentified: answered, but no customer to chain)
    "fcr_candidates",
    "fcr_final",
    "fcr_resolved",
    "fcr_failed",
    "fcr_unidentified",
    # surveys and dispositions (the latest of each per call counts)
    "surveys",
    "satisfied",
    "complaints",
    "sales",
    "sales_amount_cents",
    # agent time, split across minute buckets by wall time (services/core/agents.py)
    *AGENT_TIME_COUNTERS,
    # queue wait distribution: one count per call in the bin its wait falls in
    *ANSWERED_WAIT_BINS,
    *ABANDONED_WAIT_BINS,
)
FCR_COUNTERS: tuple[str, ...] = ("fcr_candidates", "fcr_final", "fcr_resolved", "fcr_failed")
# Agent time lives apart from call counters: as full-width call rows, a row for
# every logged-in agent-minute halved worker throughput (make bench: 19.6k → 10.3k
# events/s). Team and center time is in the narrow kpi_time_buckets; an agent's
# own time is its state segments (agent_segments, migration 0010). FCR counters have
# theirs (kpi_fcr_buckets) because a second stage writes them: as columns of the
# call rows, each FCR update rewrote a 50-column row and waited for call assembly's
# row locks on the same minutes.
CALL_COUNTERS: tuple[str, ...] = tuple(
    c for c in COUNTERS if c not in AGENT_TIME_COUNTERS and c not in FCR_COUNTERS
)
# Every read sums all three over the same buckets and merges them (agent reads add
# the segments' time: services/readmodel/queries.py).
COUNTER_TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kpi_buckets", CALL_COUNTERS),
    ("kpi_time_buckets", AGENT_TIME_COUNTERS),
    ("kpi_fcr_buckets", FCR_COUNTERS),
)


_EDGES_US = tuple(e * 1_000_000 for e in WAIT_BIN_EDGES)


def wait_bin(wait_us: int) -> int:
    """Index of the bin a wait of `wait_us` falls in (the last one is 300+ s)."""
    return bisect_left(_EDGES_US, wait_us)


def ratio(numerator: int | float, denominator: int | float) -> float | None:
    return None if not denominator else numerator / denominator


def mean_seconds(total_us: int, count: int) -> float | None:
    # One division of two exact integers: Python rounds it correctly, so the figure
    # is the float nearest the true mean, whatever order the sums were built in.
    return None if not count else total_us / (count * 1_000_000)


def counted_outcomes(c: Mapping[str, int], misses: tuple[str, ...] = DEFAULT_MISSES) -> int:
    """answered + the unanswered outcomes in `misses`, short abandons left out:
    the base of the answer rate (or, with the service level's misses, of it)."""
    base = c["answered"] + sum(c[m] for m in misses)
    return base - c["short_abandoned"] if "abandoned" in misses else base


def with_outcome(c: Mapping[str, int]) -> int:
    """Every offered call that has an outcome: answered or ended unanswered."""
    return c["answered"] + sum(c[o] for o in UNANSWERED_OUTCOMES)


def handle_us(c: Mapping[str, int]) -> int:
    """Handle time: talk, hold and after-call work (AHT's numerator)."""
    return c["talk_us"] + c["hold_us"] + c["acw_us"]


def _handling(c: Mapping[str, int]) -> dict[str, Any]:
    handled = c["handled"]
    return {
        "handled": handled,
        "aht_seconds": mean_seconds(handle_us(c), handled),
        "avg_talk_seconds": mean_seconds(c["talk_us"], handled),
        "avg_hold_seconds": mean_seconds(c["hold_us"], handled),
        "avg_acw_seconds": mean_seconds(c["acw_us"], handled),
        "transfers": c["transfers"],
    }


def _fcr(c: Mapping[str, int]) -> dict[str, Any]:
    cand = c["fcr_candidates"]
    return {
        "fcr_candidates": cand,
        "fcr_final": c["fcr_final"],
        "fcr_resolved": c["fcr_resolved"],
        "fcr_rate": ratio(c["fcr_resolved"], c["fcr_final"]),
        "fcr_rate_provisional": ratio(cand - c["fcr_failed"], cand),
        "fcr_unidentified": c["fcr_unidentified"],
    }


def _outcomes(c: Mapping[str, int]) -> dict[str, Any]:
    """Surveys (满意度) and dispositions (投诉, 营销), per answered call."""
    answered = c["answered"]
    return {
        "surveys": c["surveys"],
        "satisfied": c["satisfied"],
        "csat": ratio(c["satisfied"], c["surveys"]),
        "survey_rate": ratio(c["surveys"], answered),
        "complaints": c["complaints"],
        "complaint_rate": ratio(c["complaints"], answered),
        "sales": c["sales"],
        "sales_amount": c["sales_amount_cents"] / 100,
        "conversion_rate": ratio(c["sales"], answered),
    }


def _within(c: Mapping[str, int], bins: tuple[str, ...], threshold_s: int) -> int:
    return sum(c[b] for b, edge in zip(bins, WAIT_BIN_EDGES, strict=False) if edge <= threshold_s)


def wait_percentile(c: Mapping[str, int], percent: int) -> float | None:
    """The upper edge of the bin holding the ceil(percent% · n)-th shortest answered
    wait: "percent% of answered calls waited at most this long". A percentile in
    the open 300+ s bin reports 300 (as Prometheus' histogram_quantile does)."""
    n = sum(c[b] for b in ANSWERED_WAIT_BINS)
    if not n:
        return None
    rank = -(-n * percent // 100)  # ceil, in integers
    seen = 0
    for i, b in enumerate(ANSWERED_WAIT_BINS):
        seen += c[b]
        if seen >= rank:
            return float(WAIT_BIN_EDGES[min(i, len(WAIT_BIN_EDGES) - 1)])
    raise AssertionError("unreachable: the bins sum to n")


def _service_levels(
    c: Mapping[str, int], sl_seconds: int | None, misses: tuple[str, ...]
) -> dict[str, Any]:
    """The four service-level variants side by side (docs/metrics.md). With
    `sl_seconds` (a bin edge), "within" comes from the wait histograms instead of
    the counters kept at the configured threshold."""
    if sl_seconds is None:
        within, abandoned_within = c["answered_within_sl"], c["abandoned_within_sl"]
    else:
        within = _within(c, ANSWERED_WAIT_BINS, sl_seconds)
        abandoned_within = _within(c, ABANDONED_WAIT_BINS, sl_seconds)
    every = with_outcome(c)
    return {
        "answered_within_sl": within,
        "abandoned_within_sl": abandoned_within,
        "service_level": ratio(within, counted_outcomes(c, misses)),
        "service_level_answered": ratio(within, c["answered"]),
        "service_level_offered": ratio(within, every),
        "service_level_abandons_positive": ratio(within + abandoned_within, every),
    }


def _unanswered(c: Mapping[str, int]) -> dict[str, Any]:
    """How the calls that were not answered ended, and the peers' groupings."""
    # callbacks_accepted, the last, is shown with the other callback figures
    out: dict[str, Any] = {o: c[o] for o in UNANSWERED_OUTCOMES[2:-1]}
    out["saturated"] = c["queue_full"] + c["diverted"]
    out["blocked"] = c["blocked_at_entry"] + c["blocked_in_queue"]
    return out


def _callbacks(c: Mapping[str, int]) -> dict[str, Any]:
    return {
        "callbacks_offered": c["callbacks_offered"],
        "callbacks_accepted": c["callbacks_accepted"],
        "callbacks_completed": c["callbacks_completed"],
        "avg_callback_wait_seconds": mean_seconds(c["callback_wait_us"], c["callbacks_completed"]),
        "ivr_abandoned": c["ivr_abandoned"],
    }


def _waits(c: Mapping[str, int]) -> dict[str, Any]:
    return {
        "wait_p50_seconds": wait_percentile(c, 50),
        "wait_p90_seconds": wait_percentile(c, 90),
        "wait_histogram": {
            "edges_seconds": list(WAIT_BIN_EDGES),
            "answered": [c[b] for b in ANSWERED_WAIT_BINS],
            "abandoned": [c[b] for b in ABANDONED_WAIT_BINS],
        },
    }


def agent_time(c: Mapping[str, int], reasons: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Time in each agent state (出勤, 在线繁忙度, 人工利用率, 小时接听量)."""
    busy = c["on_call_us"] + c["wrap_up_us"]
    logged_in = c["logged_in_us"]
    out: dict[str, Any] = {f"{n[:-3]}_seconds": c[n] / 1_000_000 for n in AGENT_TIME_COUNTERS}
    out["not_ready_by_reason"] = {
        r: us / 1_000_000 for r, us in sorted((reasons or {}).items()) if us
    }
    out["occupancy"] = ratio(busy, busy + c["available_us"])
    out["utilization"] = ratio(busy, logged_in)
    # answered / (logged_in_us / 3.6e9 µs per hour), as one division of integers
    out["calls_per_hour"] = ratio(c["answered"] * 3_600_000_000, logged_in)
    return out


def call_metrics(
    c: Mapping[str, int], sl_seconds: int | None = None, bases: Bases = DEFAULT_BASES
) -> dict[str, Any]:
    """Figures for a center, team or queue."""
    return {
        "offered": c["offered"],
        "answered": c["answered"],
        "abandoned": c["abandoned"],
        "short_abandoned": c["short_abandoned"],
        "timed_out": c["timed_out"],
        "in_queue": c["in_queue"],
        **_unanswered(c),
        "answer_rate": ratio(c["answered"], counted_outcomes(c, bases.answer_rate)),
        **_service_levels(c, sl_seconds, bases.service_level),
        "asa_seconds": mean_seconds(c["wait_answered_us"], c["answered"]),
        "awt_seconds": mean_seconds(c["wait_all_us"], c["waited"]),
        **_waits(c),
        **_callbacks(c),
        **_handling(c),
        **_fcr(c),
        **_outcomes(c),
    }


def agent_metrics(c: Mapping[str, int]) -> dict[str, Any]:
    """Figures for one agent's own legs."""
    return {
        "presented": c["presented"],
        "answered": c["answered"],
        "rona": c["presented"] - c["answered"],
        "answer_rate": ratio(c["answered"], c["presented"]),
        "avg_ring_seconds": mean_seconds(c["ring_us"], c["ring_count"]),
        **_handling(c),
        **_fcr(c),
        **_outcomes(c),
    }


def metrics_for(
    kind: str,
    c: Mapping[str, int],
    reasons: Mapping[str, int] | None = None,
    sl_seconds: int | None = None,
    bases: Bases = DEFAULT_BASES,
) -> dict[str, Any]:
    """Every figure of an entity. Queues have no agents, so no agent time; an
    agent in one queue (agent_queue) has no time of its own either: agents are not
    assigned to queues."""
    if kind == "agent":
        return agent_metrics(c) | agent_time(c, reasons)
    if kind == "agent_queue":
        return agent_metrics(c)
    if kind == "queue":
        return call_metrics(c, sl_seconds, bases)
    return call_metrics(c, sl_seconds, bases) | agent_time(c, reasons)


def zero_counters() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)


# An agent's figures that are one value (the nested not-ready breakdown is left
# out): the payroll CSV's figure columns and what a scorecard may score. Derived
# from the catalogue, so a new figure becomes a new column at the end.
AGENT_FIELDS: tuple[str, ...] = tuple(
    k for k, v in metrics_for("agent", zero_counters()).items() if not isinstance(v, dict)
)


def sum_counters(rows: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total = zero_counters()
    for row in rows:
        for name in COUNTERS:
            total[name] += int(row.get(name) or 0)
    return total

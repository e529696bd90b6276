"""KPI math: rates and averages from summed counters. Pure functions.

Every figure is computed here and only here, from counters summed over any set
of minute buckets (a window, an interval, a payroll period), so the same window
gives the same number in the API, the intervals and Prometheus. A rate or an
average whose denominator is zero is ``None`` (JSON ``null``), never 0.
Definitions: docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    "answered_within_sl",
    "abandoned_within_sl",
    "wait_answered_us",
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
    # first-call resolution
    "fcr_candidates",
    "fcr_final",
    "fcr_resolved",
    "fcr_failed",
    # surveys and dispositions (the latest of each per call counts)
    "surveys",
    "satisfied",
    "complaints",
    "sales",
    "sales_amount_cents",
)


def ratio(numerator: int | float, denominator: int | float) -> float | None:
    return None if not denominator else numerator / denominator


def mean_seconds(total_us: int, count: int) -> float | None:
    # One division of two exact integers: Python rounds it correctly, so the figure
    # is the float nearest the true mean, whatever order the sums were built in.
    return None if not count else total_us / (count * 1_000_000)


def counted_outcomes(c: Mapping[str, int]) -> int:
    """answered + abandoned − short_abandoned + timed_out: the answer-rate base."""
    return c["answered"] + c["abandoned"] - c["short_abandoned"] + c["timed_out"]


def _handling(c: Mapping[str, int]) -> dict[str, Any]:
    handled = c["handled"]
    return {
        "handled": handled,
        "aht_seconds": mean_seconds(c["talk_us"] + c["hold_us"] + c["acw_us"], handled),
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


def call_metrics(c: Mapping[str, int]) -> dict[str, Any]:
    """Figures for a center, team or queue."""
    base = counted_outcomes(c)
    with_outcome = c["answered"] + c["abandoned"] + c["timed_out"]
    return {
        "offered": c["offered"],
        "answered": c["answered"],
        "abandoned": c["abandoned"],
        "short_abandoned": c["short_abandoned"],
        "timed_out": c["timed_out"],
        "in_queue": c["in_queue"],
        "answered_within_sl": c["answered_within_sl"],
        "abandoned_within_sl": c["abandoned_within_sl"],
        "answer_rate": ratio(c["answered"], base),
        "service_level": ratio(c["answered_within_sl"], base),
        # the same threshold, as peers define service level (docs/metrics.md)
        "service_level_answered": ratio(c["answered_within_sl"], c["answered"]),
        "service_level_offered": ratio(c["answered_within_sl"], with_outcome),
        "service_level_abandons_positive": ratio(
            c["answered_within_sl"] + c["abandoned_within_sl"], with_outcome
        ),
        "asa_seconds": mean_seconds(c["wait_answered_us"], c["answered"]),
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


def metrics_for(kind: str, c: Mapping[str, int]) -> dict[str, Any]:
    return agent_metrics(c) if kind == "agent" else call_metrics(c)


def zero_counters() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)


def sum_counters(rows: list[Mapping[str, int]]) -> dict[str, int]:
    total = zero_counters()
    for row in rows:
        for name in COUNTERS:
            total[name] += int(row.get(name) or 0)
    return total

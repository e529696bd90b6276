from __future__ import annotations

from services.core.kpi import agent_metrics, call_metrics, ratio, zero_counters


def test_empty_denominators_give_none_not_zero() -> None:
    m = call_metrics(zero_counters())
    for name in (
        "answer_rate",
        "service_level",
        "asa_seconds",
        "aht_seconds",
        "fcr_rate",
        "fcr_rate_provisional",
    ):
        assert m[name] is None, name
    a = agent_metrics(zero_counters())
    assert a["answer_rate"] is None and a["avg_ring_seconds"] is None and a["rona"] == 0


def test_answer_rate_ignores_short_abandons_and_counts_timeouts_against() -> None:
    c = zero_counters() | {"answered": 85, "abandoned": 20, "short_abandoned": 10, "timed_out": 5,
                           "answered_within_sl": 80}  # fmt: skip
    m = call_metrics(c)
    assert m["answer_rate"] == 85 / 100
    assert m["service_level"] == 80 / 100


def test_averages_are_sums_over_counts_never_averages_of_averages() -> None:
    c = zero_counters() | {"handled": 3, "talk_us": 300_000_000, "hold_us": 30_000_000, "acw_us": 60_000_000,
                           "answered": 4, "wait_answered_us": 10_000_000}  # fmt: skip
    m = call_metrics(c)
    assert m["aht_seconds"] == 130.0 and m["avg_hold_seconds"] == 10.0 and m["asa_seconds"] == 2.5


def test_provisional_fcr_counts_failures_known_so_far() -> None:
    c = zero_counters() | {"fcr_candidates": 10, "fcr_failed": 2, "fcr_final": 4, "fcr_resolved": 3}
    m = call_metrics(c)
    assert m["fcr_rate_provisional"] == 0.8 and m["fcr_rate"] == 0.75
    assert ratio(1, 0) is None

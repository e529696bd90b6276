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


def test_service_level_variants_side_by_side_on_one_hand_worked_interval() -> None:
    # 80 answered (70 within T), 20 abandoned (10 of them short, 15 within T), 5 timed out
    c = zero_counters() | {"answered": 80, "answered_within_sl": 70, "abandoned": 20, "short_abandoned": 10,
                           "abandoned_within_sl": 15, "timed_out": 5}  # fmt: skip
    m = call_metrics(c)
    assert m["service_level"] == 70 / 95
    assert m["service_level_answered"] == 70 / 80
    assert m["service_level_offered"] == 70 / 105
    assert m["service_level_abandons_positive"] == 85 / 105


def test_csat_survey_complaint_and_conversion_rates_are_per_answered_call() -> None:
    c = zero_counters() | {"answered": 50, "surveys": 20, "satisfied": 19, "complaints": 1, "sales": 5,
                           "sales_amount_cents": 123_456}  # fmt: skip
    m = call_metrics(c)
    assert (m["csat"], m["survey_rate"], m["complaint_rate"], m["conversion_rate"]) == (
        0.95,
        0.4,
        0.02,
        0.1,
    )
    assert m["sales_amount"] == 1234.56

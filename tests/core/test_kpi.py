from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.core.kpi import (
    UNANSWERED_OUTCOMES,
    Bases,
    agent_metrics,
    agent_time,
    call_metrics,
    ratio,
    wait_bin,
    wait_percentile,
    zero_counters,
)
from services.core.settings import KpiDefinitions

# One hand-worked hour of a queue with every way a call can end unanswered.
# answered 60 (50 within T; waits 600 s in all), abandoned 10 (4 short, 3 within
# T), timed out 2, closed 8, full 3, diverted 1, blocked at entry 2, blocked in
# queue 1, exited by key 2, voicemail 1, callbacks accepted 5 (3 completed,
# 900 s of callback wait). Waits of the calls that queued: 600 + 240 = 840 s over
# answered + abandoned + timed out + blocked in queue + key + voicemail + callback
# = 60 + 10 + 2 + 1 + 2 + 1 + 5 = 81 calls.
HOUR = zero_counters() | {
    "offered": 96, "answered": 60, "answered_within_sl": 50, "wait_answered_us": 600_000_000,
    "abandoned": 10, "short_abandoned": 4, "abandoned_within_sl": 3, "timed_out": 2,
    "closed": 8, "queue_full": 3, "diverted": 1, "blocked_at_entry": 2, "blocked_in_queue": 1,
    "exited_by_key": 2, "to_voicemail": 1, "callbacks_accepted": 5, "callbacks_offered": 7,
    "callbacks_completed": 3, "callback_wait_us": 900_000_000, "waited": 81,
    "wait_all_us": 840_000_000, "ivr_abandoned": 9,
}  # fmt: skip


def test_closed_calls_and_callbacks_are_no_missed_answers_by_default() -> None:
    """接通率 as the seeds' centers mean it: the misses are abandons (short ones
    left out), timeouts, full, diverted, blocked, key exits and voicemail: 10 − 4
    + 2 + 3 + 1 + 2 + 1 + 2 + 1 = 18; closed calls (8) and callbacks (5) are not."""
    m = call_metrics(HOUR)
    assert m["answer_rate"] == 60 / (60 + 18)
    assert m["service_level"] == 50 / (60 + 18)
    # every call with an outcome: 60 + 10 + 2 + 8 + 3 + 1 + 2 + 1 + 2 + 1 + 5 = 95
    assert m["service_level_offered"] == 50 / 95
    assert m["service_level_abandons_positive"] == 53 / 95
    assert (m["saturated"], m["blocked"], m["closed"], m["exited_by_key"]) == (4, 3, 8, 2)


def test_wazos_answered_rate_is_one_setting_away() -> None:
    """wazo-call-logd (database/queries/queue_stat.py): answered / (answered +
    abandoned + full + leaveempty + joinempty + timeout): closed, diverted and
    every abandon as logged; with short_abandon_seconds 0 there are no short ones."""
    wazo = Bases(answer_rate=("abandoned", "timed_out", "queue_full", "blocked_at_entry",
                              "blocked_in_queue"))  # fmt: skip
    hour = HOUR | {"short_abandoned": 0}
    assert call_metrics(hour, bases=wazo)["answer_rate"] == 60 / (60 + 10 + 3 + 1 + 2 + 2)


def test_awt_is_the_mean_wait_of_every_call_that_queued() -> None:
    m = call_metrics(HOUR)
    assert m["awt_seconds"] == 840 / 81 and m["asa_seconds"] == 10.0
    assert m["avg_callback_wait_seconds"] == 300.0 and m["ivr_abandoned"] == 9
    assert call_metrics(zero_counters())["awt_seconds"] is None


def test_the_misses_settings_name_only_unanswered_outcomes() -> None:
    assert set(KpiDefinitions().answer_rate_misses) == set(UNANSWERED_OUTCOMES) - {
        "closed", "callbacks_accepted",
    }  # fmt: skip
    with pytest.raises(ValidationError, match="'answered' is not an unanswered outcome"):
        KpiDefinitions(answer_rate_misses=("abandoned", "answered"))
    with pytest.raises(ValidationError, match="listed twice"):
        KpiDefinitions(service_level_misses=("closed", "closed"))
    defs = KpiDefinitions(answer_rate_misses=("abandoned",), service_level_misses=())
    assert defs.bases == Bases(("abandoned",), ())
    assert call_metrics(HOUR, bases=defs.bases)["service_level"] == 50 / 60


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


def test_a_wait_on_a_bin_edge_falls_in_the_bin_below_like_the_service_level_count() -> None:
    s = 1_000_000
    assert [wait_bin(w) for w in (0, 5 * s, 5 * s + 1, 20 * s, 300 * s, 300 * s + 1)] == [
        0, 0, 1, 3, 10, 11,
    ]  # fmt: skip


def test_wait_percentiles_report_the_upper_edge_of_the_bin_holding_the_rank() -> None:
    # 10 answered calls: 4 within 5 s, 5 within 10-15 s, 1 beyond 300 s
    c = zero_counters() | {"answered_wait_5": 4, "answered_wait_15": 5, "answered_wait_inf": 1}
    assert wait_percentile(c, 50) == 15.0  # the 5th shortest is in (10, 15]
    assert wait_percentile(c, 40) == 5.0  # the 4th is in [0, 5]
    assert wait_percentile(c, 90) == 15.0
    assert wait_percentile(c, 100) == 300.0  # the open bin reports its lower edge
    assert wait_percentile(zero_counters(), 50) is None


def test_service_level_at_another_edge_comes_from_the_histograms() -> None:
    c = zero_counters() | {"answered": 10, "abandoned": 2, "answered_within_sl": 4,
                           "answered_wait_5": 4, "answered_wait_30": 5, "answered_wait_60": 1,
                           "abandoned_wait_10": 1, "abandoned_wait_90": 1}  # fmt: skip
    at_default = call_metrics(c)
    at_30 = call_metrics(c, sl_seconds=30)
    assert at_default["answered_within_sl"] == 4 and at_30["answered_within_sl"] == 9
    assert at_30["abandoned_within_sl"] == 1
    assert at_30["service_level"] == 9 / 12
    assert at_30["service_level_answered"] == 9 / 10
    assert at_30["service_level_abandons_positive"] == 10 / 12


def test_agent_time_rates_use_busy_time_over_the_right_base() -> None:
    m = 60_000_000
    c = zero_counters() | {"answered": 6, "logged_in_us": 120 * m, "on_call_us": 60 * m,
                           "wrap_up_us": 15 * m, "available_us": 25 * m,
                           "not_ready_us": 20 * m}  # fmt: skip
    t = agent_time(c, {"lunch": 20 * m, "break": 0})
    assert t["occupancy"] == 75 / 100  # (on call + wrap-up) / (those + available)
    assert t["utilization"] == 75 / 120  # over all logged-in time, not-ready included
    assert t["calls_per_hour"] == 3.0  # 6 answered in 2 logged-in hours
    assert t["not_ready_by_reason"] == {"lunch": 1200.0}  # zero reasons are left out
    assert agent_time(zero_counters())["occupancy"] is None

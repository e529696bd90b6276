"""Scorecard and commission arithmetic against examples worked by hand from the
seeds' rules (docs/payroll.md#scorecards), including caps, bands and both
commission modes. Every expected figure below is written out as the clerk's sum."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.kpi import AGENT_FIELDS
from services.core.staffing import SCHEDULE_FIELDS
from services.payroll.scorecard import (
    Bands,
    Commission,
    Item,
    Penalty,
    ScorecardError,
    Scorecards,
    band_units,
    columns,
    commission,
    load,
    penalty_points,
    score_agents,
    target_score,
)

EXAMPLE = Path(__file__).parents[2] / "deploy/config/scorecard.example.yaml"
D = Decimal

ANSWER_RATE = Item(id="answer_rate", metric="answer_rate", target=D("0.95"), step=D("0.01"),
                   points_worse=D(1), points_better=D(1), max_deduction=D(30))  # fmt: skip
RESPONSE = Item(id="response", metric="avg_ring_seconds", target=D(3), lower_is_better=True,
                points_worse=D(2), points_better=D(2))  # fmt: skip
SATISFACTION = Item(id="csat", metric="csat", target=D("0.98"), step=D("0.01"))
TIERS = [{"up_to": 100_000, "rate": "0.01"}, {"up_to": 200_000, "rate": "0.015"}, {"rate": "0.02"}]
PROGRESSIVE = Commission(mode="progressive", tiers=TIERS)
WHOLE = Commission(mode="whole_amount", tiers=TIERS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.95", "100"),  # on target
        ("0.935", "98.5"),  # 1.5 points below: −1 per point
        ("0.972", "102.2"),  # 2.2 above: +1 per point
        ("0.60", "70"),  # 35 below, but at most −30
    ],
)
def test_answer_rate_loses_and_gains_a_point_per_percent_capped_at_30(
    value: str, expected: str
) -> None:
    assert target_score(ANSWER_RATE, D(value)) == D(expected)


def test_whole_steps_count_only_completed_steps() -> None:
    whole = ANSWER_RATE.model_copy(update={"whole_steps": True})
    assert target_score(whole, D("0.935")) == D(99)  # one whole step below, not 1.5
    assert target_score(whole, D("0.979")) == D(102)  # two whole steps above


def test_response_time_is_lower_is_better_two_points_per_second() -> None:
    assert target_score(RESPONSE, D("4.5")) == D(97)  # 1.5 s slow: 100 − 2 × 1.5
    assert target_score(RESPONSE, D(2)) == D(102)  # 1 s fast: 100 + 2


def test_satisfaction_above_target_earns_nothing_without_points_better() -> None:
    assert target_score(SATISFACTION, D("0.95")) == D(97)
    assert target_score(SATISFACTION, D("0.99")) == D(100)


def test_complaints_by_level_deduct_3_5_8_at_most_30_in_all() -> None:
    p = Penalty(id="complaints", max=D(30),
                points={"complaints": D(3), "manual.city": D(5), "manual.province": D(8)})  # fmt: skip
    assert penalty_points(p, {"complaints": 2, "manual.city": 1, "manual.province": 1}) == 19
    assert penalty_points(p, {"complaints": 5, "manual.city": 2, "manual.province": 1}) == 30
    # no upload of escalations: none counted, the telephony's complaints still are
    assert penalty_points(p, {"complaints": 1}) == 3


@pytest.mark.parametrize(
    ("total", "units"),
    [
        ("92.5", "125"),  # 2.5 points above 90, 50 units each
        ("90", "0"),
        ("85", "0"),  # between the lines: neither bonus nor deduction
        ("80", "0"),
        ("79.99", "-0.5"),
        ("76", "-200"),  # 4 points below 80
    ],
)
def test_bands_pay_50_units_per_point_above_90_and_take_them_below_80(
    total: str, units: str
) -> None:
    assert band_units(Bands(), D(total)) == D(units)


@pytest.mark.parametrize(
    ("amount", "progressive", "whole"),
    [
        ("80000", "800.00", "800.00"),
        ("100000", "1000.00", "1000.00"),  # the bound belongs to the lower tier
        ("100000.01", "1000.00", "1500.00"),  # 1000 + 0.01 × 1.5% = 1000.00015
        ("150000", "1750.00", "2250.00"),  # 1000 + 50,000 × 1.5%
        ("250000", "3500.00", "5000.00"),  # 1000 + 1500 + 50,000 × 2%
        ("0", "0.00", "0.00"),
    ],
)
def test_commission_tiers_progressive_and_whole_amount(
    amount: str, progressive: str, whole: str
) -> None:
    assert commission(PROGRESSIVE, D(amount)) == D(progressive)
    assert commission(WHOLE, D(amount)) == D(whole)


@given(
    st.decimals(min_value=0, max_value=10**7, places=2),
    st.decimals(min_value=0, max_value=10**5, places=2),
)
def test_progressive_commission_rises_with_the_amount_and_never_exceeds_whole(
    amount: Decimal, more: Decimal
) -> None:
    assert commission(PROGRESSIVE, amount) <= commission(PROGRESSIVE, amount + more)
    assert commission(PROGRESSIVE, amount) <= commission(WHOLE, amount)


def _example_agents() -> dict[str, dict[str, Any]]:
    blank: dict[str, Any] = dict.fromkeys(AGENT_FIELDS)
    return {
        "b00": blank | {
            "team": "billing", "answer_rate": 0.935, "csat": 0.95, "avg_ring_seconds": 4.5,
            "answered": 320, "fcr_rate": 0.90, "complaints": 1,
            "manual.callback_rate": 0.97, "manual.qa_score": 92,
            "manual.complaints_city": 1, "attendance_rate": 0.95, "absent_shifts": 1,
        },
        "t00": blank | {
            "team": "tech", "answer_rate": 0.97, "csat": 1.0, "avg_ring_seconds": 2.0,
            "answered": 400, "fcr_rate": 0.99, "complaints": 0,
        },
        # a seller answering more calls than anyone: not in customer_service's best
        "s00": blank | {
            "team": "sales", "answer_rate": 0.95, "conversion_rate": 0.08, "answered": 1000,
            "sales": 80, "sales_amount": 250000.0, "complaints": 0,
        },
        "s01": blank | {
            "team": "sales", "answer_rate": 0.90, "conversion_rate": 0.05, "answered": 500,
            "sales": 20, "sales_amount": 150000.0, "complaints": 11,
        },
        "x99": blank | {"team": "unassigned", "answered": 5},
    }  # fmt: skip


def test_example_scorecard_scores_agents_as_worked_by_hand() -> None:
    cards = load(EXAMPLE, {*AGENT_FIELDS, *SCHEDULE_FIELDS})
    scores = score_agents(cards, _example_agents())

    b00 = scores["b00"]
    # items: 98.5, 97, 97, 320 × 100 / 400 = 80, fcr 86% + 4 = 104, callback 99% − 2 × 2 = 96,
    # QA 92, attendance 95% of shifts = 100 − 5 × 2 = 90. The data part, weights .20 .20
    # .15 .15 .10 .05 .05: 19.7 + 19.4 + 14.55 + 12 + 10.4 + 4.8 + 4.5 = 85.35, / 0.90 =
    # 94.83; the listening part: QA 92. 94.83 × 0.85 + 92 × 0.15 = 80.6055 + 13.8 = 94.41;
    # penalties: complaints 3 + 5, one absent shift (from the schedule) 5 = 13
    assert b00["scorecard"] == "customer_service"
    assert [b00[f"score.{i}"] for i in ("answer_rate", "satisfaction", "response_time",
            "calls_answered", "fcr", "callback_rate", "quality", "attendance")] == [
        98.5, 97, 97, 80, 104, 96, 92, 90]  # fmt: skip
    assert b00["penalty.complaints"] == 8 and b00["penalty.absences"] == 5
    assert (b00["part.data"], b00["part.listening"]) == (94.83, 92)
    assert b00["score_total"] == 81.41
    assert b00["score_units"] == 0  # between 80 and 90

    t00 = scores["t00"]
    # 102, 100 (no points above 98%), 102, 100 (the best), fcr 113 capped at 110,
    # callback not uploaded and no schedule: skipped; QA not sampled: base 100. The
    # data part: (20.4 + 20 + 15.3 + 15 + 11) / 0.80 = 81.7 / 0.8 = 102.125 → 102.13;
    # 102.13 × 0.85 + 100 × 0.15 = 86.8105 + 15 = 101.8105
    assert t00["score.callback_rate"] is None and t00["score.quality"] == 100
    assert t00["score.fcr"] == 110
    assert t00["part.data"] == 102.13
    assert t00["score_total"] == 101.81
    assert t00["score_units"] == 590.5  # (101.81 − 90) × 50

    s00, s01 = scores["s00"], scores["s01"]
    # sales: answer 100, conversion 8% vs 6%: +2 steps × 5 = 110, sales 80 is the best: 100
    assert (s00["score_total"], s00["commission"]) == (103.33, 3500.0)  # 310 / 3
    # 95, 95, 20 × 100 / 80 = 25 → 215 / 3 = 71.666… → 71.67; complaints 11 × 3 = 33 → 30
    assert s01["penalty.complaints"] == 30
    assert s01["score_total"] == 41.67
    assert s01["score_units"] == -1916.5  # (80 − 41.67) × 50
    assert s01["commission"] == 1750.0

    assert scores["x99"] == {"scorecard": None}


def test_item_scores_round_half_up_to_cents() -> None:
    # 93.125%: 100 − 1.875 = 98.125 → 98.13 (half up, not half even)
    cards = Scorecards.model_validate(
        {"scorecards": [{"role": "r", "items": [ANSWER_RATE.model_dump()]}]}
    )
    scores = score_agents(cards, {"a": {"team": "t", "answer_rate": 0.93125}})
    assert scores["a"]["score.answer_rate"] == 98.13


def test_missing_values_skip_zero_or_base() -> None:
    items = [ANSWER_RATE.model_dump(), SATISFACTION.model_dump()]
    for missing, total in (("skip", 98.5), ("zero", 49.25), ("base", 99.25)):
        items[1]["missing"] = missing
        cards = Scorecards.model_validate({"scorecards": [{"role": "r", "items": items}]})
        got = score_agents(cards, {"a": {"team": "t", "answer_rate": 0.935, "csat": None}})
        assert got["a"]["score_total"] == total, missing


def test_relative_item_with_nobody_scoring_is_missing_not_zero_division() -> None:
    item = {"id": "calls", "metric": "answered", "relative": True}
    cards = Scorecards.model_validate({"scorecards": [{"role": "r", "items": [item]}]})
    got = score_agents(cards, {"a": {"team": "t", "answered": 0}})
    assert got["a"]["score.calls"] is None and got["a"]["score_total"] is None


def test_unknown_metric_is_refused_naming_the_file_and_role(tmp_path: Path) -> None:
    path = tmp_path / "cards.yaml"
    path.write_text("scorecards:\n  - role: cs\n    items:\n"
                    "      - {id: a, metric: answer_rte, target: 0.9}\n")  # fmt: skip
    with pytest.raises(
        ScorecardError, match=r"cards.yaml: scorecards\[0\] \(cs\): unknown metric 'answer_rte'"
    ):
        load(path, set(AGENT_FIELDS))


def test_tiers_out_of_order_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "cards.yaml"
    path.write_text("scorecards:\n  - role: s\n    commission:\n      tiers:\n"
                    "        - {up_to: 200000, rate: 0.01}\n        - {up_to: 100000, rate: 0.015}\n"
                    "        - {rate: 0.02}\n")  # fmt: skip
    with pytest.raises(ScorecardError, match="up_to must increase"):
        load(path, set(AGENT_FIELDS))


QA_SCORE = {"id": "quality", "metric": "manual.qa_score", "target": 100, "part": "listening"}
DATA_85_QA_15 = {"role": "r", "parts": {"data": "0.85", "listening": "0.15"}, "items": [
    {**ANSWER_RATE.model_dump(), "part": "data", "weight": 2},
    {**SATISFACTION.model_dump(), "part": "data", "weight": 1}, QA_SCORE]}  # fmt: skip


def test_a_card_shares_its_total_85_from_data_and_15_from_the_sampled_recordings() -> None:
    cards = Scorecards.model_validate({"scorecards": [DATA_85_QA_15]})
    row = {"team": "t", "answer_rate": 0.935, "csat": 0.96, "manual.qa_score": 80}
    got = score_agents(cards, {"a": row})["a"]
    # data: (98.5 × 2 + 98 × 1) / 3 = 98.33; listening: 100 − 20 = 80
    assert (got["part.data"], got["part.listening"]) == (98.33, 80.0)
    assert got["score_total"] == 95.58  # 98.33 × 0.85 + 80 × 0.15 = 83.5805 + 12 = 95.5805
    # not sampled this period: the data part alone makes the total
    alone = score_agents(cards, {"a": {**row, "manual.qa_score": None}})["a"]
    assert alone["part.listening"] is None and alone["score_total"] == 98.33
    assert "part.listening" in columns(cards.stamp())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"parts": {"data": "0.85", "listening": "0.10"}}, "add up to 1"),
        ({"parts": None}, "name a part; set the card's parts"),
        (
            {"parts": {"data": "0.85", "listening": "0.1", "other": "0.05"}},
            "parts ['other'] have no item",
        ),
    ],
)
def test_parts_that_do_not_add_up_or_items_without_one_are_refused(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Scorecards.model_validate({"scorecards": [{**DATA_85_QA_15, **change}]})

"""Abnormal figures (services/core/deviation.py), worked by hand on small
histories: an agent is abnormal only when far from its own baseline and unusual
in its team, with enough calls on both sides."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.deviation import (
    Direction,
    Rule,
    Sample,
    assess,
    baseline,
    change_value,
    robust_score,
)
from tests.support.samples import MONDAY, period, team_with, weeks_of

TALK_DOWN = Rule(direction=Direction.DOWN)


def test_robust_score_is_the_modified_z_score_over_the_team_median_and_mad() -> None:
    # median 3, absolute deviations 2 1 0 1 97: MAD 1
    assert robust_score(100, [1, 2, 3, 4, 100]) == pytest.approx(0.6745 * 97)
    assert robust_score(1, [1, 2, 3, 4, 100]) == pytest.approx(0.6745 * -2)
    # MAD 0 (most of the team alike): the mean absolute deviation, 10 / 5 = 2
    assert robust_score(20, [10, 10, 10, 10, 20]) == pytest.approx(10 / (1.253314 * 2))
    assert robust_score(10, [10, 10, 10]) == 0.0
    assert robust_score(10, []) is None


def test_an_agent_whose_talk_time_falls_a_quarter_while_the_team_holds_is_abnormal() -> None:
    a = assess(period(150), weeks_of(200, 30), team_with(150), TALK_DOWN)
    assert (a.current, a.baseline, a.team_median) == (150, 200, 200)
    assert a.change == pytest.approx(-0.25)
    # team 150 195 200 205 210: median 200, deviations 50 5 0 5 10, MAD 5
    assert a.score == pytest.approx(0.6745 * -50 / 5)
    assert a.abnormal and a.not_assessed is None


def test_a_whole_team_on_easy_calls_is_not_abnormal_though_each_agent_fell_a_quarter() -> None:
    a = assess(period(150), weeks_of(200, 30), team_with(150, (145, 150, 155, 150)), TALK_DOWN)
    assert a.change == pytest.approx(-0.25)
    assert a.score == 0.0  # the agent is the team's median
    assert not a.abnormal


def test_an_agent_always_slower_than_the_team_is_not_abnormal() -> None:
    a = assess(period(150), weeks_of(150, 30), team_with(150), TALK_DOWN)
    assert a.change == 0.0 and a.score is not None and a.score < -3.5
    assert not a.abnormal


def test_a_quiet_period_a_new_agent_and_a_team_of_one_are_not_assessed() -> None:
    quiet = assess(period(150, calls=5), weeks_of(200, 30), team_with(150), TALK_DOWN)
    assert (quiet.abnormal, quiet.not_assessed) == (False, "5 calls in the period, fewer than 20")
    new = assess(period(150), weeks_of(200, 30, weeks=1), team_with(150), TALK_DOWN)
    assert (new.abnormal, new.not_assessed) == (False, "30 calls in the baseline, fewer than 60")
    assert new.change == pytest.approx(-0.25)  # computed, but not enough to judge by
    alone = assess(period(150), weeks_of(200, 30), [period(150)], TALK_DOWN)
    assert (alone.abnormal, alone.score) == (False, None)
    assert alone.not_assessed == "1 agents of the team with 20 calls, fewer than 3"


def test_a_holiday_in_the_baseline_is_left_out() -> None:
    holiday = MONDAY - timedelta(weeks=2)
    history = [s if s.day != holiday else Sample(holiday, 100 * 60, 60) for s in weeks_of(200, 30)]
    # with the holiday: (3 × 6,000 + 6,000) / 150 = 160, and 150 is only 6% below
    assert not assess(period(150), history, team_with(150), TALK_DOWN).abnormal
    kept = assess(period(150), history, team_with(150), TALK_DOWN, frozenset({holiday}))
    assert kept.baseline == 200 and kept.abnormal
    assert baseline([], frozenset()) is None


def test_a_rule_for_rises_ignores_a_fall_and_flags_a_rise() -> None:
    hold_up = Rule(direction=Direction.UP)
    assert not assess(period(150), weeks_of(200, 30), team_with(150), hold_up).abnormal
    rise = assess(period(260), weeks_of(200, 30), team_with(260), hold_up)
    assert rise.change == pytest.approx(0.3) and rise.abnormal


# whole values (seconds, counts), as the figures' sums are: equal values stay
# equal after the change of unit, so a MAD of 0 stays 0
values = st.integers(min_value=-100_000, max_value=100_000)


@given(st.lists(values, min_size=1, max_size=30), st.floats(min_value=0.01, max_value=100),
       st.integers(min_value=-10_000, max_value=10_000))  # fmt: skip
def test_the_robust_score_does_not_depend_on_the_unit_or_the_origin(
    team: list[int], scale: float, shift: int
) -> None:
    x = team[0]
    moved = [v * scale + shift for v in team]
    before, after = robust_score(x, team), robust_score(x * scale + shift, moved)
    assert before is not None and after is not None
    assert after == pytest.approx(before, rel=1e-6, abs=1e-6)


def test_a_deviation_alert_observes_the_change_only_where_the_team_finds_the_agent_unusual() -> (
    None
):
    rushed = assess(period(150), weeks_of(200, 30), team_with(150), TALK_DOWN)
    assert change_value(rushed, TALK_DOWN) == pytest.approx(-0.25)
    easy_day = assess(period(150), weeks_of(200, 30), team_with(150, (145, 150, 155, 150)),
                      TALK_DOWN)  # fmt: skip
    assert change_value(easy_day, TALK_DOWN) == 0.0  # the whole team fell: no deviation
    new_agent = assess(period(150), [], team_with(150), TALK_DOWN)
    assert change_value(new_agent, TALK_DOWN) is None  # no baseline: nothing to observe

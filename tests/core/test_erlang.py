"""Erlang B, C and A against published values and against a straightforward
reference (tests/support/queueing.py)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.erlang import (
    erlang_b,
    erlang_c,
    predict_a,
    predict_c,
    required_agents,
)
from tests.support import queueing

HALF_HOUR = 1800.0


def test_erlang_b_matches_the_published_table() -> None:
    # Erlang B tables: 10 Erlangs on 10 lines block 21.46% of calls; 15 lines
    # are the fewest for a 5% grade of service (3.65%; 14 lines block 5.68%)
    assert erlang_b(10, 10.0) == pytest.approx(0.2146, abs=5e-5)
    assert erlang_b(15, 10.0) == pytest.approx(0.0365, abs=5e-5)
    assert erlang_b(14, 10.0) == pytest.approx(0.0568, abs=5e-5)


def test_erlang_b_recurrence_equals_the_factorial_formula_in_exact_arithmetic() -> None:
    from math import factorial

    for n, a in ((1, Fraction(1, 2)), (7, Fraction(5)), (20, Fraction(33, 2))):
        exact = (a**n / factorial(n)) / sum(a**k / factorial(k) for k in range(n + 1))
        assert erlang_b(n, float(a)) == pytest.approx(float(exact), rel=1e-12)


def test_the_worked_example_of_100_calls_in_half_an_hour_needs_14_agents() -> None:
    """The example every Erlang C calculator publishes (callcentrehelper.com's
    worked example, pyworkforce's README, the R package ErlangC's manual): 100
    calls in 30 minutes, 180 s handle time, 80% in 20 s → 10 Erlangs, 14 agents,
    wait probability 0.1741319, service level 0.88835, ASA 7.8359 s, occupancy
    71.4%; at 11 agents the wait probability is 0.6821182."""
    rate = 100 / HALF_HOUR
    p = required_agents(rate, 180, 20, 0.8)
    assert p is not None and p.agents == 14
    assert p.wait_probability == pytest.approx(0.1741319, abs=5e-8)
    assert p.service_level == pytest.approx(0.88835, abs=5e-6)
    assert p.asa_seconds == pytest.approx(7.835937, abs=5e-6)
    assert p.occupancy == pytest.approx(10 / 14)
    assert erlang_c(11, 10.0) == pytest.approx(0.6821182, abs=5e-8)
    # 13 agents miss the goal: 14 is the fewest
    assert predict_c(13, rate, 180, 20).service_level < 0.8


def test_an_unstable_queue_answers_nobody_in_time_under_erlang_c() -> None:
    p = predict_c(10, 100 / HALF_HOUR, 180, 20)  # 10 agents, 10 Erlangs
    assert (p.service_level, p.asa_seconds, p.wait_probability) == (0.0, None, 1.0)


def test_no_calls_need_no_agents() -> None:
    assert required_agents(0.0, 180, 20, 0.8) is not None
    assert required_agents(0.0, 180, 20, 0.8).agents == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("agents", "rate", "aht", "patience", "threshold"),
    [
        (5, 2 / 180, 180, 120, 20),  # lightly loaded
        (3, 1 / 60, 100, 30, 15),  # impatient callers
        (8, 0.05, 150, 200, 30),  # overloaded: 7.5 Erlangs on 8
        (4, 0.05, 120, 60, 20),  # 6 Erlangs on 4 agents: stable only by abandons
    ],
)
def test_erlang_a_equals_the_reference_computed_by_uniformisation(
    agents: int, rate: float, aht: float, patience: float, threshold: float
) -> None:
    p = predict_a(agents, rate, aht, patience, threshold)
    assert p.service_level == pytest.approx(
        queueing.service_level(agents, rate, aht, patience, threshold, waiting=80), abs=1e-12
    )
    assert p.abandon_rate == pytest.approx(
        queueing.abandon_rate(agents, rate, aht, patience, waiting=80), abs=1e-12
    )


def test_erlang_a_with_endless_patience_is_erlang_c() -> None:
    rate = 100 / HALF_HOUR
    a, c = predict_a(14, rate, 180, 1e9, 20), predict_c(14, rate, 180, 20)
    assert a.service_level == pytest.approx(c.service_level, abs=1e-6)
    assert a.asa_seconds == pytest.approx(c.asa_seconds, abs=1e-4)
    assert a.abandon_rate < 1e-7


def test_erlang_a_needs_fewer_agents_where_callers_hang_up() -> None:
    rate = 100 / HALF_HOUR
    c = required_agents(rate, 180, 20, 0.8)
    a = required_agents(rate, 180, 20, 0.8, patience_s=120)
    assert c is not None and a is not None
    assert a.agents < c.agents
    assert a.abandon_rate > 0


def test_a_large_center_is_computed_without_overflow() -> None:
    # 2,000 Erlangs: factorials and powers of this size overflow a float
    rate, aht = 2000 / 300, 300.0
    c = required_agents(rate, aht, 20, 0.8)
    a = required_agents(rate, aht, 20, 0.8, patience_s=180)
    assert c is not None and 2000 < c.agents < 2100
    assert a is not None and a.agents <= c.agents
    # an overloaded Erlang A queue (weights that grow before they fall)
    p = predict_a(1500, rate, aht, 3600, 20)
    assert 0 <= p.service_level < 0.01 and 0.2 < p.abandon_rate < 0.3


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(0.001, 2.0),
    aht=st.floats(30, 900),
    patience=st.one_of(st.none(), st.floats(5, 1800)),
    target=st.floats(0.5, 0.95),
    threshold=st.integers(0, 60),
)
def test_required_agents_is_the_fewest_that_meet_the_goal(
    rate: float, aht: float, patience: float | None, target: float, threshold: int
) -> None:
    p = required_agents(rate, aht, threshold, target, patience_s=patience)
    assert p is not None and p.agents >= 1
    assert p.service_level >= target

    def at(n: int) -> float:
        if patience is None:
            return predict_c(n, rate, aht, threshold).service_level
        return predict_a(n, rate, aht, patience, threshold).service_level

    assert p.agents == 1 or at(p.agents - 1) < target


def test_a_maximum_occupancy_adds_agents_beyond_the_service_level() -> None:
    rate = 2000 / HALF_HOUR  # a big queue: the goal alone runs it near 95% busy
    free = required_agents(rate, 180, 20, 0.8)
    capped = required_agents(rate, 180, 20, 0.8, max_occupancy=0.85)
    assert free is not None and capped is not None
    assert free.occupancy > 0.85 >= capped.occupancy
    assert capped.agents > free.agents

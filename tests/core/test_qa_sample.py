"""The listening sample's agents (services/core/qa_sample.py): abnormal first,
then a re-derivable draw up to the coverage."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.qa_sample import pick

TEAM = [f"b{i:02d}" for i in range(10)]


def test_abnormal_agents_come_first_then_drawn_ones_up_to_the_coverage() -> None:
    sample = pick(TEAM, {"b07": ["avg_talk_seconds −40%"]}, 0.3, "2026-11", "billing")
    assert [p.agent for p in sample][:1] == ["b07"] and sample[0].abnormal
    assert len(sample) == 3  # ceil(0.3 × 10)
    assert all(not p.abnormal for p in sample[1:])


def test_the_draw_is_re_derivable_with_any_sha256_tool() -> None:
    sample = pick(TEAM, {}, 0.2, "2026-11", "billing")
    by_hand = sorted(TEAM, key=lambda a: hashlib.sha256(
        f"callkpi-qa:2026-11:billing:{a}".encode()).hexdigest())[:2]  # fmt: skip
    assert [p.agent for p in sample] == by_hand
    assert pick(TEAM, {}, 0.2, "2026-11", "billing") == sample  # the same request, the same sample


def test_more_abnormal_agents_than_the_coverage_are_all_kept_and_none_is_drawn() -> None:
    flagged = {a: ["aht_seconds +35%"] for a in TEAM[:5]}
    sample = pick(TEAM, flagged, 0.3, "2026-11", "billing")
    assert [p.agent for p in sample] == TEAM[:5]


def test_a_coverage_outside_0_to_1_is_refused() -> None:
    with pytest.raises(ValueError, match=r"coverage: 1\.5"):
        pick(TEAM, {}, 1.5, "2026-11", "billing")


@given(st.sets(st.text("abcdef0123", min_size=1, max_size=4), min_size=1, max_size=40),
       st.floats(min_value=0, max_value=1), st.text(max_size=8))  # fmt: skip
def test_coverage_is_met_and_one_more_agent_does_not_reshuffle_the_others(
    agents: set[str], coverage: float, period: str
) -> None:
    sample = pick(agents, {}, coverage, period, "t")
    assert len(sample) >= coverage * len(agents) - 1e-9
    assert len({p.agent for p in sample}) == len(sample)
    newcomer = "zzzzz"  # not in the alphabet above
    grown = [p.agent for p in pick(agents | {newcomer}, {}, 1.0, period, "t")]
    assert [a for a in grown if a != newcomer] == [
        p.agent for p in pick(agents, {}, 1.0, period, "t")
    ]

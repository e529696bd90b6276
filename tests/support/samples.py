"""Small histories of one figure, for the abnormal-figures tests: an agent's
usual calls in the trailing weeks, a period, a team around it."""

from __future__ import annotations

from datetime import date, timedelta

from services.core.deviation import Sample

MONDAY = date(2026, 11, 30)


def weeks_of(talk_s: float, calls: int, weeks: int = 4) -> list[Sample]:
    """The same weekday's hours in each of the trailing weeks."""
    return [Sample(MONDAY - timedelta(weeks=w), talk_s * calls, calls) for w in range(1, weeks + 1)]


def period(talk_s: float, calls: int = 25) -> Sample:
    return Sample(MONDAY, talk_s * calls, calls)


def team_with(
    agent_talk_s: float, others: tuple[float, ...] = (195, 200, 205, 210)
) -> list[Sample]:
    return [period(agent_talk_s), *(period(t) for t in others)]

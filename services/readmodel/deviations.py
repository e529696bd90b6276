"""Each agent of a team against its own baseline and against the team, over a
period: the inputs of the listening sample (docs/qa.md), read from the stored
minute buckets. The math is services/core/deviation.py."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.deviation import Assessment, Rule, assess, change_value
from services.core.qa_figures import FIGURES, Figure, agent_metrics, sample_of
from services.core.settings import Settings
from services.core.timewin import local_shift
from services.readmodel import queries


@dataclass(frozen=True, slots=True)
class AgentDeviation:
    agent: str
    figure: str
    assessment: Assessment


WEEK = timedelta(days=7)


def baseline_spans(
    start: datetime, end: datetime, weeks: int, tz: ZoneInfo
) -> list[tuple[datetime, datetime]]:
    """The baseline of [start, end): up to a week long, the same weekday and
    wall-clock hours of each of the `weeks` weeks before, newest first
    (10:00-11:00 stays 10:00-11:00 across a daylight-saving change). Longer (a
    pay month), such copies would overlap the period itself: then the `weeks`
    whole weeks before `start`, day by day (each weekday and hour weighed alike,
    and a holiday left out as a day)."""
    if end - start <= WEEK:
        return [(local_shift(start, -7 * w, tz), local_shift(end, -7 * w, tz))
                for w in range(1, weeks + 1)]  # fmt: skip
    first = local_shift(start, -7 * weeks, tz)
    edges = [first]
    day = first.astimezone(tz).date() + timedelta(days=1)
    while (midnight := datetime.combine(day, time(0), tz).astimezone(UTC)) < start:
        edges.append(midnight)
        day += timedelta(days=1)
    edges.append(start)
    return list(reversed(list(itertools.pairwise(edges))))


@dataclass(frozen=True, slots=True)
class AgentFigures:
    """Every agent's catalogue figures over a span and over each of its
    baseline's spans (computed once per agent and span, whatever the number of
    figures judged)."""

    day: date  # the span's first local day
    now: ByAgent
    past: list[tuple[date, ByAgent]]


class ByAgent(dict[str, Mapping[str, Any]]):
    """Agent → its figures; an agent without calls has the figures of none."""

    def __missing__(self, agent: str) -> Mapping[str, Any]:
        return NO_CALLS


NO_CALLS = agent_metrics(None)


async def _by_agent(conn: AsyncConnection, start: datetime, end: datetime) -> ByAgent:
    counters = await queries.window_counters_by_entity(conn, "agent", start, end)
    return ByAgent((agent, agent_metrics(c)) for agent, c in counters.items())


async def agent_figures(
    conn: AsyncConnection, settings: Settings, start: datetime, end: datetime, weeks: int
) -> AgentFigures:
    tz = settings.tz
    now = await _by_agent(conn, start, end)
    past = [(b.astimezone(tz).date(), await _by_agent(conn, b, e))
            for b, e in baseline_spans(start, end, weeks, tz)]  # fmt: skip
    return AgentFigures(start.astimezone(tz).date(), now, past)


def judge(
    figures: AgentFigures,
    figure: Figure,
    agents: list[str],
    rule: Rule,
    holidays: frozenset[date],
) -> list[AgentDeviation]:
    """Each agent of `agents` (one team) on `figure`, against its own baseline
    and the others of `agents`."""
    team = [sample_of(figure, figures.now[a], figures.day) for a in agents]
    out: list[AgentDeviation] = []
    for agent, current in zip(agents, team, strict=True):
        history = [sample_of(figure, f[agent], d) for d, f in figures.past]
        out.append(AgentDeviation(agent, figure.name, assess(current, history, team, rule,
                                                             holidays)))  # fmt: skip
    return out


def holidays_of(settings: Settings) -> frozenset[date]:
    return frozenset(h.day for h in settings.alerts.schedule.holidays)


async def team_deviations(
    conn: AsyncConnection,
    settings: Settings,
    agents: list[str],
    start: datetime,
    end: datetime,
    *,
    weeks: int | None = None,
) -> list[AgentDeviation]:
    """Every agent of `agents` (a team) on every figure over [start, end): its own
    baseline is the same weekday and hours of the `weeks` (default
    `qa.baseline_weeks`) weeks before, the center's holidays (the alert
    schedule's) left out; the team is `agents` over the same period. Thresholds:
    the `qa` settings."""
    figures = await agent_figures(conn, settings, start, end,
                                  weeks or settings.qa.baseline_weeks)  # fmt: skip
    holidays = holidays_of(settings)
    return [d for figure in FIGURES
            for d in judge(figures, figure, agents, settings.qa.rule(figure.direction),
                           holidays)]  # fmt: skip


async def change_readings(
    conn: AsyncConnection,
    settings: Settings,
    figure: Figure,
    agents: list[str],
    start: datetime,
    end: datetime,
    min_calls: int,
) -> dict[str, tuple[float | None, int]]:
    """A deviation alert's observation of each of `agents` over [start, end):
    the figure's change from the agent's baseline where the agent is also
    unusual in its team (`change_value`), and its calls; judged within each
    roster team, with the `qa` settings but `min_calls` as the volume needed."""
    figures = await agent_figures(conn, settings, start, end, settings.qa.baseline_weeks)
    qa = settings.qa
    rule = Rule(figure.direction, qa.min_change, qa.min_score, min_calls,
                qa.min_baseline_volume, qa.min_team)  # fmt: skip
    wanted = set(agents)
    out: dict[str, tuple[float | None, int]] = {}
    for team in settings.teams:
        for d in judge(figures, figure, list(team.agents), rule, holidays_of(settings)):
            if d.agent in wanted:
                volume = int(figures.now[d.agent][figure.volume] or 0)
                out[d.agent] = (change_value(d.assessment, rule), volume)
    return out

"""Each agent of a team against its own baseline and against the team, over a
period: the inputs of the listening sample (docs/qa.md), read from the stored
minute buckets. The math is services/core/deviation.py."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.deviation import Assessment, Rule, assess, change_value
from services.core.qa_figures import FIGURES, Figure, sample
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
class Counters:
    """Every agent's counters over a span and over each of its baseline's spans."""

    day: date  # the span's first local day
    now: Mapping[str, Mapping[str, int]]
    past: list[tuple[date, Mapping[str, Mapping[str, int]]]]


async def agent_counters(
    conn: AsyncConnection, settings: Settings, start: datetime, end: datetime, weeks: int
) -> Counters:
    tz = settings.tz
    now = await queries.window_counters_by_entity(conn, "agent", start, end)
    past: list[tuple[date, Mapping[str, Mapping[str, int]]]] = [
        (b.astimezone(tz).date(), await queries.window_counters_by_entity(conn, "agent", b, e))
        for b, e in baseline_spans(start, end, weeks, tz)
    ]
    return Counters(start.astimezone(tz).date(), now, past)


def judge(
    counters: Counters,
    figure: Figure,
    agents: list[str],
    rule: Rule,
    holidays: frozenset[date],
) -> list[AgentDeviation]:
    """Each agent of `agents` (one team) on `figure`, against its own baseline
    and the others of `agents`."""
    team = [sample(figure, counters.now.get(a), counters.day) for a in agents]
    out: list[AgentDeviation] = []
    for agent, current in zip(agents, team, strict=True):
        history = [sample(figure, c.get(agent), d) for d, c in counters.past]
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
    counters = await agent_counters(conn, settings, start, end,
                                    weeks or settings.qa.baseline_weeks)  # fmt: skip
    holidays = holidays_of(settings)
    return [d for figure in FIGURES
            for d in judge(counters, figure, agents, settings.qa.rule(figure.direction),
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
    counters = await agent_counters(conn, settings, start, end, settings.qa.baseline_weeks)
    qa = settings.qa
    rule = Rule(figure.direction, qa.min_change, qa.min_score, min_calls,
                qa.min_baseline_volume, qa.min_team)  # fmt: skip
    wanted = set(agents)
    out: dict[str, tuple[float | None, int]] = {}
    for team in settings.teams:
        for d in judge(counters, figure, list(team.agents), rule, holidays_of(settings)):
            if d.agent in wanted:
                volume = counters.now.get(d.agent, {}).get(figure.volume, 0)
                out[d.agent] = (change_value(d.assessment, rule), volume)
    return out

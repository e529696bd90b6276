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

from services.core.deviation import Assessment, Direction, Sample, assess
from services.core.settings import Settings
from services.core.timewin import local_shift
from services.readmodel import queries


@dataclass(frozen=True, slots=True)
class Figure:
    """A figure as a sum over a volume, and which way is abnormal."""

    name: str
    total: tuple[str, ...]  # counters summed into the figure's numerator
    volume: str
    direction: Direction
    scale: float = 1.0  # numerator unit → the figure's (µs → seconds)
    less: tuple[str, ...] = ()  # counters taken off the numerator


US = 1e-6
# The agent figures the seeds' scorecards weigh, as the catalogue defines them
# (docs/metrics.md, "Agent figures"): shorter talk is the rushed-call sign; more
# hold, wrap-up or ring-no-answer is the other way round.
FIGURES: tuple[Figure, ...] = (
    Figure("avg_talk_seconds", ("talk_us",), "handled", Direction.DOWN, US),
    Figure("aht_seconds", ("talk_us", "hold_us", "acw_us"), "handled", Direction.BOTH, US),
    Figure("avg_hold_seconds", ("hold_us",), "handled", Direction.UP, US),
    Figure("avg_acw_seconds", ("acw_us",), "handled", Direction.UP, US),
    Figure("rona_rate", ("presented",), "presented", Direction.UP, less=("answered",)),
)


def sample(figure: Figure, counters: Mapping[str, int] | None, day: date) -> Sample:
    c = counters or {}
    total = sum(c.get(n, 0) for n in figure.total) - sum(c.get(n, 0) for n in figure.less)
    return Sample(day, total * figure.scale, c.get(figure.volume, 0))


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
    tz = settings.tz
    holidays = frozenset(h.day for h in settings.alerts.schedule.holidays)
    now = await queries.window_counters_by_entity(conn, "agent", start, end)
    past = [
        (b.astimezone(tz).date(), await queries.window_counters_by_entity(conn, "agent", b, e))
        for b, e in baseline_spans(start, end, weeks or settings.qa.baseline_weeks, tz)
    ]
    day = start.astimezone(tz).date()
    out: list[AgentDeviation] = []
    for figure in FIGURES:
        figure_rule = settings.qa.rule(figure.direction)
        team = [sample(figure, now.get(a), day) for a in agents]
        for agent, current in zip(agents, team, strict=True):
            history = [sample(figure, counters.get(agent), d) for d, counters in past]
            found = assess(current, history, team, figure_rule, holidays)
            out.append(AgentDeviation(agent, figure.name, found))
    return out

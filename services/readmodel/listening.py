"""The listening sample of a team over a period (GET /v1/qa/sample): which
agents to listen to, why, and which of their calls (docs/qa.md). The pieces are
pure: services/core/deviation.py (abnormal figures), qa_calls.py (suspicious
calls, the calls to hear), qa_sample.py (the agents); this reads their inputs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.qa_calls import SUSPICIOUS, Suspicious, calls_to_hear, count_by_interval
from services.core.qa_sample import pick
from services.core.settings import Settings
from services.core.timewin import epoch_us
from services.readmodel.calls import Filters, scan
from services.readmodel.deviations import AgentDeviation, team_deviations

SHORT_CALLS = "short_calls"
NOTHING = Suspicious(0, dict.fromkeys(SUSPICIOUS, 0))


def _figure_reason(d: AgentDeviation) -> dict[str, Any]:
    a = d.assessment
    return {"figure": d.figure, "current": a.current, "baseline": a.baseline,
            "change": a.change, "team_median": a.team_median, "score": a.score}  # fmt: skip


async def team_calls(
    conn: AsyncConnection, settings: Settings, team: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """The call-detail records of the team's queues offered in [start, end) that
    are still kept (call_state_retention_days)."""
    queues = [q for q, t in settings.team_of_queue.items() if t == team]
    found = scan(conn, settings, epoch_us(start), epoch_us(end), Filters(queues=queues))
    return [rec async for _pos, rec in found]


async def listening_sample(
    conn: AsyncConnection,
    settings: Settings,
    team: str,
    agents: list[str],
    start: datetime,
    end: datetime,
    label: str,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The sample of `team` (its roster `agents`) over [start, end), seeded by
    `label` (a pay period's id, or the range): every abnormal agent with its
    reasons, then drawn agents up to `qa.coverage`, each with its suspicious
    calls' counts and up to `qa.calls_per_agent` calls to hear."""
    qa = settings.qa
    found = await team_deviations(conn, settings, agents, start, end)
    records = await team_calls(conn, settings, team, start, end)
    # one pass over the calls: the period is one interval
    counted = count_by_interval(records, agents, [epoch_us(start), epoch_us(end)],
                                qa.short_call_seconds)  # fmt: skip
    suspicious = {a: counted.get((0, a), NOTHING) for a in agents}
    reasons: dict[str, list[dict[str, Any]]] = {a: [] for a in agents}
    for d in found:
        if d.assessment.abnormal:
            reasons[d.agent].append(_figure_reason(d))
    for a, s in suspicious.items():
        if s.short_calls_abnormal(qa.short_calls_min, qa.short_call_share):
            reasons[a].append({"figure": SHORT_CALLS, "count": s.counts["short"],
                               "answered": s.answered, "share": s.share("short")})  # fmt: skip
    picks = pick(agents, {a: [r["figure"] for r in rs] for a, rs in reasons.items()},
                 qa.coverage, label, team)  # fmt: skip
    kept_from = (now or datetime.now(UTC)) - timedelta(days=settings.call_state_retention_days)
    return {
        "team": team,
        "period": label,
        "agents_in_team": len(set(agents)),
        "coverage": qa.coverage,
        "wanted": math.ceil(qa.coverage * len(set(agents))),
        "baseline_weeks": qa.baseline_weeks,
        "calls_kept_from": max(start, kept_from),
        "sample": [
            {
                "agent": p.agent,
                "abnormal": p.abnormal,
                "reasons": reasons[p.agent],
                "rank": p.rank or None,
                "suspicious": _counts(suspicious[p.agent]),
                "calls": [
                    {"why": why, **rec}
                    for rec, why in calls_to_hear(
                        records,
                        p.agent,
                        p.reasons,
                        qa.calls_per_agent,
                        label,
                        team,
                        qa.short_call_seconds,
                    )
                ],
            }
            for p in picks
        ],
        "not_sampled": sorted(set(agents) - {p.agent for p in picks}),
        "not_assessed": _not_assessed(found),
    }


def _counts(s: Suspicious) -> dict[str, int]:
    return {"answered": s.answered, **{k: s.counts.get(k, 0) for k in SUSPICIOUS}}


def _not_assessed(found: list[AgentDeviation]) -> Mapping[str, dict[str, str]]:
    """Per agent, the figures it could not be judged on, and why (too few calls,
    no history): an agent missing from the abnormal list for want of data is not
    the same as one found normal."""
    out: dict[str, dict[str, str]] = {}
    for d in found:
        if d.assessment.not_assessed:
            out.setdefault(d.agent, {})[d.figure] = d.assessment.not_assessed
    return out

"""Closing a pay period: every figure of every agent (and team, and the center)
over the period, stored as an immutable version with a checksum.

The figures are the read API's: the same counters summed over the period's
minute buckets and the same functions (services/core/kpi.py), so a closed figure
equals `GET /v1/kpis/agent/{id}?from=…&to=…` at the moment of closing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.configfile import digest
from services.core.db import LOCK_PERIODS, period_versions
from services.core.settings import Settings
from services.core.staffing import SCHEDULE_FIELDS
from services.core.timewin import iso
from services.payroll import audit
from services.payroll.manual import manual_values
from services.payroll.periods import Period, earliest_close, parse
from services.payroll.scorecard import MANUAL_PREFIX, score_agents
from services.readmodel import schedules, staffing
from services.readmodel.figures import Figures

# an agent with no schedule in the period: its schedule columns are empty
NO_SCHEDULE: dict[str, Any] = dict.fromkeys(SCHEDULE_FIELDS)


class CloseRefused(Exception):
    """Closing is not allowed now; `earliest` says when it will be (if ever)."""

    def __init__(self, reason: str, earliest: datetime | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.earliest = earliest


@dataclass(frozen=True)
class Version:
    period: str
    version: int
    created_at: datetime
    created_by: str
    reason: str | None
    fcr_provisional: bool
    checksum: str


def checksum(period: str, definitions: dict[str, Any], figures: dict[str, Any]) -> str:
    """sha256 over the canonical JSON (sorted keys) of what a version holds."""
    return "sha256:" + digest({"period": period, "definitions": definitions, "figures": figures})


async def compute_figures(
    conn: AsyncConnection, settings: Settings, period: Period
) -> dict[str, Any]:
    """{"agents": {id: figures}, "teams": {id: figures}, "center": figures}; roster
    members without a call or a minute logged in are included with zeros. With
    scorecards, each agent row also holds its manual items (`manual.<name>`) and
    its scores, and "scorecard" holds the cards they were scored with."""
    manual = await manual_values(conn, period.id) if settings.scorecards else {}
    out: dict[str, Any] = {}
    # what is stored only (open_time=False): a state still open at closing time
    # is not recorded yet; once it ends, its time in the period is a restatement
    reader = Figures(conn, settings, period.end)
    span = (period.start, period.end)
    # the schedule in force now, and which version that is: a later upload that
    # changes the period's days shows as an adjustment until restated
    planned = await staffing.agent_schedules(reader, None, span, open_time=False)
    out["schedule_version"] = await schedules.latest_version(conn)
    for kind, key in (("agent", "agents"), ("team", "teams"), ("center", "center")):
        figures = {}
        extra = set(manual) | set(planned) if kind == "agent" else set()
        for r in await reader.entities(kind, span, open_time=False, extra=extra):
            row = r.metrics()
            if kind == "agent":
                mine = planned.get(r.id)
                row = {"team": settings.agent_team(r.id), **row,
                       **(mine.fields() if mine else NO_SCHEDULE)}  # fmt: skip
            figures[r.id] = row
        out[key] = figures if kind != "center" else figures["all"]
    cards = settings.scorecards
    if cards is not None:
        agents = out["agents"]
        names = cards.manual_items()
        for agent, row in agents.items():
            values = manual.get(agent, {})
            row.update({MANUAL_PREFIX + n: values.get(n) for n in names})
        for agent, scores in score_agents(cards, agents).items():
            agents[agent].update(scores)
        out["scorecard"] = cards.stamp()
    return out


def closable_from(settings: Settings, period: Period) -> datetime:
    """The earliest close under the configured FCR window and grace."""
    return earliest_close(period, settings.kpi.fcr_window_hours, settings.periods.close_grace_hours)


async def _lock(conn: AsyncConnection, period: str) -> None:
    # concurrent closes of one period queue here; the second then finds version 1
    await conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(:k, hashtext(:p))"), {"k": LOCK_PERIODS, "p": period}
    )


async def latest_version(conn: AsyncConnection, period: str) -> int | None:
    n = await conn.scalar(
        sa.select(sa.func.max(period_versions.c.version)).where(period_versions.c.period == period)
    )
    return None if n is None else int(n)


async def close(
    conn: AsyncConnection,
    settings: Settings,
    period_id: str,
    *,
    now: datetime,
    by: str,
    actor: str,
    force: bool = False,
) -> Version:
    """Store version 1 of a period, and its audit row (`actor`: who asked; `by`: who
    the version names). Call inside a transaction."""
    period = parse(period_id, settings.periods, settings.tz)
    await _lock(conn, period.id)
    earliest = closable_from(settings, period)
    existing = await latest_version(conn, period.id)
    if existing is not None:
        raise CloseRefused(
            f"period {period.id} is already closed (version {existing}); "
            "late changes are restated as a new version"
        )
    if now < period.end:
        raise CloseRefused(
            f"period {period.id} has not ended (it ends {iso(period.end, settings.tz)})",
            earliest,
        )
    provisional = now < earliest
    if provisional and not force:
        raise CloseRefused(
            f"first-call resolution of period {period.id}'s last calls is still open: their "
            f"{settings.kpi.fcr_window_hours} h windows and the "
            f"{settings.periods.close_grace_hours} h grace end {iso(earliest, settings.tz)}; "
            "force=true closes now with FCR figures marked provisional",
            earliest,
        )
    return await _store(conn, settings, period, 1, now=now, by=by, actor=actor, reason=None,
                        fcr_provisional=provisional, audit_detail={"force": force})  # fmt: skip


async def restate(
    conn: AsyncConnection,
    settings: Settings,
    period_id: str,
    *,
    now: datetime,
    by: str,
    actor: str,
    reason: str,
) -> Version:
    """Store version n+1 from the current counters. Refused when the period is not
    closed, or when nothing differs from version n (a version per real change)."""
    period = parse(period_id, settings.periods, settings.tz)
    await _lock(conn, period.id)
    latest = await latest_version(conn, period.id)
    if latest is None:
        raise CloseRefused(f"period {period.id} is not closed: close it first")
    stored = await stored_figures(conn, period.id, latest)
    current = await compute_figures(conn, settings, period)
    if not diff(stored, current):
        raise CloseRefused(f"nothing changed since version {latest} of period {period.id}")
    provisional = now < closable_from(settings, period)
    return await _store(conn, settings, period, latest + 1, now=now, by=by, actor=actor,
                        reason=reason, fcr_provisional=provisional, figures=current,
                        audit_detail={"reason": reason})  # fmt: skip


async def stored_figures(conn: AsyncConnection, period: str, version: int) -> dict[str, Any]:
    t = period_versions
    figures = await conn.scalar(
        sa.select(t.c.figures).where(t.c.period == period, t.c.version == version)
    )
    if figures is None:
        raise CloseRefused(f"period {period} has no version {version}")
    return dict(figures)


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Per agent and field, what differs between two sets of period figures
    (agents in only one side count as all their fields differing)."""
    out: list[dict[str, Any]] = []
    old_agents, new_agents = old["agents"], new["agents"]
    for agent in sorted(set(old_agents) | set(new_agents)):
        a, b = old_agents.get(agent, {}), new_agents.get(agent, {})
        for field in (*a, *(k for k in b if k not in a)):
            if a.get(field) != b.get(field):
                out.append({"agent_id": agent, "field": field,
                            "old": a.get(field), "new": b.get(field)})  # fmt: skip
    return out


async def _store(
    conn: AsyncConnection,
    settings: Settings,
    period: Period,
    version: int,
    *,
    now: datetime,
    by: str,
    actor: str,
    reason: str | None,
    fcr_provisional: bool,
    audit_detail: dict[str, Any],
    figures: dict[str, Any] | None = None,
) -> Version:
    if figures is None:
        figures = await compute_figures(conn, settings, period)
    definitions = settings.kpi.stamp()
    sealed = checksum(period.id, definitions, figures)
    await conn.execute(
        period_versions.insert().values(
            period=period.id,
            version=version,
            period_start=period.start,
            period_end=period.end,
            created_at=now,
            created_by=by,
            reason=reason,
            fcr_provisional=fcr_provisional,
            definitions=definitions,
            checksum=sealed,
            figures=figures,
        )
    )
    # in the same transaction: a version exists if and only if its audit row does
    await audit.record(conn, at=now, actor=actor, action="close" if version == 1 else "restate",
                       period=period.id, detail={"version": version, "by": by,
                                                 "checksum": sealed, **audit_detail})  # fmt: skip
    return Version(period.id, version, now, by, reason, fcr_provisional, sealed)

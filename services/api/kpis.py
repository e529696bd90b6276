"""Read API for the figures: one entity, its intervals, or every entity of a kind."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from services.api import queries
from services.api.deps import ConnDep, SettingsDep
from services.core.kpi import metrics_for, zero_counters
from services.core.settings import Settings
from services.core.timewin import (
    WINDOWS,
    WindowError,
    explicit_bounds,
    interval_edges,
    iso,
    window_bounds,
)

router = APIRouter(prefix="/v1/kpis", tags=["kpis"])


class Kind(StrEnum):
    CENTER = "center"
    TEAM = "team"
    QUEUE = "queue"
    AGENT = "agent"


WindowQ = Annotated[
    str | None, Query(description=f"Live window: {', '.join(WINDOWS)} (default 15m)")
]
FromQ = Annotated[
    str | None,
    Query(alias="from", description="RFC 3339 with offset, minute-aligned; use with `to`"),
]
ToQ = Annotated[str | None, Query(description="RFC 3339 with offset, minute-aligned, exclusive")]


def _bounds(
    settings: Settings, window: str | None, from_: str | None, to: str | None
) -> tuple[datetime, datetime, str | None]:
    try:
        if from_ is not None or to is not None:
            if window is not None:
                raise WindowError("window: give either window or from/to, not both")
            if from_ is None or to is None:
                raise WindowError("from/to: both are required for an explicit range")
            start, end = explicit_bounds(from_, to)
            return start, end, None
        w = window or "15m"
        start, end = window_bounds(w, datetime.now(UTC), settings.tz)
        return start, end, w
    except WindowError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


def _roster(settings: Settings, kind: Kind) -> list[str]:
    if kind is Kind.CENTER:
        return ["all"]
    if kind is Kind.TEAM:
        return [t.id for t in settings.teams]
    if kind is Kind.QUEUE:
        return [q for t in settings.teams for q in t.queues]
    return [a for t in settings.teams for a in t.agents]


async def _require_entity(conn: Any, settings: Settings, kind: Kind, entity_id: str) -> None:
    if kind is Kind.CENTER and entity_id != "all":
        raise HTTPException(status_code=404, detail="center: the only id is 'all'")
    if entity_id in _roster(settings, kind):
        return
    if not await queries.entity_exists(conn, kind.value, entity_id):
        raise HTTPException(
            status_code=404, detail=f"{kind.value} {entity_id!r}: not in the roster and no data"
        )


def _entity_extra(settings: Settings, kind: Kind, entity_id: str) -> dict[str, Any]:
    if kind is Kind.QUEUE:
        return {"team": settings.queue_team(entity_id)}
    if kind is Kind.AGENT:
        return {"team": settings.team_of_agent.get(entity_id, "unassigned")}
    if kind is Kind.TEAM:
        names = {t.id: t.name for t in settings.teams}
        return {"name": names.get(entity_id, "")}
    return {}


@router.get("/{kind}/{entity_id}")
async def get_kpis(
    kind: Kind,
    entity_id: str,
    conn: ConnDep,
    settings: SettingsDep,
    window: WindowQ = None,
    from_: FromQ = None,
    to: ToQ = None,
) -> dict[str, Any]:
    """Figures of one entity over a live window or an explicit minute-aligned range."""
    start, end, w = _bounds(settings, window, from_, to)
    await _require_entity(conn, settings, kind, entity_id)
    counters = await queries.window_counters(conn, kind.value, entity_id, start, end)
    return {
        "kind": kind.value,
        "id": entity_id,
        **_entity_extra(settings, kind, entity_id),
        "window": w,
        "from": iso(start, settings.tz),
        "to": iso(end, settings.tz),
        "definitions": settings.kpi.stamp(),
        **metrics_for(kind.value, counters),
    }


@router.get("/{kind}/{entity_id}/intervals")
async def get_intervals(
    kind: Kind,
    entity_id: str,
    conn: ConnDep,
    settings: SettingsDep,
    from_: Annotated[str, Query(alias="from", description="RFC 3339, minute-aligned")],
    to: Annotated[str, Query(description="RFC 3339, minute-aligned, exclusive")],
    granularity: Annotated[str, Query(description="15m, 30m, 1h or 1d")] = "1h",
) -> dict[str, Any]:
    """Figures per interval, aligned in the configured time zone (days are local
    midnight to midnight: 23 or 25 hours on daylight-saving days)."""
    try:
        start, end = explicit_bounds(from_, to)
        edges = interval_edges(start, end, granularity, settings.tz)
    except WindowError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    await _require_entity(conn, settings, kind, entity_id)
    rows = await queries.interval_counters(conn, kind.value, entity_id, edges)
    return {
        "kind": kind.value,
        "id": entity_id,
        "granularity": granularity,
        "definitions": settings.kpi.stamp(),
        "intervals": [
            {
                "from": iso(edges[i], settings.tz),
                "to": iso(edges[i + 1], settings.tz),
                **metrics_for(kind.value, rows[i]),
            }
            for i in range(len(rows))
        ],
    }


@router.get("/{kind}")
async def list_kpis(
    kind: Kind,
    conn: ConnDep,
    settings: SettingsDep,
    window: WindowQ = None,
    from_: FromQ = None,
    to: ToQ = None,
) -> dict[str, Any]:
    """Every entity of a kind (roster entities included even with no calls), for
    wallboards and leaderboards."""
    start, end, w = _bounds(settings, window, from_, to)
    by_entity = await queries.window_counters_by_entity(conn, kind.value, start, end)
    ids = sorted(set(_roster(settings, kind)) | set(by_entity))

    return {
        "kind": kind.value,
        "window": w,
        "from": iso(start, settings.tz),
        "to": iso(end, settings.tz),
        "definitions": settings.kpi.stamp(),
        "items": [
            {
                "id": i,
                **_entity_extra(settings, kind, i),
                **metrics_for(kind.value, by_entity.get(i) or zero_counters()),
            }
            for i in ids
        ],
    }

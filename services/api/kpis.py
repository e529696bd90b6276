"""Read API for the figures: one entity, its intervals, or every entity of a kind."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from services.api import live, queries
from services.api.deps import ConnDep, PipelineDep, SettingsDep
from services.core.kpi import WAIT_BIN_EDGES, metrics_for, zero_counters
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
SlQ = Annotated[
    int | None,
    Query(
        description="Service-level threshold in seconds for this request; one of the "
        f"wait-histogram bin edges ({', '.join(map(str, WAIT_BIN_EDGES))}). "
        "Default: the configured service_level_seconds."
    ),
]


def _sl(settings: Settings, sl: int | None) -> dict[str, Any]:
    if sl is not None and sl not in WAIT_BIN_EDGES:
        raise HTTPException(
            status_code=422,
            detail=f"sl: {sl} is not a wait-histogram bin edge; use one of "
            f"{', '.join(map(str, WAIT_BIN_EDGES))}",
        )
    return {"sl_seconds": sl if sl is not None else settings.kpi.service_level_seconds}


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


async def require_entity(conn: Any, settings: Settings, kind: Kind, entity_id: str) -> None:
    """404 for an entity neither in the roster nor in the data (a typo)."""
    if kind is Kind.CENTER and entity_id != "all":
        raise HTTPException(404, f"center {entity_id!r}: the only id is 'all'")
    if entity_id in settings.roster(kind.value):
        return
    if not await queries.entity_exists(conn, kind.value, entity_id):
        raise HTTPException(
            status_code=404, detail=f"{kind.value} {entity_id!r}: not in the roster and no data"
        )


def entity_extra(settings: Settings, kind: Kind, entity_id: str) -> dict[str, Any]:
    """What the roster says of an entity: a queue's or agent's team, a team's name."""
    if kind is Kind.QUEUE:
        return {"team": settings.queue_team(entity_id)}
    if kind is Kind.AGENT:
        return {"team": settings.agent_team(entity_id)}
    if kind is Kind.TEAM:
        return {"name": settings.team_names.get(entity_id, "")}
    return {}


# Ids may hold slashes (SIP/1001): `:path` takes them whole, URL-encoded or not.
# The intervals route is registered first, so ".../intervals" is its suffix (an id
# that itself ends in "/intervals" cannot be read: docs/metrics.md).
@router.get("/{kind}/{entity_id:path}/intervals")
async def get_intervals(
    kind: Kind,
    entity_id: str,
    conn: ConnDep,
    settings: SettingsDep,
    from_: Annotated[str, Query(alias="from", description="RFC 3339, minute-aligned")],
    to: Annotated[str, Query(description="RFC 3339, minute-aligned, exclusive")],
    pipeline: PipelineDep,
    granularity: Annotated[str, Query(description="15m, 30m, 1h or 1d")] = "1h",
    sl: SlQ = None,
) -> dict[str, Any]:
    """Figures per interval, aligned in the configured time zone (days are local
    midnight to midnight: 23 or 25 hours on daylight-saving days)."""
    try:
        start, end = explicit_bounds(from_, to)
        edges = interval_edges(start, end, granularity, settings.tz)
    except WindowError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    sl_block = _sl(settings, sl)
    await require_entity(conn, settings, kind, entity_id)
    rows = await queries.interval_counters(conn, kind.value, entity_id, edges)
    reasons = await queries.interval_reasons(conn, kind.value, entity_id, edges)
    now = await live.load(conn, settings, datetime.now(UTC))
    for i, row in enumerate(rows):
        now.add_open_time(kind.value, entity_id, row, reasons[i], edges[i], edges[i + 1])
    return {
        "kind": kind.value,
        "id": entity_id,
        "granularity": granularity,
        "pipeline": pipeline,
        "definitions": settings.kpi.stamp(),
        **sl_block,
        "intervals": [
            {
                "from": iso(edges[i], settings.tz),
                "to": iso(edges[i + 1], settings.tz),
                **metrics_for(kind.value, rows[i], reasons[i], sl),
            }
            for i in range(len(rows))
        ],
    }


@router.get("/{kind}/{entity_id:path}")
async def get_kpis(
    kind: Kind,
    entity_id: str,
    conn: ConnDep,
    settings: SettingsDep,
    pipeline: PipelineDep,
    window: WindowQ = None,
    from_: FromQ = None,
    to: ToQ = None,
    sl: SlQ = None,
) -> dict[str, Any]:
    """Figures of one entity over a live window or an explicit minute-aligned range,
    with what is true now (`live`: calls waiting, agents by state)."""
    start, end, w = _bounds(settings, window, from_, to)
    sl_block = _sl(settings, sl)
    await require_entity(conn, settings, kind, entity_id)
    counters = await queries.window_counters(conn, kind.value, entity_id, start, end)
    reasons = (
        await queries.reason_counters_by_entity(conn, kind.value, start, end, entity_id)
    ).get(entity_id, {})
    now = await live.load(conn, settings, datetime.now(UTC))
    now.add_open_time(kind.value, entity_id, counters, reasons, start, end)
    return {
        "kind": kind.value,
        "id": entity_id,
        **entity_extra(settings, kind, entity_id),
        "window": w,
        "from": iso(start, settings.tz),
        "to": iso(end, settings.tz),
        "pipeline": pipeline,
        "definitions": settings.kpi.stamp(),
        **sl_block,
        **metrics_for(kind.value, counters, reasons, sl),
        "live": now.block(kind.value, entity_id),
    }


@router.get("/{kind}")
async def list_kpis(
    kind: Kind,
    conn: ConnDep,
    settings: SettingsDep,
    pipeline: PipelineDep,
    window: WindowQ = None,
    from_: FromQ = None,
    to: ToQ = None,
    sl: SlQ = None,
) -> dict[str, Any]:
    """Every entity of a kind (roster entities included even with no calls), for
    wallboards and leaderboards."""
    start, end, w = _bounds(settings, window, from_, to)
    sl_block = _sl(settings, sl)
    by_entity = await queries.window_counters_by_entity(conn, kind.value, start, end)
    reasons = await queries.reason_counters_by_entity(conn, kind.value, start, end)
    now = await live.load(conn, settings, datetime.now(UTC))
    ids = sorted(set(settings.roster(kind.value)) | set(by_entity))
    if kind is Kind.AGENT:
        ids = sorted(set(ids) | {a[0] for a in now.agents})
    items = []
    for i in ids:
        counters = dict(by_entity.get(i) or zero_counters())
        mine = dict(reasons.get(i, {}))
        now.add_open_time(kind.value, i, counters, mine, start, end)
        items.append(
            {
                "id": i,
                **entity_extra(settings, kind, i),
                **metrics_for(kind.value, counters, mine, sl),
                "live": now.block(kind.value, i),
            }
        )

    return {
        "kind": kind.value,
        "window": w,
        "from": iso(start, settings.tz),
        "to": iso(end, settings.tz),
        "pipeline": pipeline,
        "definitions": settings.kpi.stamp(),
        **sl_block,
        "items": items,
    }

"""Read API for the figures: one entity, its intervals, or every entity of a kind."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from services.api.deps import ConnDep, PipelineDep, ReadCacheDep, SettingsDep
from services.api.read_cache import window_key
from services.core.kpi import WAIT_BIN_EDGES
from services.core.settings import Settings
from services.core.timewin import (
    WINDOWS,
    WindowError,
    explicit_bounds,
    interval_edges,
    iso,
    window_bounds,
)
from services.readmodel import staffing
from services.readmodel.figures import Figures, entity_extra

router = APIRouter(prefix="/v1/kpis", tags=["kpis"])
# the live window of a request that names none (and of services/api/cache_hits.py)
DEFAULT_WINDOW = "15m"


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


def sl_block_of(settings: Settings, sl: int | None) -> dict[str, Any]:
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
        w = window or DEFAULT_WINDOW
        start, end = window_bounds(w, datetime.now(UTC), settings.tz)
        return start, end, w
    except WindowError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


@dataclass(frozen=True, slots=True)
class SpanQuery:
    """The span a request asks for (a live window, or from/to) and its
    service-level threshold, checked: 422 naming the parameter otherwise."""

    start: datetime
    end: datetime
    window: str | None  # None: an explicit range
    sl: int | None
    sl_block: dict[str, Any]

    def head(self, settings: Settings, pipeline: dict[str, Any] | None) -> dict[str, Any]:
        """What a response over the span says of it: the window, its bounds, how
        far behind the figures are, and the definitions."""
        return {
            "window": self.window,
            "from": iso(self.start, settings.tz),
            "to": iso(self.end, settings.tz),
            "pipeline": pipeline,
            "definitions": settings.kpi.stamp(),
            **self.sl_block,
        }


async def span_query(
    settings: SettingsDep, window: WindowQ = None, from_: FromQ = None, to: ToQ = None,
    sl: SlQ = None,
) -> SpanQuery:  # fmt: skip
    start, end, w = _bounds(settings, window, from_, to)
    return SpanQuery(start, end, w, sl, sl_block_of(settings, sl))


SpanDep = Annotated[SpanQuery, Depends(span_query)]


async def require_entity(figures: Figures, kind: Kind, entity_id: str) -> None:
    """404 for an entity neither in the roster nor in the data (a typo)."""
    if kind is Kind.CENTER and entity_id != "all":
        raise HTTPException(404, f"center {entity_id!r}: the only id is 'all'")
    if not await figures.known(kind.value, entity_id):
        raise HTTPException(
            status_code=404, detail=f"{kind.value} {entity_id!r}: not in the roster and no data"
        )


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
    granularity: Annotated[
        str, Query(description="15m, 30m, 1h, 1d, 1w (ISO weeks, from Monday) or 1mo")
    ] = "1h",
    sl: SlQ = None,
) -> dict[str, Any]:
    """Figures per interval, aligned in the configured time zone (days are local
    midnight to midnight: 23 or 25 hours on daylight-saving days)."""
    try:
        start, end = explicit_bounds(from_, to)
        edges = interval_edges(start, end, granularity, settings.tz)
    except WindowError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    sl_block = sl_block_of(settings, sl)
    figures = Figures(conn, settings, datetime.now(UTC), grouped=False)
    await require_entity(figures, kind, entity_id)
    readings = await figures.intervals(kind.value, entity_id, edges)
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
                **reading.metrics(sl),
            }
            for i, reading in enumerate(readings)
        ],
    }


@router.get("/{kind}/{entity_id:path}")
async def get_kpis(
    request: Request,
    kind: Kind,
    entity_id: str,
    conn: ConnDep,
    settings: SettingsDep,
    pipeline: PipelineDep,
    span: SpanDep,
    cache: ReadCacheDep,
    by: Annotated[
        str | None,
        Query(
            description="`queue` (agents only): the agent's figures in each queue it was "
            "presented calls of, under `by_queue`"
        ),
    ] = None,
) -> Any:
    """Figures of one entity over a live window or an explicit minute-aligned range,
    with what is true now (`live`: calls waiting, agents by state). A live window
    read again before anything is committed may be answered from memory, at most
    `read_cache_seconds` old (services/api/read_cache.py)."""
    if by is not None and (by != "queue" or kind is not Kind.AGENT):
        raise HTTPException(422, f"by={by!r}: the only breakdown is by=queue, and only for agents")
    if span.window is None or not cache.enabled:
        return await _entity_figures(kind, entity_id, conn, settings, pipeline, span, by)
    key = window_key(request.scope["path"], request.scope["query_string"], span.start, span.end)
    snapshot = await cache.snapshot()

    async def read() -> bytes:
        return orjson.dumps(await _entity_figures(kind, entity_id, conn, settings, pipeline,
                                                  span, by))  # fmt: skip

    return Response(await cache.answer(key, snapshot, read), media_type="application/json")


async def _entity_figures(
    kind: Kind,
    entity_id: str,
    conn: Any,
    settings: Settings,
    pipeline: dict[str, Any] | None,
    span: SpanQuery,
    by: str | None,
) -> dict[str, Any]:
    figures = Figures(conn, settings, datetime.now(UTC), grouped=False)
    await require_entity(figures, kind, entity_id)
    span_of = (span.start, span.end)
    reading = await figures.entity(kind.value, entity_id, span_of)
    out = {
        "kind": kind.value,
        "id": entity_id,
        **entity_extra(settings, kind.value, entity_id),
        **span.head(settings, pipeline),
        **reading.metrics(span.sl),
        "live": (await figures.live()).block(kind.value, entity_id),
    }
    if kind is Kind.AGENT:
        # adherence, conformance and attendance against the schedule (None: the
        # agent has no schedule in the span); docs/staffing.md
        mine = await staffing.agent_schedules(figures, [entity_id], span_of)
        out["schedule"] = mine[entity_id].fields() if entity_id in mine else None
    if by == "queue":
        out["by_queue"] = [
            {"queue": r.id, "team": settings.queue_team(r.id), **r.metrics(span.sl)}
            for r in await figures.by_queue(entity_id, span_of)
        ]
    return out


@router.get("/{kind}")
async def list_kpis(
    kind: Kind,
    conn: ConnDep,
    settings: SettingsDep,
    pipeline: PipelineDep,
    span: SpanDep,
) -> dict[str, Any]:
    """Every entity of a kind (roster entities included even with no calls), for
    wallboards and leaderboards."""
    figures = Figures(conn, settings, datetime.now(UTC))
    now = await figures.live()
    items = [
        {
            "id": r.id,
            **entity_extra(settings, kind.value, r.id),
            **r.metrics(span.sl),
            "live": now.block(kind.value, r.id),
        }
        for r in await figures.entities(kind.value, (span.start, span.end))
    ]

    return {
        "kind": kind.value,
        **span.head(settings, pipeline),
        "items": items,
    }

"""Staffing: required agents, schedules, staffed agents, fit and forecast per
interval (`/v1/staffing/...`), and the schedules themselves (`/v1/schedules`).
docs/staffing.md."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from services.api.deps import ConnDep, EngineDep, PipelineDep, SettingsDep, require
from services.api.kpis import Kind, require_entity
from services.api.uploads import csv_text, refused
from services.core.auth import Principal
from services.core.schedules import parse_csv
from services.core.timewin import WindowError, explicit_bounds, interval_edges, iso
from services.payroll import audit
from services.readmodel import schedules, staffing
from services.readmodel.figures import Figures

router = APIRouter(tags=["staffing"])
Admin = Annotated[Principal, require("admin")]
# A schedule read spans at most this: a year of a large center's rows is a
# download, not a page (GET /v1/schedules answers with every segment).
MAX_SCHEDULE_DAYS = 62
# Two requirements an interval (the calls' and the forecast's): 0.14 ms each at 60
# calls per interval, 2.3 ms at 2,000 (measured): a month at 15 minutes of a very
# large queue is seconds of CPU, a year would be minutes.
MAX_STAFFING_SPAN = timedelta(days=31)


@router.get("/v1/staffing/{kind}/{entity_id:path}/intervals")
async def staffing_intervals(
    kind: Kind,
    entity_id: str,
    conn: ConnDep,
    settings: SettingsDep,
    pipeline: PipelineDep,
    from_: Annotated[str, Query(alias="from", description="RFC 3339, minute-aligned")],
    to: Annotated[str, Query(description="RFC 3339, minute-aligned, exclusive")],
    granularity: Annotated[str, Query(description="15m, 30m or 1h")] = "30m",
) -> dict[str, Any]:
    """Per interval: offered calls and AHT, the agents the service-level goal
    requires (Erlang A with the measured patience, or C), the agents scheduled,
    staffed and logged in, the schedule fit, and the forecast for the interval
    (same weekday and interval of the previous weeks). Ranges may reach into the
    future: forecast and schedule are there before the calls."""
    if granularity not in ("15m", "30m", "1h"):
        raise HTTPException(422, f"granularity: one of 15m, 30m, 1h, got {granularity!r}")
    try:
        start, end = explicit_bounds(from_, to)
        edges = interval_edges(start, end, granularity, settings.tz)
    except WindowError as exc:
        raise HTTPException(422, str(exc)) from None
    if end - start > MAX_STAFFING_SPAN:
        raise HTTPException(
            422, f"from/to: at most {MAX_STAFFING_SPAN.days} days per request (each interval "
            "is two queueing computations); ask for the weeks one by one"
        )  # fmt: skip
    figures = Figures(conn, settings, datetime.now(UTC), grouped=False)
    await require_entity(figures, kind, entity_id)
    body = await staffing.intervals(figures, kind.value, entity_id, edges)
    return {
        "kind": kind.value,
        "id": entity_id,
        "granularity": granularity,
        "from": iso(start, settings.tz),
        "to": iso(end, settings.tz),
        "pipeline": pipeline,
        "schedule_version": await schedules.latest_version(conn),
        **body,
    }


@router.post("/v1/schedules", status_code=201)
async def upload_schedule(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    who: Admin,
    note: Annotated[
        str | None, Query(max_length=500, description="why: kept with the version")
    ] = None,
) -> Any:
    """A schedule CSV (`agent_id,date,start,end,activity`; docs/staffing.md#schedules)
    becomes a new version: for every agent-day it holds, it replaces what earlier
    uploads said. Taken whole or refused whole (422 listing every problem by line
    and column)."""
    text = await csv_text(request, settings.max_body_bytes)
    roster = set(settings.roster("agent")) or None
    parsed = parse_csv(text, set(settings.staffing.activities), roster, settings.tz)
    if not parsed.problems and not parsed.days:
        parsed.problem("the CSV has no rows")
    if parsed.problems:
        return refused(parsed)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        up = await schedules.store(conn, parsed, by=who.name, now=now, note=note)
        await audit.record(conn, at=now, actor=who.name, action="schedule_upload", period=None,
                           detail={"version": up.version, "agent_days": up.agent_days,
                                   "from": up.first_day.isoformat(),
                                   "to": up.last_day.isoformat()})  # fmt: skip
    return up.json()


@router.get("/v1/schedules/uploads")
async def schedule_uploads(conn: ConnDep) -> dict[str, Any]:
    """Every schedule version, newest first (at most 100)."""
    return {"uploads": [u.json() for u in await schedules.uploads(conn)]}


@router.get("/v1/schedules")
async def get_schedule(
    conn: ConnDep,
    settings: SettingsDep,
    from_: Annotated[str, Query(alias="from", description="first local day, YYYY-MM-DD")],
    to: Annotated[str, Query(description="last local day, YYYY-MM-DD, included")],
    agent: Annotated[str | None, Query(description="one agent only")] = None,
    as_of: Annotated[int | None, Query(ge=1, description="as of this version")] = None,
) -> dict[str, Any]:
    """The schedule in force for the shifts of the local days from..to: each
    segment with its local start and end."""
    try:
        first, last = date.fromisoformat(from_), date.fromisoformat(to)
    except ValueError as exc:
        raise HTTPException(422, f"from/to: a date YYYY-MM-DD ({exc})") from None
    if last < first or (last - first).days >= MAX_SCHEDULE_DAYS:
        raise HTTPException(
            422, f"from/to: {from_}..{to} must be 1 to {MAX_SCHEDULE_DAYS} days, in order"
        )
    tz = settings.tz
    # every segment of the shifts of those days, wherever they end
    segs = await schedules.in_force(conn, None, None, first, last,
                                    [agent] if agent else None, as_of)  # fmt: skip

    def local(us: int) -> str:
        return iso(datetime.fromtimestamp(us / 1_000_000, UTC), tz)

    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "as_of": as_of,
        "segments": [
            {"agent_id": s.agent_id, "day": s.day.isoformat(), "start": local(s.start_us),
             "end": local(s.end_us), "activity": s.activity}
            for s in segs
        ],
    }  # fmt: skip

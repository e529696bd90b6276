"""Pay periods: status, close, and the payroll read API (docs/payroll.md)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from services.api.deps import MAX_BIGINT, ConnDep, EngineDep, SettingsDep, require
from services.api.uploads import csv_text, refused
from services.core.auth import Principal
from services.core.db import period_versions
from services.core.kpi import AGENT_FIELDS
from services.core.settings import Settings
from services.core.staffing import SCHEDULE_FIELDS
from services.core.timewin import iso
from services.payroll import audit, scorecard
from services.payroll.close import (
    CloseRefused,
    Version,
    closable_from,
    close,
    compute_figures,
    diff,
    latest_version,
    restate,
    stored_figures,
)
from services.payroll.manual import manual_values, parse_csv, store
from services.payroll.periods import Period, PeriodError, parse, recent, status

router = APIRouter(prefix="/v1/periods", tags=["payroll"])

# Every route here needs the payroll scope (set where the router is included);
# these also need admin.
Admin = Annotated[Principal, require("admin")]
Reader = Annotated[Principal, require("payroll")]

CSV_COLUMNS: tuple[str, ...] = (
    "period", "version", "status", "fcr_provisional", "definitions_hash", "checksum",
    "agent_id", "team", *AGENT_FIELDS, *SCHEDULE_FIELDS,
)  # fmt: skip


def csv_columns(figures: dict[str, Any]) -> list[str]:
    """The CSV header of a version: the fixed columns, then, when the version was
    scored, its scorecard columns (docs/payroll.md#columns)."""
    cards = figures.get("scorecard")
    return [*CSV_COLUMNS, *(scorecard.columns(cards) if cards else [])]


def _period(settings: Settings, pid: str) -> Period:
    try:
        return parse(pid, settings.periods, settings.tz)
    except PeriodError as exc:
        raise HTTPException(404, str(exc)) from None


def _summary(settings: Settings, period: Period, versions: list[Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "period": period.id,
        "from": iso(period.start, settings.tz),
        "to": iso(period.end, settings.tz),
        "status": status(period, now, bool(versions)),
        "earliest_close": iso(closable_from(settings, period), settings.tz),
        "versions": [_version_fields(settings, v) for v in versions],
    }


async def _versions(conn: Any, pid: str) -> list[Any]:
    t = period_versions
    q = sa.select(
        t.c.version, t.c.created_at, t.c.created_by, t.c.reason, t.c.fcr_provisional, t.c.checksum
    )
    return list((await conn.execute(q.where(t.c.period == pid).order_by(t.c.version))).all())


@router.get("")
async def list_periods(conn: ConnDep, settings: SettingsDep) -> dict[str, Any]:
    """The current period and the five before it, newest first."""
    periods = recent(datetime.now(UTC), settings.periods, settings.tz)
    return {
        "calendar": settings.periods.calendar,
        "items": [_summary(settings, p, await _versions(conn, p.id)) for p in periods],
    }


@router.get("/{period}")
async def get_period(period: str, conn: ConnDep, settings: SettingsDep) -> dict[str, Any]:
    p = _period(settings, period)
    return _summary(settings, p, await _versions(conn, p.id))


@router.post("/{period}/close", status_code=201)
async def close_period(
    period: str,
    engine: EngineDep,
    settings: SettingsDep,
    who: Admin,
    force: Annotated[
        bool, Query(description="close before FCR windows end (FCR provisional)")
    ] = False,
    by: Annotated[str | None, Body(embed=True, max_length=200)] = None,
) -> Any:
    """Compute and store version 1. 409 with `earliest_close` when it is too early,
    and when the period is already closed."""
    p = _period(settings, period)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as conn:
            v = await close(conn, settings, p.id, now=now, by=_by(settings, who, by),
                            actor=who.name, force=force)  # fmt: skip
    except CloseRefused as exc:
        return _refused(settings, exc)
    return _version_json(settings, v)


def _by(settings: Settings, who: Principal, by: str | None) -> str:
    """Who a version is recorded as made by: the token's name when tokens are on
    (a caller cannot claim to be someone else), else what the caller says."""
    if settings.auth.enabled:
        return who.name
    return by or "api"


def _version_json(settings: Settings, v: Version) -> dict[str, Any]:
    return {"period": v.period, **_version_fields(settings, v)}


def _version_fields(settings: Settings, v: Any) -> dict[str, Any]:
    """A version as listed: from a stored row or a just-made Version."""
    return {
        "version": v.version,
        "created_at": iso(v.created_at, settings.tz),
        "created_by": v.created_by,
        "reason": v.reason,
        "fcr_provisional": v.fcr_provisional,
        "checksum": v.checksum,
    }


def _refused(settings: Settings, exc: CloseRefused) -> JSONResponse:
    return JSONResponse(
        {
            "detail": exc.reason,
            "earliest_close": None if exc.earliest is None else iso(exc.earliest, settings.tz),
        },
        status_code=409,
    )


@router.post("/{period}/restate", status_code=201)
async def restate_period(
    period: str,
    engine: EngineDep,
    settings: SettingsDep,
    who: Admin,
    reason: Annotated[str, Body(embed=True, min_length=1, max_length=2000)],
    by: Annotated[str | None, Body(embed=True, max_length=200)] = None,
) -> Any:
    """Version n+1 from the current counters, with a reason. 409 when the period is
    not closed or nothing changed since version n."""
    p = _period(settings, period)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as conn:
            v = await restate(conn, settings, p.id, now=now, by=_by(settings, who, by),
                              actor=who.name, reason=reason)  # fmt: skip
    except CloseRefused as exc:
        return _refused(settings, exc)
    return _version_json(settings, v)


@router.get("/{period}/adjustments")
async def period_adjustments(
    period: str, conn: ConnDep, settings: SettingsDep, who: Reader
) -> dict[str, Any]:
    """What late events changed since the latest version: per agent and field the
    closed value, the current one and the difference (numbers only). The closed
    version itself never changes; a restatement makes these version n+1."""
    row = await _load(conn, settings, period, None)
    current = await compute_figures(conn, settings, _period(settings, period))
    items = [
        {
            "agent_id": d["agent_id"],
            "field": d["field"],
            "closed": d["old"],
            "current": d["new"],
            "difference": _difference(d["old"], d["new"]),
        }
        for d in diff(row.figures, current)
    ]
    await _audit_read(conn, who, "read_adjustments", row, {"items": len(items)})
    return {"period": row.period, "version": row.version, "items": items}


async def _audit_read(
    conn: Any, who: Principal, action: str, row: Any, detail: dict[str, Any]
) -> None:
    # the read's own connection: its transaction holds only this insert
    await audit.record(
        conn,
        at=datetime.now(UTC),
        actor=who.name,
        action=action,
        period=row.period,
        detail={"version": row.version, **detail},
    )
    await conn.commit()


def _difference(old: Any, new: Any) -> float | int | None:
    numbers = (int, float)
    if isinstance(old, numbers) and isinstance(new, numbers) and not isinstance(old, bool):
        return new - old
    return None


@router.get("/{period}/versions/{version}/diff")
async def version_diff(
    period: str,
    version: Annotated[int, Path(ge=1, le=MAX_BIGINT)],
    conn: ConnDep,
    settings: SettingsDep,
    who: Reader,
) -> dict[str, Any]:
    """What version n changed against version n-1: agent, field, old, new."""
    row = await _load(conn, settings, period, version)
    if version == 1:
        raise HTTPException(422, "version: 1 is the first version; there is nothing before it")
    before = await stored_figures(conn, row.period, version - 1)
    await _audit_read(conn, who, "read_diff", row, {})
    return {
        "period": row.period,
        "version": version,
        "against": version - 1,
        "reason": row.reason,
        "items": diff(before, row.figures),
    }


async def _load(conn: Any, settings: Settings, period: str, version: int | None) -> Any:
    p = _period(settings, period)
    n = version if version is not None else await latest_version(conn, p.id)
    if n is None:
        raise HTTPException(404, f"period {p.id} is not closed: no version to read")
    t = period_versions
    row = (await conn.execute(sa.select(t).where(t.c.period == p.id, t.c.version == n))).first()
    if row is None:
        raise HTTPException(404, f"period {p.id} has no version {n}")
    return row


def _rows(row: Any) -> list[dict[str, Any]]:
    stamp = {
        "period": row.period,
        "version": row.version,
        "status": "closed",
        "fcr_provisional": row.fcr_provisional,
        "definitions_hash": row.definitions["hash"],
        "checksum": row.checksum,
    }
    return [
        {**stamp, "agent_id": agent, **figures}
        for agent, figures in sorted(row.figures["agents"].items())
    ]


def _etag(row: Any) -> str:
    return f'"{row.period}.v{row.version}.{row.checksum.removeprefix("sha256:")[:32]}"'


@router.get("/{period}/agents")
async def period_agents(
    period: str,
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    who: Reader,
    version: Annotated[
        int | None, Query(ge=1, le=MAX_BIGINT, description="default: the latest")
    ] = None,
    format: Literal["json", "csv"] = "json",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """One row per agent, in agent id order. The ETag names the version and its
    checksum: a version never changes, so a cached copy stays valid."""
    row = await _load(conn, settings, period, version)
    etag = _etag(row)
    fresh = request.headers.get("if-none-match") == etag
    await _audit_read(
        conn,
        who,
        "read_agents",
        row,
        {"format": format, "offset": offset, "limit": limit, "not_modified": fresh},
    )
    if fresh:
        return Response(status_code=304, headers={"ETag": etag})
    rows = _rows(row)
    page = rows[offset : offset + limit]
    headers = {"ETag": etag, "Cache-Control": "private, max-age=0, must-revalidate"}
    if format == "csv":
        buf = io.StringIO()
        columns = csv_columns(row.figures)
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore",
                                lineterminator="\n")  # fmt: skip
        writer.writeheader()
        for r in page:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
        headers["Content-Disposition"] = (
            f'attachment; filename="callkpi-{row.period}-v{row.version}.csv"'
        )
        return Response(buf.getvalue().encode("utf-8"), media_type="text/csv; charset=utf-8",
                        headers=headers)  # fmt: skip
    more = offset + limit < len(rows)
    return JSONResponse(
        {
            "period": row.period,
            "version": row.version,
            "total": len(rows),
            "next_offset": offset + limit if more else None,
            "items": page,
        },
        headers=headers,
    )


@router.get("/{period}/agents/{agent_id:path}")  # ids may hold slashes
async def period_agent(
    period: str,
    agent_id: str,
    conn: ConnDep,
    settings: SettingsDep,
    who: Reader,
    version: Annotated[int | None, Query(ge=1, le=MAX_BIGINT)] = None,
) -> dict[str, Any]:
    row = await _load(conn, settings, period, version)
    for r in _rows(row):
        if r["agent_id"] == agent_id:
            await _audit_read(conn, who, "read_agent", row, {"agent_id": agent_id})
            return r
    raise HTTPException(
        404, f"agent {agent_id!r}: not in period {row.period} version {row.version}"
    )


@router.post("/{period}/manual-items")
async def upload_manual_items(
    period: str, request: Request, engine: EngineDep, settings: SettingsDep, who: Admin
) -> Any:
    """Manual scorecard items as CSV (`agent_id,<item>,…`; docs/payroll.md#manual-items).
    Taken whole or refused whole (422 listing every problem by line and column).
    Values of a closed period show as adjustments until it is restated."""
    p = _period(settings, period)
    cards = settings.scorecards
    if cards is None:
        raise HTTPException(
            409,
            "no scorecard configured (scorecard_file): manual items are only used by scorecards",
        )
    text = await csv_text(request, settings.max_body_bytes)
    roster = set(settings.roster("agent")) or None
    parsed = parse_csv(text, cards.manual_items(), roster)
    if parsed.problems:
        return refused(parsed)
    async with engine.begin() as conn:
        agents = await store(conn, p.id, parsed.values, by=who.name, now=datetime.now(UTC))
    return {"period": p.id, "stored": len(parsed.values), "agents": agents}


@router.get("/{period}/manual-items")
async def get_manual_items(period: str, conn: ConnDep, settings: SettingsDep) -> dict[str, Any]:
    """The manual items uploaded for a period, per agent."""
    p = _period(settings, period)
    return {"period": p.id, "agents": await manual_values(conn, p.id)}

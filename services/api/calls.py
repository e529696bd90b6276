"""`GET /v1/calls`: the calls behind a figure, one record each, as JSON pages or
one CSV of the whole range (docs/reports.md#call-detail)."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse

from services.api.deps import ConnDep, EngineDep, SettingsDep
from services.core.call_detail import FCR_STATES, OUTCOMES
from services.core.qa_calls import SUSPICIOUS
from services.core.settings import Settings
from services.core.timewin import WindowError, epoch_us, explicit_bounds, iso
from services.readmodel.calls import Filters, scan

router = APIRouter(tags=["calls"])

CSV_COLUMNS = (
    "call_id", "offered_at", "queue_id", "team", "outcome", "reason", "ended_by", "key",
    "wait_seconds", "talk_seconds", "hold_seconds", "acw_seconds", "answered_legs",
    "transferred", "agents", "last_agent", "fcr", "survey_score", "resolved", "complaint",
    "sale_amount", "customer", "callback_offered",
)  # fmt: skip


def _cursor(pos: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(f"{pos[0]}:{pos[1]}".encode()).decode().rstrip("=")


def _position(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        us, call_id = raw.split(":", 1)
        return int(us), call_id
    except ValueError:
        raise HTTPException(422, "cursor: not one this API gave (pass next_cursor as is)") from None


def shown(rec: dict[str, Any], settings: Settings) -> dict[str, Any]:
    at = datetime.fromtimestamp(rec.pop("offered_us") / 1_000_000, UTC)
    return {"call_id": rec.pop("call_id"), "offered_at": iso(at, settings.tz), **rec}


def _filters(settings: Settings, queue: str | None, team: str | None, agent: str | None,
             outcome: str | None, min_wait: float | None, fcr: str | None,
             suspicious: str | None = None) -> Filters:  # fmt: skip
    if suspicious is not None and suspicious not in SUSPICIOUS:
        raise HTTPException(422, f"suspicious: {suspicious!r} is none of {', '.join(SUSPICIOUS)}")
    if outcome is not None and outcome not in OUTCOMES:
        raise HTTPException(422, f"outcome: {outcome!r} is none of {', '.join(OUTCOMES)}")
    if fcr is not None and fcr not in FCR_STATES:
        raise HTTPException(422, f"fcr: {fcr!r} is none of {', '.join(FCR_STATES)}")
    queues: list[str] | None = None
    if queue is not None:
        queues = [queue]
    if team is not None:
        mine = [q for q, t in settings.team_of_queue.items() if t == team]
        if team not in settings.team_names:
            raise HTTPException(404, f"team {team!r}: not in the roster")
        queues = [q for q in mine if queues is None or q in queues]
    return Filters(queues, agent, outcome, min_wait, fcr, suspicious)


@router.get("/v1/calls")
async def list_calls(
    conn: ConnDep,
    engine: EngineDep,
    settings: SettingsDep,
    from_: Annotated[str, Query(alias="from", description="RFC 3339, minute-aligned")],
    to: Annotated[str, Query(description="RFC 3339, minute-aligned, exclusive")],
    queue: str | None = None,
    team: Annotated[str | None, Query(description="a roster team: the calls of its queues")] = None,
    agent: Annotated[str | None, Query(description="calls an agent was presented")] = None,
    outcome: Annotated[str | None, Query(description=f"one of {', '.join(OUTCOMES)}")] = None,
    min_wait: Annotated[float | None, Query(ge=0, description="seconds waited, at least")] = None,
    fcr: Annotated[str | None, Query(description=f"one of {', '.join(FCR_STATES)}")] = None,
    suspicious: Annotated[
        str | None,
        Query(description=f"one of {', '.join(SUSPICIOUS)}: in the agent's part (docs/qa.md)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the page before")] = None,
    format: Literal["json", "csv"] = "json",
) -> Any:
    """The calls offered in [from, to) (by arrival, as the figures count them),
    oldest first, one record each: outcome and why it ended, wait, talk, hold,
    after-call work, agents and legs, transfers, FCR, survey, disposition, the
    hashed customer. JSON pages of `limit` with `next_cursor`; `format=csv`
    streams every call of the range in one response."""
    try:
        start, end = explicit_bounds(from_, to)
    except WindowError as exc:
        raise HTTPException(422, str(exc)) from None
    filters = _filters(settings, queue, team, agent, outcome, min_wait, fcr, suspicious)
    s_us, e_us = epoch_us(start), epoch_us(end)
    if format == "csv":
        return StreamingResponse(
            _csv(engine, settings, s_us, e_us, filters), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="callkpi-calls.csv"'},
        )  # fmt: skip
    after = _position(cursor) if cursor else None
    items: list[dict[str, Any]] = []
    more = None
    last = after or (s_us - 1, "")
    async for pos, rec in scan(conn, settings, s_us, e_us, filters, after, chunk=limit + 1):
        if len(items) == limit:  # one more exists: the page ends at the last shown
            more = _cursor(last)
            break
        items.append(shown(rec, settings))
        last = pos
    return {"from": iso(start, settings.tz), "to": iso(end, settings.tz), "items": items,
            "next_cursor": more}  # fmt: skip


# A text cell a spreadsheet would run as a formula (=, +, -, @, or a tab or CR
# before one): ids and reasons come from the PBX or any client of ingest, and a
# supervisor opens this file in Excel. Written with a leading apostrophe, as
# OWASP's CSV-injection advice has it; numbers are left alone, and the JSON
# and Parquet exports keep the value as sent.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


async def _csv(
    engine: Any, settings: Settings, s_us: int, e_us: int, filters: Filters
) -> AsyncIterator[bytes]:
    """The whole range, a few hundred rows a write: memory stays bounded for a
    month of a large center."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore",
                            lineterminator="\n")  # fmt: skip
    writer.writeheader()
    async with engine.connect() as conn:
        n = 0
        async for _pos, rec in scan(conn, settings, s_us, e_us, filters):
            row = shown(rec, settings)
            row["agents"] = ";".join(a["agent_id"] for a in row["agents"])
            writer.writerow({k: cell(row.get(k)) for k in CSV_COLUMNS})
            n += 1
            if n % 500 == 0:
                yield buf.getvalue().encode()
                buf.seek(0)
                buf.truncate()
    yield buf.getvalue().encode()

"""Quality assurance: each agent of a team against its own baseline and the
team (`GET /v1/qa/deviations`), and the listening sample of a period
(`GET /v1/qa/sample`). docs/qa.md."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from services.api.calls import CSV_COLUMNS as CALL_COLUMNS
from services.api.calls import cell, shown
from services.api.deps import ConnDep, SettingsDep, require
from services.core.auth import Principal
from services.core.qa_calls import SUSPICIOUS, count_by_interval
from services.core.settings import Settings
from services.core.timewin import WindowError, epoch_us, explicit_bounds, interval_edges, iso
from services.payroll import audit
from services.payroll.periods import PeriodError, parse
from services.readmodel.deviations import team_deviations
from services.readmodel.listening import listening_sample, team_calls

router = APIRouter(tags=["qa"])
# A period and its baseline are read whole (the period and `weeks` shifted
# copies of it): a pay month is the longest anyone assesses; a request for years
# would read every bucket of them `weeks` + 1 times.
MAX_QA_SPAN = timedelta(days=62)

Team = Annotated[str, Query(description="a team of the roster")]
From = Annotated[str, Query(alias="from", description="RFC 3339, minute-aligned")]
To = Annotated[str, Query(description="RFC 3339, minute-aligned, exclusive")]


@router.get("/v1/qa/deviations", responses={404: {"description": "no such team in the roster"}})
async def deviations(
    conn: ConnDep,
    settings: SettingsDep,
    team: Team,
    from_: From,
    to: To,
    weeks: Annotated[
        int | None, Query(ge=1, le=26, description="weeks of baseline (qa.baseline_weeks)")
    ] = None,
) -> dict[str, Any]:
    """Each agent of `team` on each figure over [from, to): its baseline (the same
    weekday and hours of the `weeks` weeks before), the change, the team's
    median, the robust score, and whether it is abnormal (both beyond their
    thresholds) or why it was not assessed (docs/metrics.md, "Abnormal figures")."""
    agents = _roster(settings, team)
    start, end = _range(from_, to)
    found = await team_deviations(conn, settings, agents, start, end, weeks=weeks)
    return {
        "team": team,
        "from": iso(start, settings.tz),
        "to": iso(end, settings.tz),
        "baseline_weeks": weeks or settings.qa.baseline_weeks,
        "abnormal": sorted({d.agent for d in found if d.assessment.abnormal}),
        "agents": [
            {
                "agent": d.agent,
                "figure": d.figure,
                "current": d.assessment.current,
                "baseline": d.assessment.baseline,
                "change": d.assessment.change,
                "team_median": d.assessment.team_median,
                "score": d.assessment.score,
                "abnormal": d.assessment.abnormal,
                "not_assessed": d.assessment.not_assessed,
            }
            for d in found
        ],
    }


def _roster(settings: Settings, team: str) -> list[str]:
    roster = {t.id: t for t in settings.teams}
    if team not in roster:
        raise HTTPException(404, f"team {team!r} is not in the roster")
    return list(roster[team].agents)


def _range(from_: str, to: str) -> tuple[datetime, datetime]:
    try:
        start, end = explicit_bounds(from_, to)
    except WindowError as exc:
        raise HTTPException(422, str(exc)) from None
    if end - start > MAX_QA_SPAN:
        raise HTTPException(422, f"from/to: at most {MAX_QA_SPAN.days} days per request "
                            "(a pay month at most); ask for the periods one by one")  # fmt: skip
    return start, end


def _period_or_range(
    settings: Settings, period: str | None, from_: str | None, to: str | None
) -> tuple[datetime, datetime, str]:
    """The span and the label that seeds the draw: a pay period's id, or
    `<from>/<to>` in the center's zone as the answer shows them (one label for a
    range however it was written)."""
    if period is not None:
        if from_ is not None or to is not None:
            raise HTTPException(422, "period: give a pay period or from/to, not both")
        try:
            p = parse(period, settings.periods, settings.tz)
        except PeriodError as exc:
            raise HTTPException(404, str(exc)) from None
        return p.start, p.end, p.id
    if from_ is None or to is None:
        raise HTTPException(422, "period: give a pay period (e.g. 2026-11) or both from and to")
    start, end = _range(from_, to)
    return start, end, f"{iso(start, settings.tz)}/{iso(end, settings.tz)}"


@router.get(
    "/v1/qa/suspicious",
    responses={404: {"description": "no such team"}, 422: {"description": "a bad range"}},
)
async def suspicious_calls(
    conn: ConnDep,
    settings: SettingsDep,
    team: Team,
    from_: From,
    to: To,
    granularity: Annotated[str, Query(description="15m, 30m, 1h, 1d, 1w or 1mo")] = "1d",
) -> dict[str, Any]:
    """Each agent of `team`'s short, released and repeatedly transferred calls
    per interval of arrival, beside its answered calls (docs/qa.md, "Short and
    suspicious calls"); `calls` links each count to its calls in GET /v1/calls.
    From the call detail: calls older than call_state_retention_days are not
    counted."""
    agents = _roster(settings, team)
    start, end = _range(from_, to)
    try:
        edges = interval_edges(start, end, granularity, settings.tz)
    except WindowError as exc:
        raise HTTPException(422, str(exc)) from None
    records = await team_calls(conn, settings, team, start, end)
    found = count_by_interval(records, agents, [epoch_us(e) for e in edges],
                              settings.qa.short_call_seconds)  # fmt: skip
    rows = []
    for (i, agent), counts in found.items():
        span = {"from": iso(edges[i], settings.tz), "to": iso(edges[i + 1], settings.tz)}
        query = {**span, "team": team, "agent": agent}
        links = {k: "/v1/calls?" + urlencode({**query, "suspicious": k}) for k in SUSPICIOUS}
        rows.append({**span, "agent": agent, "answered": counts.answered, **counts.counts,
                     "calls": links})  # fmt: skip
    return {"team": team, "from": iso(start, settings.tz), "to": iso(end, settings.tz),
            "granularity": granularity, "short_call_seconds": settings.qa.short_call_seconds,
            "rows": rows}  # fmt: skip


SAMPLE_CSV_COLUMNS = ("period", "team", "agent", "abnormal", "reasons", "why", *CALL_COLUMNS)


@router.get(
    "/v1/qa/sample",
    responses={
        404: {"description": "no such team, or no such pay period"},
        422: {"description": "neither a period nor a range, or a bad one"},
    },
)
async def sample(
    conn: ConnDep,
    settings: SettingsDep,
    who: Annotated[Principal, require("read")],
    team: Team,
    period: Annotated[str | None, Query(description="a pay period id, e.g. 2026-11")] = None,
    from_: Annotated[str | None, Query(alias="from", description="or a range: RFC 3339")] = None,
    to: Annotated[str | None, Query(description="RFC 3339, exclusive")] = None,
    format: Literal["json", "csv"] = "json",
) -> Any:
    """Whom to listen to in `team` over a pay period (or a range): every agent
    abnormal on a figure or on short calls, with the reasons, then agents drawn
    by SHA-256 of the period, team and agent until `qa.coverage` of the team;
    each with its suspicious calls' counts and the calls to hear (those that
    show the reasons first). The same request gives the same sample. Each read
    is recorded in the audit log."""
    agents = _roster(settings, team)
    start, end, label = _period_or_range(settings, period, from_, to)
    doc = await listening_sample(conn, settings, team, agents, start, end, label)
    await audit.record(
        conn, at=datetime.now(UTC), actor=who.name, action="read_qa_sample", period=label,
        detail={"team": team, "format": format, "agents": [s["agent"] for s in doc["sample"]]},
    )  # fmt: skip
    await conn.commit()
    for s in doc["sample"]:
        s["calls"] = [_shown(c, settings) for c in s["calls"]]
    doc.update({"from": iso(start, settings.tz), "to": iso(end, settings.tz),
                "calls_kept_from": iso(doc["calls_kept_from"], settings.tz)})  # fmt: skip
    if format == "csv":
        name = f"callkpi-qa-sample-{team}-{label.replace('/', '_').replace(':', '')}.csv"
        disposition = f'attachment; filename="{name}"'
        return Response(_csv(doc), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": disposition})  # fmt: skip
    return doc


def _shown(call: dict[str, Any], settings: Settings) -> dict[str, Any]:
    why = call.pop("why")
    return {"why": why, **shown(call, settings)}


def _csv(doc: dict[str, Any]) -> bytes:
    """One row per call to hear; an agent without calls in the call detail has
    one row with the call's columns empty."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SAMPLE_CSV_COLUMNS, extrasaction="ignore",
                       lineterminator="\n")  # fmt: skip
    w.writeheader()
    for s in doc["sample"]:
        reasons = ";".join(r["figure"] for r in s["reasons"])
        head = {"period": doc["period"], "team": doc["team"], "agent": s["agent"],
                "abnormal": s["abnormal"], "reasons": reasons}  # fmt: skip
        for c in s["calls"] or [{}]:
            row = {**head, **c}
            if "agents" in row:
                row["agents"] = ";".join(a["agent_id"] for a in row["agents"])
            w.writerow({k: cell(row.get(k)) for k in SAMPLE_CSV_COLUMNS})
    return buf.getvalue().encode()

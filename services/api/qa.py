"""Quality assurance: each agent of a team against its own baseline and the
team (`GET /v1/qa/deviations`). docs/qa.md."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from services.api.deps import ConnDep, SettingsDep
from services.core.timewin import WindowError, explicit_bounds, iso
from services.readmodel.deviations import team_deviations

router = APIRouter(tags=["qa"])
# A period and its baseline are read whole (the period and `weeks` shifted
# copies of it): a pay month is the longest anyone assesses; a request for years
# would read every bucket of them `weeks` + 1 times.
MAX_QA_SPAN = timedelta(days=62)


@router.get("/v1/qa/deviations", responses={404: {"description": "no such team in the roster"}})
async def deviations(
    conn: ConnDep,
    settings: SettingsDep,
    team: Annotated[str, Query(description="a team of the roster")],
    from_: Annotated[str, Query(alias="from", description="RFC 3339, minute-aligned")],
    to: Annotated[str, Query(description="RFC 3339, minute-aligned, exclusive")],
    weeks: Annotated[
        int | None, Query(ge=1, le=26, description="weeks of baseline (qa.baseline_weeks)")
    ] = None,
) -> dict[str, Any]:
    """Each agent of `team` on each figure over [from, to): its baseline (the same
    weekday and hours of the `weeks` weeks before), the change, the team's
    median, the robust score, and whether it is abnormal (both beyond their
    thresholds) or why it was not assessed (docs/metrics.md, "Abnormal figures")."""
    roster = {t.id: t for t in settings.teams}
    if team not in roster:
        raise HTTPException(404, f"team {team!r} is not in the roster")
    try:
        start, end = explicit_bounds(from_, to)
    except WindowError as exc:
        raise HTTPException(422, str(exc)) from None
    if end - start > MAX_QA_SPAN:
        raise HTTPException(422, f"from/to: at most {MAX_QA_SPAN.days} days per request "
                            "(a pay month at most); ask for the periods one by one")  # fmt: skip
    found = await team_deviations(conn, settings, list(roster[team].agents), start, end,
                                  weeks=weeks)  # fmt: skip
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

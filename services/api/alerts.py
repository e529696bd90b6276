"""`GET /v1/alerts` and `GET /v1/alerts/{id}`: alerts as the evaluator stored them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Path, Query

from services.alerting.evaluator import alert_json
from services.api.deps import MAX_BIGINT, ConnDep, SettingsDep
from services.core.db import alert_transitions, alerts
from services.core.timewin import WindowError, iso, parse_instant

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


class State(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


class Kind(StrEnum):
    CENTER = "center"
    TEAM = "team"
    QUEUE = "queue"
    AGENT = "agent"


def _instant(name: str, value: str | None) -> datetime | None:
    try:
        return None if value is None else parse_instant(name, value, minute_aligned=False)
    except WindowError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("")
async def list_alerts(
    conn: ConnDep,
    settings: SettingsDep,
    state: Annotated[State | None, Query(description="only alerts in this state")] = None,
    kind: Kind | None = None,
    id: Annotated[str | None, Query(description="entity id (with kind)")] = None,
    rule: Annotated[str | None, Query(description="rule id")] = None,
    from_: Annotated[
        str | None,
        Query(alias="from", description="RFC 3339: alerts still open at or after this instant"),
    ] = None,
    to: Annotated[
        str | None, Query(description="RFC 3339: alerts that opened before this instant")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        int | None,
        Query(
            ge=1, le=MAX_BIGINT, description="page: alerts with a smaller id (use `next_before`)"
        ),
    ] = None,
) -> dict[str, Any]:
    """Newest first. An alert belongs to [from, to) if it was pending or firing at
    some instant of it."""
    start, end = _instant("from", from_), _instant("to", to)
    if start is not None and end is not None and end <= start:
        raise HTTPException(422, "to: must be after from")
    q = sa.select(alerts).order_by(alerts.c.id.desc()).limit(limit)
    if state is not None:
        q = q.where(alerts.c.state == state.value)
    if kind is not None:
        q = q.where(alerts.c.kind == kind.value)
    if id is not None:
        q = q.where(alerts.c.entity_id == id)
    if rule is not None:
        q = q.where(alerts.c.rule_id == rule)
    if end is not None:
        q = q.where(alerts.c.pending_since < end)
    if start is not None:
        q = q.where(sa.or_(alerts.c.resolved_at.is_(None), alerts.c.resolved_at >= start))
    if before is not None:
        q = q.where(alerts.c.id < before)
    rows = (await conn.execute(q)).all()
    items = [alert_json(dict(r._mapping), settings) for r in rows]
    return {
        "items": items,
        "next_before": items[-1]["id"] if len(items) == limit else None,
    }


@router.get("/{alert_id}")
async def get_alert(
    alert_id: Annotated[int, Path(ge=1, le=MAX_BIGINT)], conn: ConnDep, settings: SettingsDep
) -> dict[str, Any]:
    """One alert with its transitions, oldest first."""
    row = (await conn.execute(sa.select(alerts).where(alerts.c.id == alert_id))).first()
    if row is None:
        raise HTTPException(404, f"alert {alert_id}: no such alert")
    t = alert_transitions
    steps = await conn.execute(
        sa.select(t.c.key, t.c.from_state, t.c.to_state, t.c.at, t.c.body, t.c.published_at)
        .where(t.c.alert_id == alert_id)
        .order_by(t.c.id)
    )
    return {
        **alert_json(dict(row._mapping), settings),
        "transitions": [
            {
                "key": s.key,
                "from": s.from_state,
                "to": s.to_state,
                "at": iso(s.at, settings.tz),
                "reason": s.body.get("reason"),
                "observed_value": s.body["alert"]["observed_value"],
                "calls_in_window": s.body["alert"]["calls_in_window"],
                "threshold": s.body["alert"]["threshold"],
                "schedule_class": s.body["alert"]["schedule_class"],
                "published": s.published_at is not None,
            }
            for s in steps
        ],
    }

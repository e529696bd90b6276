"""What a wallboard tile shows (docs/wallboard.md): an entity's last 15 minutes
and today, what is true now, and each alert rule watching it with the line in
force; and the firing alerts. Content only: the feed that pushes tiles to pages
is services/api/stream.py."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerting.evaluator import alert_json, rule_value, watches
from services.alerting.machine import Observation, breach
from services.core.alert_rules import ScheduleClass
from services.core.db import alerts
from services.core.settings import Settings
from services.core.timewin import trailing, window_bounds
from services.readmodel import staffing
from services.readmodel.figures import Figures, Span, entity_extra

Key = tuple[str, str]
# Required against staffed agents over the last half hour: a workforce interval,
# long enough that one call more or less does not move the requirement.
STAFFING_WINDOW = timedelta(minutes=30)
ALERTS_KEY = ("alerts", "firing")

# What a tile shows (docs/wallboard.md): the last 15 minutes and today.
TILE_15M = ("offered", "answered", "abandoned", "answer_rate", "service_level", "asa_seconds")
TILE_TODAY = (
    "offered",
    "answered",
    "abandoned",
    "answer_rate",
    "service_level",
    "asa_seconds",
    "aht_seconds",
    "fcr_rate_provisional",
    "csat",
    "surveys",
)
AGENT_TODAY = (
    "answered",
    "handled",
    "aht_seconds",
    "fcr_rate_provisional",
    "csat",
    "surveys",
    "occupancy",
    "calls_per_hour",
    "logged_in_seconds",
)


def _pick(metrics: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    return {n: metrics[n] for n in names}


@dataclass(frozen=True, slots=True)
class _Read:
    """What every tile of one read shares: its windows and the schedule class."""

    m15: Span
    m30: Span  # the staffing line: the last half hour's load and agents
    today: Span
    schedule_class: ScheduleClass


async def read_tiles(
    conn: AsyncConnection, settings: Settings, now: datetime, keys: list[Key]
) -> list[tuple[Key, dict[str, Any]]]:
    """The tile of each key as of `now` (ALERTS_KEY: the firing alerts), read
    together: each (kind, window) is one grouped query whatever the number of
    tiles."""
    read = _Read(
        m15=trailing(timedelta(minutes=15), now),
        m30=trailing(STAFFING_WINDOW, now),
        today=window_bounds("today", now, settings.tz),
        schedule_class=settings.alerts.schedule.class_at(now, settings.tz),
    )
    figures = Figures(conn, settings, now, reasons=False)
    out = [(k, await _tile(figures, read, k)) for k in keys if k != ALERTS_KEY]
    if ALERTS_KEY in keys:
        rows = await conn.execute(sa.select(alerts).where(alerts.c.state == "firing"))
        items = [alert_json(dict(r._mapping), settings) for r in rows]
        items.sort(key=lambda a: a["id"])
        out.append((ALERTS_KEY, {"kind": "alerts", "items": items}))
    return out


async def _tile(figures: Figures, read: _Read, key: Key) -> dict[str, Any]:
    kind, ident = key
    settings = figures.settings
    extra = entity_extra(settings, kind, ident)
    block = (await figures.live()).block(kind, ident)
    if kind == "agent":
        block.pop("seconds_in_state")  # the page counts from `since`
        today = await figures.entity(kind, ident, read.today)
        return {
            "kind": kind,
            "id": ident,
            **extra,
            "today": _pick(today.metrics(), AGENT_TODAY),
            "live": block,
        }
    wait = block["longest_wait_seconds"]
    # whole seconds: the tile shows no more, and it keeps the update rate at
    # one a second while calls wait
    block["longest_wait_seconds"] = None if wait is None else int(wait)
    name = settings.center_name if kind == "center" else extra.pop("name", "") or ident
    m15 = await figures.entity(kind, ident, read.m15, open_time=False)
    today = await figures.entity(kind, ident, read.today, open_time=False)
    return {
        "kind": kind,
        "id": ident,
        "name": name,
        **extra,
        "m15": _pick(m15.metrics(), TILE_15M),
        "today": _pick(today.metrics(), TILE_TODAY),
        "live": block,
        "staffing": (
            (await staffing.current(figures, kind, ident, read.m30)).json()
            if kind != "queue"
            else None
        ),
        "checks": await _checks(figures, read.schedule_class, kind, ident),
    }


async def _checks(
    figures: Figures, cls: ScheduleClass, kind: str, ident: str
) -> list[dict[str, Any]]:
    """Each alert rule watching this entity, with the line in force now: what
    the page colours by. `crossed`: on the wrong side of the line; `breached`:
    the evaluator's test (crossed on at least min_calls calls), without the
    hold time."""
    out = []
    for rule in figures.settings.alerts.rules:
        if not watches(rule, kind, ident):
            continue
        threshold = rule.thresholds.in_force(cls)
        value, calls = await rule_value(figures, rule, ident)
        obs = Observation(figures.now, cls, threshold, value, calls)
        out.append(
            {
                "rule": rule.id,
                "field": rule.field,
                "window_seconds": int(rule.window.total_seconds()),
                "direction": rule.direction,
                "schedule_class": cls,
                "threshold": threshold,
                "value": value,
                "calls": calls,
                "min_calls": rule.min_calls,
                "crossed": (
                    value is not None and threshold is not None and rule.breached(value, threshold)
                ),
                "breached": breach(rule, obs),
            }
        )
    return out

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
from services.core.kpi import counted_outcomes, ratio
from services.core.settings import Settings
from services.core.timewin import interval_edges, iso, trailing, window_bounds
from services.readmodel import queries, staffing
from services.readmodel.figures import Figures, Span, display_name, entity_extra

Key = tuple[str, str]
# Required against staffed agents over the last half hour: a workforce interval,
# long enough that one call more or less does not move the requirement.
STAFFING_WINDOW = timedelta(minutes=30)
ALERTS_KEY = ("alerts", "firing")
# The sparkline's step: the alert rules' window, and a day of 96 points a tile
TREND_MINUTES = 15

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
    """What every tile of one read shares: its windows, the schedule class and
    each tile's trend of the day."""

    m15: Span
    m30: Span  # the staffing line: the last half hour's load and agents
    today: Span
    schedule_class: ScheduleClass
    trends: dict[Key, list[float | None]]
    oldest: list[tuple[str, str, datetime]]  # (queue, call, arrival), oldest first


async def _trends(
    conn: AsyncConnection, settings: Settings, today: Span, keys: list[Key]
) -> dict[Key, list[float | None]]:
    """Today's answer rate per quarter hour of each tile (the sparkline): one
    query per kind, whatever the number of tiles. The quarter in progress is
    its part so far, as the `today` figure is."""
    edges = interval_edges(today[0], today[1], f"{TREND_MINUTES}m", settings.tz)
    misses = settings.kpi.bases.answer_rate
    out: dict[Key, list[float | None]] = {}
    for kind in {k for k, _ in keys if k not in ("agent", "alerts")}:
        ids = [i for k, i in keys if k == kind]
        rows = await queries.interval_call_counters_by_entity(conn, kind, ids, edges)
        for ident, per in rows.items():
            out[(kind, ident)] = [ratio(c["answered"], counted_outcomes(c, misses)) for c in per]
    return out


async def read_tiles(
    conn: AsyncConnection, settings: Settings, now: datetime, keys: list[Key]
) -> list[tuple[Key, dict[str, Any]]]:
    """The tile of each key as of `now` (ALERTS_KEY: the firing alerts), read
    together: each (kind, window) is one grouped query whatever the number of
    tiles."""
    today = window_bounds("today", now, settings.tz)
    read = _Read(
        m15=trailing(timedelta(minutes=15), now),
        m30=trailing(STAFFING_WINDOW, now),
        today=today,
        schedule_class=settings.alerts.schedule.class_at(now, settings.tz),
        trends=await _trends(conn, settings, today, keys),
        oldest=(
            await queries.oldest_waiting(
                conn, settings.waiting_call_max_age_seconds, settings.wallboard.oldest_waiting
            )
            if settings.wallboard.oldest_waiting
            else []
        ),
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
    extra.pop("name", None)
    name = display_name(settings, kind, ident)
    m15 = await figures.entity(kind, ident, read.m15, open_time=False)
    today = await figures.entity(kind, ident, read.today, open_time=False)
    return {
        "kind": kind,
        "id": ident,
        "name": name,
        **extra,
        "m15": _pick(m15.metrics(), TILE_15M),
        "today": _pick(today.metrics(), TILE_TODAY),
        # the spans of the figures, for links to the calls behind them
        "windows": {
            "m15": [iso(t, settings.tz) for t in read.m15],
            "today": [iso(t, settings.tz) for t in read.today],
        },
        "trend": {
            "from": iso(read.today[0], settings.tz),
            "minutes": TREND_MINUTES,
            "answer_rate": read.trends.get(key, []),
        },
        "live": block | {"oldest": _oldest(settings, read, kind, ident)},
        "staffing": (
            (await staffing.current(figures, kind, ident, read.m30)).json()
            if kind != "queue"
            else None
        ),
        "checks": await _checks(figures, read.schedule_class, kind, ident),
    }


def _oldest(settings: Settings, read: _Read, kind: str, ident: str) -> list[dict[str, str]]:
    """The entity's longest-waiting calls, oldest first: call, queue and arrival
    (the page counts the wait up from it, so the tile changes only when the list
    does)."""
    if kind == "center":
        mine = read.oldest
    elif kind == "team":
        mine = [w for w in read.oldest if settings.queue_team(w[0]) == ident]
    else:
        mine = [w for w in read.oldest if w[0] == ident]
    return [
        {"call_id": c, "queue_id": q, "offered_at": iso(t, settings.tz)}
        for q, c, t in mine[: settings.wallboard.oldest_waiting]
    ]


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

"""What `callkpi export` writes: each kind as a stream of flat rows, in batches,
read the way the API reads them (intervals through `Figures`, calls through the
call detail), so a file equals what the API shows (docs/exports.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.kpi import metrics_for, zero_counters
from services.core.settings import Settings
from services.core.timewin import epoch_us, interval_edges
from services.readmodel import calls as call_detail
from services.readmodel.figures import Figures

KINDS = ("intervals", "calls", "agent-states", "alerts", "payroll")
BATCH = 5000
Row = dict[str, Any]
# A column's type in a file: string, int, float, bool or time (UTC instant)
Columns = list[tuple[str, str]]


def interval_columns(kind: str) -> list[str]:
    """The scalar figures of an entity kind, in the catalogue's order."""
    return [k for k, v in metrics_for(kind, zero_counters()).items() if not isinstance(v, dict)]


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime):
        return "time"
    return "float"  # a float, or None: a rate or mean without a denominator


def _figure_types() -> dict[str, str]:
    """Each figure's type, from the catalogue over counters that are all 1 (every
    denominator filled: a rate comes out a float, a count an int)."""
    ones = dict.fromkeys(zero_counters(), 1)
    out: dict[str, str] = {}
    for kind in ("center", "team", "queue", "agent"):
        for k, v in metrics_for(kind, ones).items():
            if not isinstance(v, dict):
                out.setdefault(k, _type_of(v))
    return out


FIGURE_TYPES = _figure_types()
ENTITY = [("kind", "string"), ("entity_id", "string"), ("from", "time"), ("to", "time")]
COLUMNS: dict[str, Columns] = {
    "intervals": ENTITY + list(FIGURE_TYPES.items()),
    "calls": [
        ("call_id", "string"), ("offered_us", "int"), ("queue_id", "string"), ("team", "string"),
        ("outcome", "string"), ("reason", "string"), ("ended_by", "string"), ("key", "string"),
        ("wait_seconds", "float"), ("talk_seconds", "float"), ("hold_seconds", "float"),
        ("acw_seconds", "float"), ("answered_legs", "int"), ("transferred", "bool"),
        ("agents", "string"), ("last_agent", "string"), ("fcr", "string"),
        ("survey_score", "int"), ("resolved", "bool"), ("complaint", "bool"),
        ("sale_amount", "float"), ("customer", "string"), ("callback_offered", "bool"),
    ],
    "agent-states": [("agent_id", "string"), ("started_at", "time"), ("ended_at", "time"),
                     ("state", "string"), ("reason", "string")],
    "alerts": [
        ("id", "int"), ("rule", "string"), ("kind", "string"), ("entity_id", "string"),
        ("field", "string"), ("state", "string"), ("threshold", "float"),
        ("schedule_class", "string"), ("observed_value", "float"), ("calls_in_window", "int"),
        ("pending_since", "time"), ("fired_at", "time"), ("resolved_at", "time"),
        ("resolution", "string"),
    ],
}  # fmt: skip
_PAYROLL_STRINGS = {"period", "agent_id", "team", "scorecard"}


def columns(kind: str, first: list[Row]) -> Columns:
    """The columns of a kind's file; payroll's are those of its first batch (the
    scorecard a version was closed with decides its score columns; an agent
    without a card has none of them)."""
    if kind != "payroll":
        return COLUMNS[kind]
    names = list(dict.fromkeys(k for r in first for k in r))
    return [(k, "string" if k in _PAYROLL_STRINGS else "int" if k == "version"
             else FIGURE_TYPES.get(k, "float")) for k in names]  # fmt: skip


async def intervals(
    conn: AsyncConnection, settings: Settings, start: datetime, end: datetime, granularity: str
) -> AsyncIterator[list[Row]]:
    """Every entity of every kind, per interval: the figures of
    /v1/kpis/{kind}/{id}/intervals (closed states only, as payroll reads: a file
    is the same whenever it is written after the range)."""
    edges = interval_edges(start, end, granularity, settings.tz)
    figures = Figures(conn, settings, end, grouped=False)
    for kind in ("center", "team", "queue", "agent"):
        names = interval_columns(kind)
        for ident in await figures.ids(kind, (start, end), open_time=False):
            readings = await figures.intervals(kind, ident, edges)
            batch: list[Row] = []
            for i, r in enumerate(readings):
                m = r.metrics()
                batch.append({"kind": kind, "entity_id": ident, "from": edges[i],
                              "to": edges[i + 1], **{n: m[n] for n in names}})  # fmt: skip
            yield batch


async def calls(
    conn: AsyncConnection, settings: Settings, start: datetime, end: datetime
) -> AsyncIterator[list[Row]]:
    batch: list[Row] = []
    async for _pos, rec in call_detail.scan(
        conn, settings, epoch_us(start), epoch_us(end), call_detail.Filters()
    ):
        rec["agents"] = orjson.dumps(rec["agents"]).decode()
        batch.append(rec)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def _rows(
    conn: AsyncConnection, sql: str, params: dict[str, Any]
) -> AsyncIterator[list[Row]]:
    result = await conn.stream(sa.text(sql), params)
    async for part in result.partitions(BATCH):
        yield [dict(r._mapping) for r in part]


def agent_states(conn: AsyncConnection, start: datetime, end: datetime) -> AsyncIterator[list[Row]]:
    return _rows(conn, "SELECT * FROM bi.agent_states WHERE started_at < :e AND ended_at > :s "
                       "ORDER BY agent_id, started_at", {"s": start, "e": end})  # fmt: skip


def alerts(conn: AsyncConnection, start: datetime, end: datetime) -> AsyncIterator[list[Row]]:
    return _rows(conn, "SELECT * FROM bi.alerts WHERE pending_since >= :s AND pending_since < :e "
                       "ORDER BY id", {"s": start, "e": end})  # fmt: skip


async def payroll(
    conn: AsyncConnection, start: datetime, end: datetime
) -> AsyncIterator[list[Row]]:
    """Every agent row of the versions of the periods that start in the range."""
    async for batch in _rows(
        conn,
        "SELECT period, version, agent_id, figures FROM bi.payroll_agents a "
        "WHERE EXISTS (SELECT 1 FROM bi.payroll_versions v WHERE v.period = a.period "
        "AND v.version = a.version AND v.period_start >= :s AND v.period_start < :e) "
        "ORDER BY period, version, agent_id",
        {"s": start, "e": end},
    ):
        out = []
        for r in batch:
            figures = r.pop("figures")
            if isinstance(figures, str):  # a json column comes back as text
                figures = orjson.loads(figures)
            out.append({**r, **{k: v for k, v in figures.items() if not isinstance(v, dict)}})
        yield out

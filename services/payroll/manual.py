"""Manual scorecard items (exam scores, QA scores, absences, complaint escalations
by level): figures the telephony cannot know, uploaded per period as CSV, stored
one value per (period, agent, item).

The CSV is one row per agent: `agent_id` then one column per item, UTF-8 (a BOM,
as spreadsheets write, is accepted). An empty cell leaves that item as it was.
A file is taken whole or not at all: every problem is reported with its line and
column, and nothing is stored until none is left, so a half-applied upload can
never score half the agents on old figures.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.db import manual_items
from services.core.problems import Problems
from services.payroll import audit

# a statement carries at most 32,767 parameters, 6 per value here
_CHUNK = 4000


@dataclass
class Parsed(Problems):
    values: list[tuple[str, str, Decimal]] = field(default_factory=list)  # agent, item, value


def parse_csv(text: str, items: list[str], agents: set[str] | None) -> Parsed:
    """Values from a manual-items CSV. `items`: the names the scorecards use;
    `agents`: the roster (None: any agent id)."""
    out = Parsed()
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    header = next(reader, None)
    if not header or header[0].strip() != "agent_id":
        out.problem("line 1: the header must start with agent_id, then one column per item")
        return out
    columns = [h.strip() for h in header[1:]]
    for col, name in enumerate(columns, start=2):
        if name not in items:
            known = ", ".join(items) or "none: the scorecards use no manual items"
            out.problem(
                f"line 1, column {col}: unknown item {name!r} (the scorecards use: {known})"
            )
        elif columns.index(name) != col - 2:
            out.problem(f"line 1, column {col}: item {name!r} appears twice")
    if out.problems:
        return out
    seen: dict[str, int] = {}
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        agent = row[0].strip()
        if len(row) > len(header):
            out.problem(f"line {line}: {len(row)} cells, the header has {len(header)}")
            continue
        if not agent:
            out.problem(f"line {line}, column 1: agent_id is empty")
            continue
        if agents is not None and agent not in agents:
            out.problem(f"line {line}, column 1: agent {agent!r} is not in the roster")
            continue
        if agent in seen:
            out.problem(f"line {line}: agent {agent!r} already on line {seen[agent]}")
            continue
        seen[agent] = line
        for col, (name, cell) in enumerate(zip(columns, row[1:], strict=False), start=2):
            cell = cell.strip()
            if not cell:
                continue
            try:
                value = Decimal(cell)
            except InvalidOperation:
                out.problem(f"line {line}, column {col} ({name}): {cell!r} is not a number")
                continue
            if not value.is_finite():
                out.problem(f"line {line}, column {col} ({name}): {cell!r} is not a finite number")
                continue
            out.values.append((agent, name, value))
    return out


async def store(
    conn: AsyncConnection,
    period: str,
    values: list[tuple[str, str, Decimal]],
    *,
    by: str,
    now: datetime,
) -> int:
    """Upsert the values and the upload's audit row; the number of agents. Call
    inside a transaction."""
    for start in range(0, len(values), _CHUNK):
        rows = [{"period": period, "agent_id": a, "item": i, "value": v, "updated_at": now,
                 "updated_by": by} for a, i, v in values[start : start + _CHUNK]]  # fmt: skip
        stmt = pg_insert(manual_items).values(rows)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["period", "agent_id", "item"],
                set_={"value": stmt.excluded.value, "updated_at": now, "updated_by": by},
            )
        )
    agents = sorted({a for a, _, _ in values})
    await audit.record(conn, at=now, actor=by, action="manual_items", period=period,
                       detail={"values": len(values), "agents": agents})  # fmt: skip
    return len(agents)


async def manual_values(conn: AsyncConnection, period: str) -> dict[str, dict[str, float]]:
    """{agent: {item: value}} uploaded for a period."""
    t = manual_items
    rows = await conn.execute(
        sa.select(t.c.agent_id, t.c.item, t.c.value).where(t.c.period == period)
    )
    out: dict[str, dict[str, float]] = {}
    for agent, item, value in rows:
        out.setdefault(agent, {})[item] = float(value)
    return out

"""The worker's processor against a test database, without a broker: envelopes
as the worker receives them, the figures it stored read back whole, a fixed
clock, and a call that any of these tests can count."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.core.db import asyncpg_dsn
from services.core.envelope import Envelope
from services.core.events import normalize, parse_timestamp_us, partition_for, routing_key
from services.core.kpi import COUNTER_TABLES, COUNTERS, metrics_for
from services.kpi_stream.processor import Processor
from tests.support.small_center import SETTINGS

KEY = b"test-key"
# The worker's clock in these tests: after every event they hold, so that what
# they count never depends on the day the suite runs (the worker sets aside events
# ahead of its clock).
CLOCK_US = 1_800_000_000_000_000  # 2027-01-15T08:00:00Z


def clock() -> int:
    return CLOCK_US


async def read_figures(conn: asyncpg.Connection) -> dict[tuple[str, str], dict[str, Any]]:
    per_entity: dict[tuple[str, str], dict[str, int]] = {}
    for table, columns in COUNTER_TABLES:
        sums = ", ".join(f"sum({c})::bigint AS {c}" for c in columns)
        for r in await conn.fetch(f"SELECT kind, entity_id, {sums} FROM {table} GROUP BY 1, 2"):
            slot = per_entity.setdefault((r["kind"], r["entity_id"]), dict.fromkeys(COUNTERS, 0))
            slot.update({c: int(r[c]) for c in columns})
    reasons: dict[tuple[str, str], dict[str, int]] = {}
    for r in await conn.fetch(
        "SELECT kind, entity_id, reason, sum(not_ready_us)::bigint AS us "
        "FROM kpi_reason_buckets GROUP BY 1, 2, 3"
    ):
        reasons.setdefault((r["kind"], r["entity_id"]), {})[r["reason"]] = int(r["us"])
    # agents' own time: their segments, whole
    for r in await conn.fetch(
        "SELECT agent_id, state, reason, sum(sign * (end_us - start_us))::bigint AS us "
        "FROM agent_segments GROUP BY 1, 2, 3"
    ):
        key = ("agent", r["agent_id"])
        slot = per_entity.setdefault(key, dict.fromkeys(COUNTERS, 0))
        slot["logged_in_us"] += r["us"]
        slot[f"{r['state']}_us"] += r["us"]
        if r["reason"] is not None:
            mine = reasons.setdefault(key, {})
            mine[r["reason"]] = mine.get(r["reason"], 0) + r["us"]
    out = {}
    for key, counters in per_entity.items():
        if any(counters.values()):
            # the small center's definitions, its answer-rate misses included
            out[key] = metrics_for(key[0], counters, reasons.get(key), bases=SETTINGS.kpi.bases)
    return out


def envelopes(batch: list[dict[str, Any]]) -> list[Envelope]:
    by_part: dict[int, list[dict[str, Any]]] = {}
    for ev in (normalize(e, KEY) for e in batch):
        by_part.setdefault(partition_for(routing_key(ev), SETTINGS.partitions), []).append(ev)
    return [Envelope(p, 0, evs) for p, evs in by_part.items()]


BASE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
NOW_US = parse_timestamp_us("2026-11-20T12:00:00Z")  # the worker's clock in these tests


def at(minutes: float) -> str:
    return (BASE + timedelta(minutes=minutes)).isoformat()


def call(n: int, minute: float, customer: str = "+8613800000001") -> list[dict[str, Any]]:
    cid = f"q{n}"
    return [
        {"event_id": f"{cid}-o", "type": "call.offered", "occurred_at": at(minute), "call_id": cid,
         "queue_id": "billing", "customer_id": customer},
        {"event_id": f"{cid}-a", "type": "call.answered", "occurred_at": at(minute + 0.2),
         "call_id": cid, "agent_id": "a1"},
        {"event_id": f"{cid}-e", "type": "call.ended", "occurred_at": at(minute + 3),
         "call_id": cid, "ended_by": "customer"},
        {"event_id": f"{cid}-d", "type": "call.disposition", "occurred_at": at(minute + 3.5),
         "call_id": cid, "agent_id": "a1", "sale_amount": 12.5},
    ]  # fmt: skip


@dataclass
class Rig:
    """A worker's processor against a test database, keeping the facts it sends."""

    pool: asyncpg.Pool
    facts: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, by_part: dict[int, list[dict[str, Any]]]) -> None:
        self.facts.extend(f for fs in by_part.values() for f in fs)

    def processor(self) -> Processor:
        """A new worker process (nothing cached) with the tests' clock."""
        return Processor(SETTINGS, self.pool, self.send, "test", clock=lambda: NOW_US)

    async def figures(self) -> dict[Any, Any]:
        async with self.pool.acquire() as conn:
            return await read_figures(conn)


@asynccontextmanager
async def rig(url: str) -> AsyncIterator[Rig]:
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=4)
    try:
        yield Rig(pool)
    finally:
        await pool.close()

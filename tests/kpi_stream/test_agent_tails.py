"""Agent timelines kept as tails (Settings.agent_timeline_tail_seconds), each state
event stored once in agent_state_events: what falls before a tail is placed from
Postgres, and counts as if the whole timeline had been kept."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
import orjson

from services.core.db import asyncpg_dsn
from services.devstack import EmbeddedPostgres
from services.kpi_stream.processor import Processor
from services.kpi_stream.retention import enforce_retention
from tests.support.databases import new_database
from tests.support.processor_rig import BASE, clock, envelopes, read_figures
from tests.support.small_center import SETTINGS

TAILS = SETTINGS.model_copy(update={"agent_timeline_tail_seconds": 60})


def state(eid: str, minutes: float, st: str) -> dict[str, Any]:
    return {"event_id": eid, "type": "agent.state", "agent_id": "a1", "state": st,
            "occurred_at": (BASE + timedelta(minutes=minutes)).isoformat()}  # fmt: skip


async def _nothing(_: Any) -> None:
    return None


async def count(url: str, *batches: list[dict[str, Any]]) -> tuple[dict[Any, Any], int]:
    """Figures after the batches, and the state events stored."""
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=2)
    try:
        proc = Processor(TAILS, pool, _nothing, "test", clock=clock)
        for i, batch in enumerate(batches):
            if i % 2:
                proc.forget()  # half the batches start from Postgres, not the cache
            await proc.process_events(envelopes(batch))
        async with pool.acquire() as conn:
            stored = await conn.fetchval("SELECT count(*) FROM agent_state_events")
            return await read_figures(conn), int(stored)
    finally:
        await pool.close()


def test_conflicting_copy_hours_before_the_tail_replaces_the_stored_one_in_any_order(
    pg: EmbeddedPostgres,
) -> None:
    # "s2" is sent twice (a buggy source): at 09:05 and at 13:00, hours apart, so
    # whichever copy comes second finds the first one before its tail, in Postgres.
    # The copy whose serialisation sorts first counts, once, whatever the order.
    base = [state("s1", 0, "available"), state("s3", 30, "not_ready"),
            state("s4", 5 * 60, "logged_out")]  # fmt: skip
    early, late = state("s2", 5, "on_call"), state("s2", 4 * 60, "wrap_up")
    winner = min(early, late, key=lambda e: orjson.dumps(e))
    want, _ = asyncio.run(count(new_database(pg), [*base, winner]))
    orders = [
        [base, [early], [late]],
        [base, [late], [early]],
        [[late], base, [early]],
        [base, [late], [late, early], [early]],
    ]
    for batches in orders:
        got, stored = asyncio.run(count(new_database(pg), *batches))
        assert got == want, batches
        assert stored == 4, batches  # one row per event id


def test_a_late_event_a_day_before_the_tail_splits_the_stored_segment(pg: EmbeddedPostgres) -> None:
    # a day of states in order, then one event of the morning arrives at night
    day = [state(f"s{i}", i * 45, ("available", "on_call", "wrap_up")[i % 3]) for i in range(20)]
    lost = state("late", 3 * 45 + 10, "not_ready")
    want, _ = asyncio.run(count(new_database(pg), [*day, lost]))
    got, stored = asyncio.run(count(new_database(pg), day[:10], day[10:], [lost], [lost]))
    assert got == want
    assert stored == 21


def test_retention_keeps_the_state_events_of_its_horizon_and_the_one_in_force_there(
    pg: EmbeddedPostgres,
) -> None:
    # one state a day for 20 days; with 14 days of retention, the events older
    # than 14 days before the newest go but the last of them, which starts the
    # segment in force at the horizon
    url = new_database(pg)
    days = [state(f"d{i}", i * 24 * 60, "available") for i in range(20)]
    asyncio.run(count(url, days))

    async def retained() -> list[str]:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=1)
            try:
                await enforce_retention(pool, TAILS, clock())
            finally:
                await pool.close()
            rows = await conn.fetch("SELECT event_id FROM agent_state_events ORDER BY ts_us")
            return [r["event_id"] for r in rows]
        finally:
            await conn.close()

    assert TAILS.call_state_retention_days == 14
    assert asyncio.run(retained()) == [f"d{i}" for i in range(4, 20)]

"""Housekeeping: figures past `retention_days`, call states past
`call_state_retention_days`, and final FCR rows no window can reach any more are
deleted (docs/operations.md)."""

from __future__ import annotations

import asyncpg

from services.core.kpi import COUNTER_TABLES
from services.core.settings import Settings


async def enforce_retention(pool: asyncpg.Pool, settings: Settings, now_us: int) -> None:
    s = settings
    async with pool.acquire() as conn:
        for table in (*(t for t, _ in COUNTER_TABLES), "kpi_reason_buckets"):
            await conn.execute(
                f"DELETE FROM {table} WHERE bucket < now() - make_interval(days => $1)",
                s.retention_days,
            )
        await conn.execute(
            "DELETE FROM agent_segments WHERE end_us < $1",
            now_us - s.retention_days * 86_400_000_000,
        )
        # state events older than their agent's newest by more than the retention,
        # but the newest of those: it starts the segment in force at the horizon
        # (as trim() keeps it in a timeline)
        await conn.execute(
            """
            DELETE FROM agent_state_events e USING agent_timelines t
            WHERE e.agent_id = t.agent_id AND e.ts_us < t.since_us - $1
              AND EXISTS (
                SELECT 1 FROM agent_state_events f
                WHERE f.agent_id = e.agent_id AND f.ts_us < t.since_us - $1
                  AND (f.ts_us, f.event_id COLLATE "C") > (e.ts_us, e.event_id COLLATE "C"))
            """,
            s.call_state_retention_us,
        )
        await conn.execute(
            "DELETE FROM calls WHERE updated_at < now() - make_interval(days => $1)",
            s.call_state_retention_days,
        )
        await conn.execute(
            "DELETE FROM fcr_calls WHERE NOT pending AND offered_us < $1",
            now_us - s.call_state_retention_us - s.kpi.fcr_window_us,
        )

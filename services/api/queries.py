"""SQL for the figures: sums of minute-bucket counters over a time range."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.kpi import COUNTERS, zero_counters

_SUMS = ", ".join(f"coalesce(sum({c}), 0)::bigint AS {c}" for c in COUNTERS)


def _counters(row: Any) -> dict[str, int]:
    m = row._mapping
    return {c: int(m[c]) for c in COUNTERS}


async def entity_exists(conn: AsyncConnection, kind: str, entity_id: str) -> bool:
    row = await conn.execute(
        sa.text("SELECT 1 FROM kpi_buckets WHERE kind = :k AND entity_id = :i LIMIT 1"),
        {"k": kind, "i": entity_id},
    )
    return row.first() is not None


async def window_counters(
    conn: AsyncConnection, kind: str, entity_id: str, start: datetime, end: datetime
) -> dict[str, int]:
    result = await conn.execute(
        sa.text(
            f"SELECT {_SUMS} FROM kpi_buckets WHERE kind = :k AND entity_id = :i "
            "AND bucket >= :s AND bucket < :e"
        ),
        {"k": kind, "i": entity_id, "s": start, "e": end},
    )
    row = result.first()
    return _counters(row) if row is not None else zero_counters()


async def window_counters_by_entity(
    conn: AsyncConnection, kind: str, start: datetime, end: datetime
) -> dict[str, dict[str, int]]:
    result = await conn.execute(
        sa.text(
            f"SELECT entity_id, {_SUMS} FROM kpi_buckets WHERE kind = :k "
            "AND bucket >= :s AND bucket < :e GROUP BY entity_id"
        ),
        {"k": kind, "s": start, "e": end},
    )
    return {row.entity_id: _counters(row) for row in result}


async def interval_counters(
    conn: AsyncConnection, kind: str, entity_id: str, edges: list[datetime]
) -> list[dict[str, int]]:
    """Counters per interval [edges[i], edges[i+1]); grouped in SQL with width_bucket."""
    result = await conn.execute(
        sa.text(
            f"SELECT width_bucket(bucket, CAST(:edges AS timestamptz[])) AS slot, {_SUMS} "
            "FROM kpi_buckets WHERE kind = :k AND entity_id = :i "
            "AND bucket >= :s AND bucket < :e GROUP BY slot"
        ),
        {"k": kind, "i": entity_id, "s": edges[0], "e": edges[-1], "edges": edges},
    )
    out = [zero_counters() for _ in range(len(edges) - 1)]
    for row in result:
        out[int(row.slot) - 1] = _counters(row)
    return out


async def known_entities(conn: AsyncConnection, kind: str) -> list[str]:
    result = await conn.execute(
        sa.text("SELECT DISTINCT entity_id FROM kpi_buckets WHERE kind = :k"), {"k": kind}
    )
    return [r.entity_id for r in result]


async def pipeline_stats(conn: AsyncConnection) -> dict[str, Any]:
    result = await conn.execute(
        sa.text(
            "SELECT coalesce(sum(events_processed), 0)::bigint AS processed, "
            "coalesce(max(last_lag_us) FILTER (WHERE updated_at > now() - interval '5 minutes'), 0)"
            "::bigint AS lag_us, max(updated_at) AS updated_at FROM worker_stats"
        )
    )
    row = result.one()
    return {
        "processed": int(row.processed),
        "lag_us": int(row.lag_us),
        "updated_at": row.updated_at,
    }

"""SQL for the figures: sums of minute-bucket counters over a time range, and of
agents' state segments' overlap with it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.agents import SEGMENT_PIECE_US
from services.core.calls import AGENT_QUEUE, AGENT_QUEUE_SEP, agent_queue_id
from services.core.db import quarantine
from services.core.kpi import COUNTER_TABLES, zero_counters
from services.core.timewin import epoch_us

# Call counters, agent time and FCR counters are kept in three tables
# (services/core/kpi.py says why); every read sums them over the same buckets.
# Existence and entity lists need only the first two: an FCR row is always for a
# call that has a kpi_buckets row in the same bucket.
#
# An agent's own time is in agent_segments (migration 0010), plus the minute rows
# of kpi_time_buckets and kpi_reason_buckets written before it: agent reads add
# both. The API's ranges are whole minutes, so a segment's overlap with a range is
# exactly what its minute buckets would hold.
_SEGMENT_TIME = """
SELECT iv.n AS slot, g.agent_id, g.state, g.reason,
       sum(g.sign * (least(g.end_us, iv.e) - greatest(g.start_us, iv.s)))::bigint AS us
FROM unnest(CAST(:s AS bigint[]), CAST(:e AS bigint[])) WITH ORDINALITY AS iv(s, e, n)
JOIN agent_segments g
  ON g.start_us >= iv.s - :piece AND g.start_us < iv.e AND g.end_us > iv.s
-- the whole range again as plain values, which the indexes can use
WHERE g.start_us >= :lo AND g.start_us < :hi {one}
GROUP BY iv.n, g.agent_id, g.state, g.reason
"""


async def _segment_time(
    conn: AsyncConnection, edges: list[datetime], agent_id: str | None = None
) -> list[Any]:
    """Rows (slot, agent_id, state, reason, us): agents' segment time per interval
    [edges[slot-1], edges[slot]), per agent (or for one), state and reason."""
    one = "AND g.agent_id = :i" if agent_id is not None else ""
    result = await conn.execute(
        sa.text(_SEGMENT_TIME.format(one=one)),
        {
            "s": [epoch_us(t) for t in edges[:-1]],
            "e": [epoch_us(t) for t in edges[1:]],
            "i": agent_id,
            "piece": SEGMENT_PIECE_US,
            "lo": epoch_us(edges[0]) - SEGMENT_PIECE_US,
            "hi": epoch_us(edges[-1]),
        },
    )
    return list(result)


def _add_time(into: dict[str, int], row: Any) -> None:
    us = int(row.us)
    into["logged_in_us"] += us
    into[f"{row.state}_us"] += us


def _add_reason(into: dict[str, int], row: Any) -> None:
    if row.state == "not_ready":
        into[row.reason] = into.get(row.reason, 0) + int(row.us)


def _sums(columns: tuple[str, ...]) -> str:
    return ", ".join(f"coalesce(sum({c}), 0)::bigint AS {c}" for c in columns)


def _take(row: Any, columns: tuple[str, ...], into: dict[str, int]) -> None:
    m = row._mapping
    for c in columns:
        into[c] = int(m[c])


async def entity_exists(conn: AsyncConnection, kind: str, entity_id: str) -> bool:
    row = await conn.execute(
        sa.text(
            "SELECT 1 FROM kpi_buckets WHERE kind = :k AND entity_id = :i "
            "UNION ALL SELECT 1 FROM kpi_time_buckets WHERE kind = :k AND entity_id = :i "
            "UNION ALL SELECT 1 FROM agent_timelines WHERE :k = 'agent' AND agent_id = :i LIMIT 1"
        ),
        {"k": kind, "i": entity_id},
    )
    return row.first() is not None


async def window_counters(
    conn: AsyncConnection, kind: str, entity_id: str, start: datetime, end: datetime
) -> dict[str, int]:
    out = zero_counters()
    for table, columns in COUNTER_TABLES:
        result = await conn.execute(
            sa.text(
                f"SELECT {_sums(columns)} FROM {table} WHERE kind = :k AND entity_id = :i "
                "AND bucket >= :s AND bucket < :e"
            ),
            {"k": kind, "i": entity_id, "s": start, "e": end},
        )
        row = result.first()
        if row is not None:
            _take(row, columns, out)
    if kind == "agent":
        for r in await _segment_time(conn, [start, end], entity_id):
            _add_time(out, r)
    return out


async def window_counters_by_entity(
    conn: AsyncConnection, kind: str, start: datetime, end: datetime
) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for table, columns in COUNTER_TABLES:
        result = await conn.execute(
            sa.text(
                f"SELECT entity_id, {_sums(columns)} FROM {table} WHERE kind = :k "
                "AND bucket >= :s AND bucket < :e GROUP BY entity_id"
            ),
            {"k": kind, "s": start, "e": end},
        )
        for row in result:
            _take(row, columns, out.setdefault(row.entity_id, zero_counters()))
    if kind == "agent":
        for r in await _segment_time(conn, [start, end]):
            _add_time(out.setdefault(r.agent_id, zero_counters()), r)
    return out


async def _interval_sums(
    conn: AsyncConnection,
    tables: tuple[tuple[str, tuple[str, ...]], ...],
    kind: str,
    ids: list[str],
    edges: list[datetime],
) -> dict[str, list[dict[str, int]]]:
    """Counters of `tables` per entity of `ids` per interval [edges[i],
    edges[i+1]), grouped in SQL with width_bucket: one query per table for all
    the entities."""
    out = {i: [zero_counters() for _ in range(len(edges) - 1)] for i in ids}
    for table, columns in tables:
        result = await conn.execute(
            sa.text(
                "SELECT entity_id, width_bucket(bucket, CAST(:edges AS timestamptz[])) AS slot, "
                f"{_sums(columns)} FROM {table} WHERE kind = :k AND entity_id = ANY(:ids) "
                "AND bucket >= :s AND bucket < :e GROUP BY entity_id, slot"
            ),
            {"k": kind, "ids": ids, "s": edges[0], "e": edges[-1], "edges": edges},
        )
        for row in result:
            _take(row, columns, out[row.entity_id][int(row.slot) - 1])
    return out


async def interval_counters(
    conn: AsyncConnection, kind: str, entity_id: str, edges: list[datetime]
) -> list[dict[str, int]]:
    """One entity's counters per interval [edges[i], edges[i+1])."""
    out = (await _interval_sums(conn, COUNTER_TABLES, kind, [entity_id], edges))[entity_id]
    if kind == "agent":
        for r in await _segment_time(conn, edges, entity_id):
            _add_time(out[int(r.slot) - 1], r)
    return out


async def interval_call_counters_by_entity(
    conn: AsyncConnection, kind: str, ids: list[str], edges: list[datetime]
) -> dict[str, list[dict[str, int]]]:
    """Call counters per entity of `ids` per interval: one query for every tile
    of a kind (the wallboard's trend of the day). No agent time, no FCR."""
    return await _interval_sums(conn, COUNTER_TABLES[:1], kind, ids, edges)


async def agent_queue_counters(
    conn: AsyncConnection, agent_id: str, queue_ids: list[str], start: datetime, end: datetime
) -> dict[str, dict[str, int]]:
    """The agent's counters in each of `queue_ids` over [start, end), for the queues
    it has any in: one index range per (agent, queue) pair, never a scan of every
    agent's rows. No agent time: it is the agent's, not a queue's."""
    ids = [agent_queue_id(agent_id, q) for q in queue_ids]
    out: dict[str, dict[str, int]] = {}
    for table, columns in COUNTER_TABLES:
        if table == "kpi_time_buckets":
            continue
        result = await conn.execute(
            sa.text(
                f"SELECT entity_id, {_sums(columns)} FROM {table} WHERE kind = :k "
                "AND entity_id = ANY(:ids) AND bucket >= :s AND bucket < :e GROUP BY entity_id"
            ),
            {"k": AGENT_QUEUE, "ids": ids, "s": start, "e": end},
        )
        for row in result:
            queue = row.entity_id.split(AGENT_QUEUE_SEP, 1)[1]
            _take(row, columns, out.setdefault(queue, zero_counters()))
    return out


async def call_entities(
    conn: AsyncConnection, kind: str, start: datetime, end: datetime
) -> list[str]:
    """The ids of `kind` with call counters in [start, end): ids only, no sums (an
    agent's `?by=queue` needs the queues to look in, not their figures)."""
    result = await conn.execute(
        sa.text(
            "SELECT DISTINCT entity_id FROM kpi_buckets WHERE kind = :k "
            "AND bucket >= :s AND bucket < :e"
        ),
        {"k": kind, "s": start, "e": end},
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


async def reason_counters_by_entity(
    conn: AsyncConnection, kind: str, start: datetime, end: datetime, entity_id: str | None = None
) -> dict[str, dict[str, int]]:
    """Not-ready microseconds per reason, per entity of a kind (or one entity)."""
    one = "AND entity_id = :i " if entity_id is not None else ""
    result = await conn.execute(
        sa.text(
            "SELECT entity_id, reason, sum(not_ready_us)::bigint AS us FROM kpi_reason_buckets "
            f"WHERE kind = :k {one}AND bucket >= :s AND bucket < :e GROUP BY entity_id, reason"
        ),
        {"k": kind, "i": entity_id, "s": start, "e": end},
    )
    out: dict[str, dict[str, int]] = {}
    for row in result:
        out.setdefault(row.entity_id, {})[row.reason] = int(row.us)
    if kind == "agent":
        for r in await _segment_time(conn, [start, end], entity_id):
            _add_reason(out.setdefault(r.agent_id, {}), r)
    return out


async def interval_reasons(
    conn: AsyncConnection, kind: str, entity_id: str, edges: list[datetime]
) -> list[dict[str, int]]:
    result = await conn.execute(
        sa.text(
            "SELECT width_bucket(bucket, CAST(:edges AS timestamptz[])) AS slot, reason, "
            "sum(not_ready_us)::bigint AS us FROM kpi_reason_buckets "
            "WHERE kind = :k AND entity_id = :i AND bucket >= :s AND bucket < :e "
            "GROUP BY slot, reason"
        ),
        {"k": kind, "i": entity_id, "s": edges[0], "e": edges[-1], "edges": edges},
    )
    out: list[dict[str, int]] = [{} for _ in range(len(edges) - 1)]
    for row in result:
        out[int(row.slot) - 1][row.reason] = int(row.us)
    if kind == "agent":
        for r in await _segment_time(conn, edges, entity_id):
            _add_reason(out[int(r.slot) - 1], r)
    return out


_STATE_SPANS = """
SELECT agent_id, start_us, end_us, state, reason
FROM agent_segments
WHERE start_us >= :lo AND start_us < :e AND end_us > :s {one}
GROUP BY agent_id, start_us, end_us, state, reason
HAVING sum(sign) > 0
ORDER BY agent_id, start_us
"""


async def state_spans(
    conn: AsyncConnection, start_us: int, end_us: int, agents: list[str] | None = None
) -> dict[str, list[tuple[int, int, str, str | None]]]:
    """Each agent's closed state segments overlapping [start, end), as they stand:
    a segment a late event replaced (stored again with sign -1) is left out."""
    one = "AND agent_id = ANY(:agents)" if agents is not None else ""
    result = await conn.execute(
        sa.text(_STATE_SPANS.format(one=one)),
        {"lo": start_us - SEGMENT_PIECE_US, "s": start_us, "e": end_us, "agents": agents},
    )
    out: dict[str, list[tuple[int, int, str, str | None]]] = {}
    for r in result:
        out.setdefault(r.agent_id, []).append((int(r.start_us), int(r.end_us), r.state, r.reason))
    return out


async def first_bucket(conn: AsyncConnection) -> datetime | None:
    """The first minute with call counters (where history begins)."""
    value: datetime | None = await conn.scalar(
        sa.text("SELECT min(bucket) FROM kpi_buckets WHERE kind = 'center'")
    )
    return value


async def agent_states(conn: AsyncConnection) -> list[tuple[str, str, str | None, int]]:
    """(agent, state, reason, since µs): each agent's latest state change."""
    result = await conn.execute(
        sa.text("SELECT agent_id, state, reason, since_us FROM agent_timelines")
    )
    return [(r.agent_id, r.state, r.reason, int(r.since_us)) for r in result]


async def waiting_calls(conn: AsyncConnection, max_age_s: int) -> list[tuple[str, int, datetime]]:
    """(queue, calls waiting, earliest arrival) for calls waiting now."""
    result = await conn.execute(
        sa.text(
            "SELECT queue_id, count(*) AS n, min(offered_at) AS oldest FROM calls "
            "WHERE waiting AND offered_at > now() - make_interval(secs => :age) "
            "GROUP BY queue_id"
        ),
        {"age": max_age_s},
    )
    return [(r.queue_id, int(r.n), r.oldest) for r in result]


async def oldest_waiting(
    conn: AsyncConnection, max_age_s: int, per_queue: int
) -> list[tuple[str, str, datetime]]:
    """(queue, call id, arrival) of the `per_queue` longest-waiting calls of each
    queue, oldest first: enough for any tile to list its oldest `per_queue`."""
    result = await conn.execute(
        sa.text(
            "SELECT queue_id, call_id, offered_at FROM (SELECT queue_id, call_id, offered_at, "
            "row_number() OVER (PARTITION BY queue_id ORDER BY offered_at, call_id) AS n "
            "FROM calls WHERE waiting AND offered_at > now() - make_interval(secs => :age)) w "
            "WHERE n <= :per ORDER BY offered_at, call_id"
        ),
        {"age": max_age_s, "per": per_queue},
    )
    return [(r.queue_id, r.call_id, r.offered_at) for r in result]


async def quarantine_waiting(conn: AsyncConnection) -> dict[str, dict[str, Any]]:
    """Per stage: events set aside and not replayed since, and the oldest one's time."""
    result = await conn.execute(
        sa.text(
            "SELECT stage, count(*) AS n, min(quarantined_at) AS oldest FROM quarantine "
            "WHERE replayed_at IS NULL GROUP BY stage"
        )
    )
    return {r.stage: {"events": int(r.n), "oldest": r.oldest} for r in result}


async def quarantine_rows(
    conn: AsyncConnection, *, stage: str | None, after_id: int, limit: int, replayed: bool
) -> list[dict[str, Any]]:
    """Quarantined items oldest first, after `after_id` (keyset paging)."""
    q = quarantine
    query = sa.select(q).where(q.c.id > after_id).order_by(q.c.id).limit(limit)
    if stage is not None:
        query = query.where(q.c.stage == stage)
    if not replayed:
        query = query.where(q.c.replayed_at.is_(None))
    return [dict(r._mapping) for r in await conn.execute(query)]

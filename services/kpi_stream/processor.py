"""Postgres driver for the worker's two stages (logic in core.py).

Each batch is one transaction that (a) takes a transaction-scoped advisory lock
per Kafka partition in the batch, so two workers overlapping during a rebalance
cannot interleave on the same calls, (b) loads the state it needs (from a
write-through cache that is dropped on every rebalance), (c) writes the new call
states and the bucket deltas, and (d) commits. Kafka offsets are committed by
Faust only after the batch returns, so a crash anywhere replays the batch, and
the replay finds its events already stored: at-least-once delivery, exactly-once
effects.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from services.core.agents import ReasonKey, StateEvent
from services.core.calls import Contribution, Counters, DeltaKey
from services.core.events import EventError, normalize, partition_for
from services.core.kpi import AGENT_TIME_COUNTERS, CALL_COUNTERS
from services.core.settings import Settings
from services.kpi_stream.core import (
    CallState,
    FcrRow,
    apply_facts,
    assemble,
    group_events,
    track_agents,
)

log = logging.getLogger("callkpi.worker")

# Customers finalised per sweep transaction. The sweep is CPU work on the event
# loop: after a long gap in event time (an import, a replay) tens of thousands of
# candidates become final at once, and one big chunk stalled call assembly for
# ~5 s (freshness p99 5.3 s in the bench); chunks of 500 take ~0.1 s each.
SWEEP_CHUNK = 500

# Advisory lock namespaces (first key of pg_advisory_xact_lock(int, int)).
LOCK_EVENTS = 7411
LOCK_FCR = 7412

SendFacts = Callable[[dict[int, list[dict[str, Any]]]], Awaitable[None]]


# The deltas travel as one JSON array of rows expanded by json_to_recordset: orjson
# and Postgres' JSON parser are both C, whereas asyncpg encodes 21 bigint[] arrays
# element by element (measured: ~40% of the worker's Python time at 12k rows/batch).
def _additive_upsert(table: str, columns: tuple[str, ...]) -> str:
    """One set-based upsert adding counters to minute-bucket rows. The ORDER BY
    makes concurrent transactions lock rows in the same order: no deadlocks."""
    return """
INSERT INTO {t} (kind, entity_id, bucket, {cols})
SELECT k, i, to_timestamp(b), {coalesced}
FROM json_to_recordset($1::json) AS x(k text, i text, b bigint, {typed})
ORDER BY k, i, b
ON CONFLICT (kind, entity_id, bucket) DO UPDATE SET {updates}
""".format(
        t=table,
        cols=", ".join(columns),
        coalesced=", ".join(f"coalesce({c}, 0)" for c in columns),
        typed=", ".join(f"{c} bigint" for c in columns),
        updates=", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in columns),
    )


_BUCKET_UPSERT = _additive_upsert("kpi_buckets", CALL_COUNTERS)
_TIME_UPSERT = _additive_upsert("kpi_time_buckets", AGENT_TIME_COUNTERS)

# Call states and FCR rows travel the same way as bucket deltas: one JSON document,
# `json` columns (stored as text, no jsonb conversion), no per-element encoding.
_CALLS_UPSERT = """
INSERT INTO calls (call_id, part, offered_at, updated_at, events, contrib, fact, queue_id, waiting)
SELECT c, p, timestamptz 'epoch' + o * interval '1 microsecond', now(), e, r, f, q, w
FROM json_to_recordset($1::json)
  AS x(c text, p int, o bigint, e json, r json, f json, q text, w bool)
ON CONFLICT (call_id) DO UPDATE SET
  part = EXCLUDED.part, offered_at = EXCLUDED.offered_at, updated_at = EXCLUDED.updated_at,
  events = EXCLUDED.events, contrib = EXCLUDED.contrib, fact = EXCLUDED.fact,
  queue_id = EXCLUDED.queue_id, waiting = EXCLUDED.waiting
"""

_TIMELINES_UPSERT = """
INSERT INTO agent_timelines (agent_id, part, events, state, reason, since_us, updated_at)
SELECT a, p, e, s, r, t, now()
FROM json_to_recordset($1::json) AS x(a text, p int, e json, s text, r text, t bigint)
ON CONFLICT (agent_id) DO UPDATE SET
  part = EXCLUDED.part, events = EXCLUDED.events, state = EXCLUDED.state,
  reason = EXCLUDED.reason, since_us = EXCLUDED.since_us, updated_at = EXCLUDED.updated_at
"""

_REASONS_UPSERT = """
INSERT INTO kpi_reason_buckets (kind, entity_id, bucket, reason, not_ready_us)
SELECT k, i, to_timestamp(b), r, u
FROM json_to_recordset($1::json) AS x(k text, i text, b bigint, r text, u bigint)
ORDER BY k, i, b, r
ON CONFLICT (kind, entity_id, bucket, reason) DO UPDATE SET
  not_ready_us = kpi_reason_buckets.not_ready_us + EXCLUDED.not_ready_us
"""

_FCR_UPSERT = """
INSERT INTO fcr_calls (call_id, customer, part, offered_us, pending, fact, contrib)
SELECT c, u, p, t, n, f, r
FROM json_to_recordset($1::json) AS x(c text, u text, p int, t bigint, n bool, f json, r json)
ON CONFLICT (call_id) DO UPDATE SET
  customer = EXCLUDED.customer, part = EXCLUDED.part, offered_us = EXCLUDED.offered_us,
  pending = EXCLUDED.pending, fact = EXCLUDED.fact, contrib = EXCLUDED.contrib
"""

_STATS_UPSERT = """
INSERT INTO worker_stats (worker_id, events_processed, batches, last_lag_us, updated_at)
VALUES ($1, $2, 1, $3, now())
ON CONFLICT (worker_id) DO UPDATE SET
  events_processed = worker_stats.events_processed + EXCLUDED.events_processed,
  batches = worker_stats.batches + 1,
  last_lag_us = EXCLUDED.last_lag_us, updated_at = EXCLUDED.updated_at
"""


class _Lru(OrderedDict[str, Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: str, value: Any) -> None:
        if self.size <= 0:
            return
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def _split_cached(cache: _Lru, keys: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """(cached values by key, keys to fetch from Postgres)."""
    found: dict[str, Any] = {}
    missing: list[str] = []
    for key in keys:
        value = cache.get(key)
        if value is None:
            missing.append(key)
        else:
            found[key] = value
    return found, missing


def _offered_us(state: CallState) -> int | None:
    """When the call arrived (exact: live longest_wait is measured from it)."""
    c = state.contrib
    if c is None or not c.entities:
        return None
    return min(int(e[2]) for e in state.events.values() if e[1] == "call.offered")


def _queue_and_waiting(state: CallState) -> tuple[str | None, bool]:
    """The call's queue, and whether it is waiting there now (for live in_queue)."""
    c = state.contrib
    if c is None:
        return None, False
    queue = next((ident for kind, ident in c.entities if kind == "queue"), None)
    return queue, bool(c.entities.get(("center", "all"), {}).get("in_queue"))


def _loads(text: str | None) -> Any:
    # a JSON null stored in a json column reads back as the text "null"
    return None if text is None else orjson.loads(text)


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class Envelope:
    partition: int
    ingested_us: int
    items: list[dict[str, Any]]


def decode_envelope(partition: int, raw: bytes, field: str) -> Envelope:
    data = orjson.loads(raw)
    return Envelope(partition, int(data.get("at", 0)), list(data[field]))


class BadRecord(ValueError):
    """A record on the events topic that is neither an envelope nor a valid event."""


def decode_events_record(partition: int, raw: bytes | None, hash_key: bytes) -> Envelope:
    """Our ingest writes envelopes of normalised events. Other producers may write
    plain canonical events (one per record, keyed by call_id); those are validated
    and normalised here exactly as ingest would. Anything else is a BadRecord."""
    try:
        data = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise BadRecord(f"not JSON: {exc}") from None
    if isinstance(data, dict) and data.get("v") == 1 and isinstance(data.get("events"), list):
        events = data["events"]
        # exact type checks: cheap enough for every event of every envelope
        if not all(type(ev) is dict and type(ev.get("ts")) is int for ev in events):
            raise BadRecord("envelope holds an event that is not normalised (no integer ts)")
        return Envelope(partition, int(data.get("at") or 0), events)
    try:
        return Envelope(partition, 0, [normalize(data, hash_key)])
    except EventError as exc:
        raise BadRecord(f"invalid event: {exc}") from None


def encode_envelope(field: str, items: Sequence[Mapping[str, Any]], at_us: int) -> bytes:
    return orjson.dumps({"v": 1, "at": at_us, field: list(items)})


class Processor:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        send_facts: SendFacts,
        worker_id: str,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.send_facts = send_facts
        self.worker_id = worker_id
        self._calls = _Lru(settings.call_cache_size)
        self._customers = _Lru(settings.call_cache_size // 4)
        self._agents = _Lru(settings.call_cache_size // 20)
        self.window_us = settings.kpi.fcr_window_hours * 3600 * 1_000_000

    def forget(self) -> None:
        """Drop cached state: after a rebalance another worker may have written it."""
        self._calls.clear()
        self._customers.clear()
        self._agents.clear()

    # --- stage 1 ---------------------------------------------------------------
    async def process_events(self, envelopes: Sequence[Envelope]) -> int:
        events = [ev for env in envelopes for ev in env.items]
        by_call, by_agent = group_events(events)
        parts = sorted({env.partition for env in envelopes})
        async with self.pool.acquire() as conn, conn.transaction():
            for p in parts:
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_EVENTS, p)
            states = await self._load_calls(conn, list(by_call))
            result = assemble(by_call, states, self.settings)
            timelines = await self._load_timelines(conn, list(by_agent)) if by_agent else {}
            agents = track_agents(by_agent, timelines, self.settings)
            if agents.too_old:
                log.warning(
                    "%d agent.state event(s) older than call_state_retention_days before "
                    "their agent's latest event: not counted (docs/metrics.md)",
                    agents.too_old,
                )
            if result.changed or agents.changed:
                part_of = _partitions(envelopes)
                if result.changed:
                    await self._write_calls(conn, result.changed, part_of)
                if agents.changed:
                    await self._write_timelines(conn, agents.changed, part_of)
            await write_deltas(conn, result.deltas)
            await write_deltas(conn, agents.deltas, _TIME_UPSERT)
            await write_reasons(conn, agents.reasons)
            max_ts = max((t for t in (result.max_ts, agents.max_ts) if t is not None), default=None)
            if max_ts is not None:
                # One row per partition we hold the lock of, so workers never
                # contend on it; the watermark is the max over all rows.
                await conn.execute(
                    "INSERT INTO stream_watermark (id, event_us) VALUES ($1, $2) "
                    "ON CONFLICT (id) DO UPDATE SET "
                    "event_us = GREATEST(stream_watermark.event_us, EXCLUDED.event_us)",
                    parts[0],
                    max_ts,
                )
            if result.facts:
                # Facts go out before the commit: if we die after sending, the
                # replay re-sends them and stage 2 stores the same fact again.
                await self.send_facts(self._by_fcr_partition(result.facts))
            oldest = min((env.ingested_us for env in envelopes if env.ingested_us), default=0)
            lag = max(0, _now_us() - oldest) if oldest else 0
            await conn.execute(_STATS_UPSERT, self.worker_id, len(events), lag)
        for call_id, state in result.changed.items():
            self._calls.put(call_id, state)
        for agent, timeline in agents.changed.items():
            self._agents.put(agent, timeline)
        return len(events)

    async def _load_timelines(
        self, conn: asyncpg.Connection, agents: list[str]
    ) -> dict[str, list[StateEvent] | None]:
        found: dict[str, list[StateEvent] | None]
        found, missing = _split_cached(self._agents, agents)
        if missing:
            rows = await conn.fetch(
                "SELECT agent_id, events FROM agent_timelines WHERE agent_id = ANY($1::text[])",
                missing,
            )
            for r in rows:
                found[r["agent_id"]] = orjson.loads(r["events"])
        return found

    async def _write_timelines(
        self,
        conn: asyncpg.Connection,
        changed: dict[str, list[StateEvent]],
        part_of: Mapping[str, int],
    ) -> None:
        rows = []
        for agent, timeline in changed.items():
            _eid, since, state, reason = timeline[-1]
            rows.append(
                {
                    "a": agent,
                    "p": part_of["agent:" + agent],
                    "e": timeline,
                    "s": state,
                    "r": reason,
                    "t": since,
                }
            )
        await conn.execute(_TIMELINES_UPSERT, orjson.dumps(rows).decode())

    def _by_fcr_partition(self, facts: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {}
        for fact in facts:
            out.setdefault(partition_for(fact["customer"], self.settings.partitions), []).append(
                fact
            )
        return out

    async def _load_calls(
        self, conn: asyncpg.Connection, call_ids: list[str]
    ) -> dict[str, CallState | None]:
        states: dict[str, CallState | None]
        states, missing = _split_cached(self._calls, call_ids)
        if missing:
            rows = await conn.fetch(
                "SELECT call_id, events, contrib, fact FROM calls WHERE call_id = ANY($1::text[])",
                missing,
            )
            for r in rows:
                states[r["call_id"]] = CallState(
                    {e[0]: e for e in orjson.loads(r["events"])},
                    Contribution.from_json(_loads(r["contrib"])),
                    _loads(r["fact"]),
                )
        return states

    async def _write_calls(
        self,
        conn: asyncpg.Connection,
        changed: Mapping[str, CallState],
        part_of: Mapping[str, int],
    ) -> None:
        rows = []
        for cid, st in changed.items():
            queue, waiting = _queue_and_waiting(st)
            rows.append(
                {
                    "c": cid,
                    "p": part_of[cid],
                    "o": _offered_us(st),
                    "e": list(st.events.values()),
                    "r": st.contrib.to_json() if st.contrib is not None else None,
                    "f": st.fact,
                    "q": queue,
                    "w": waiting,
                }
            )
        await conn.execute(_CALLS_UPSERT, orjson.dumps(rows).decode())

    # --- stage 2 ---------------------------------------------------------------
    async def process_facts(self, envelopes: Sequence[Envelope]) -> int:
        facts = [f for env in envelopes for f in env.items]
        parts = sorted({env.partition for env in envelopes})
        async with self.pool.acquire() as conn, conn.transaction():
            for p in parts:
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_FCR, p)
            watermark = await current_watermark(conn)
            customers = await self._load_customers(conn, {f["customer"] for f in facts})
            result = apply_facts(facts, customers, watermark, self.window_us)
            await self._write_fcr(conn, result.changed)
            await write_deltas(conn, result.deltas)
        self._cache_fcr(customers, result.changed)
        return len(facts)

    async def sweep(self, partitions: Iterable[int], limit: int = SWEEP_CHUNK) -> int:
        """Finalise FCR candidates whose window the watermark has passed, for at most
        `limit` customers (call again while it returns `limit`)."""
        parts = sorted(set(partitions))
        if not parts:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            for p in parts:
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_FCR, p)
            watermark = await current_watermark(conn)
            rows = await conn.fetch(
                "SELECT DISTINCT customer FROM fcr_calls WHERE pending AND part = ANY($1::int[]) "
                "AND offered_us < $2 LIMIT $3",
                parts,
                watermark - self.window_us,
                limit,
            )
            if not rows:
                return 0
            names = {r["customer"] for r in rows}
            customers = await self._load_customers(conn, names)
            result = apply_facts((), customers, watermark, self.window_us, touched=names)
            await self._write_fcr(conn, result.changed)
            await write_deltas(conn, result.deltas)
        self._cache_fcr(customers, result.changed)
        return len(rows)

    async def _load_customers(
        self, conn: asyncpg.Connection, names: set[str]
    ) -> dict[str, dict[str, FcrRow]]:
        out: dict[str, dict[str, FcrRow]]
        out, missing = _split_cached(self._customers, names)
        if missing:
            rows = await conn.fetch(
                "SELECT call_id, customer, fact, contrib FROM fcr_calls "
                "WHERE customer = ANY($1::text[])",
                missing,
            )
            for name in missing:
                out[name] = {}
            for r in rows:
                out[r["customer"]][r["call_id"]] = FcrRow(
                    orjson.loads(r["fact"]), Contribution.from_json(_loads(r["contrib"]))
                )
        return out

    def _cache_fcr(
        self, customers: dict[str, dict[str, FcrRow]], changed: Mapping[str, FcrRow]
    ) -> None:
        for row in changed.values():
            customers.setdefault(row.fact["customer"], {})[row.fact["call_id"]] = row
        for name, rows in customers.items():
            self._customers.put(name, rows)

    async def _write_fcr(self, conn: asyncpg.Connection, changed: Mapping[str, FcrRow]) -> None:
        if not changed:
            return
        n = self.settings.partitions
        rows = [
            {
                "c": cid,
                "u": row.fact["customer"],
                "p": partition_for(row.fact["customer"], n),
                "t": row.fact["offered_at"],
                "n": row.pending,
                "f": row.fact,
                "r": row.contrib.to_json() if row.contrib is not None else None,
            }
            for cid, row in changed.items()
        ]
        await conn.execute(_FCR_UPSERT, orjson.dumps(rows).decode())

    # --- housekeeping ----------------------------------------------------------
    async def enforce_retention(self) -> None:
        s = self.settings
        async with self.pool.acquire() as conn:
            for table in ("kpi_buckets", "kpi_time_buckets", "kpi_reason_buckets"):
                await conn.execute(
                    f"DELETE FROM {table} WHERE bucket < now() - make_interval(days => $1)",
                    s.retention_days,
                )
            await conn.execute(
                "DELETE FROM calls WHERE updated_at < now() - make_interval(days => $1)",
                s.call_state_retention_days,
            )
            await conn.execute(
                "DELETE FROM fcr_calls WHERE NOT pending AND offered_us < $1",
                _now_us() - s.call_state_retention_us - self.window_us,
            )


def _partitions(envelopes: Sequence[Envelope]) -> dict[str, int]:
    """The partition each call (by call_id) and agent ("agent:" + id) came from."""
    out: dict[str, int] = {}
    for env in envelopes:
        for ev in env.items:
            if ev["type"] == "agent.state":
                out["agent:" + ev["agent_id"]] = env.partition
            elif "call_id" in ev:
                out[ev["call_id"]] = env.partition
    return out


async def write_reasons(conn: asyncpg.Connection, reasons: Mapping[ReasonKey, int]) -> None:
    if not reasons:
        return
    rows = [
        {"k": kind, "i": ident, "b": bucket_us // 1_000_000, "r": reason, "u": us}
        for (kind, ident, bucket_us, reason), us in reasons.items()
    ]
    await conn.execute(_REASONS_UPSERT, orjson.dumps(rows).decode())


async def current_watermark(conn: asyncpg.Connection) -> int:
    value = await conn.fetchval("SELECT max(event_us) FROM stream_watermark")
    return int(value) if value is not None else 0


async def write_deltas(
    conn: asyncpg.Connection, deltas: Mapping[DeltaKey, Counters], upsert: str = _BUCKET_UPSERT
) -> None:
    """One upsert for the whole batch: call counters (kpi_buckets), or agent time
    with upsert=_TIME_UPSERT (kpi_time_buckets)."""
    if not deltas:
        return
    rows = [
        {"k": kind, "i": ident, "b": bucket_us // 1_000_000, **deltas[(kind, ident, bucket_us)]}
        for kind, ident, bucket_us in deltas
    ]
    await conn.execute(upsert, orjson.dumps(rows).decode())

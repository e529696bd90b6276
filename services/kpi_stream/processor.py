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

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import orjson
from prometheus_client import Counter

from services.core.agents import SEGMENT_PIECE_US, SegmentRow, StateEvent
from services.core.calls import MINUTE_US, Compact, Contribution, Counters, DeltaKey
from services.core.db import LOCK_EVENTS, LOCK_FCR
from services.core.envelope import Envelope
from services.core.events import (
    DEFAULT_RULES,
    DOOR_VERSION,
    DoorRules,
    EventError,
    normalize,
    partition_for,
    recheck,
)
from services.core.kpi import (
    AGENT_STATES,
    AGENT_TIME_COUNTERS,
    CALL_COUNTERS,
    COUNTER_TABLES,
    FCR_COUNTERS,
)
from services.core.settings import Settings
from services.kpi_stream.core import (
    CallState,
    FcrRow,
    apply_facts,
    assemble,
    group_events,
    track_agents,
)
from services.kpi_stream.quarantine import Item, bisect, describe, items_of, store

log = logging.getLogger("callkpi.worker")

RECOMPUTED = Counter(
    "callkpi_worker_batches_recomputed_total",
    "Event batches recomputed from Postgres under their lock because what they were "
    "computed from ahead of it could have changed (rebalances, restarts, retries)",
)

# Customers finalised per sweep transaction. The sweep is CPU work on the event
# loop: after a long gap in event time (an import, a replay) tens of thousands of
# candidates become final at once, and one big chunk stalled call assembly for
# ~5 s (freshness p99 5.3 s in the bench); chunks of 500 take ~0.1 s each.
SWEEP_CHUNK = 500

SendFacts = Callable[[dict[int, list[dict[str, Any]]]], Awaitable[None]]


# The deltas travel as one JSON array of rows expanded by json_to_recordset: orjson
# and Postgres' JSON parser are both C, whereas asyncpg encodes 21 bigint[] arrays
# element by element (measured: ~40% of the worker's Python time at 12k rows/batch).
def _additions(table: str, columns: tuple[str, ...]) -> str:
    """The SET list of an upsert that adds counters to a row's."""
    return ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in columns)


def _additive_upsert(table: str, columns: tuple[str, ...]) -> str:
    """One set-based upsert adding counters to minute-bucket rows. The ORDER BY
    makes concurrent transactions lock rows in the same order: no deadlocks."""
    cols = ", ".join(columns)
    coalesced = ", ".join(f"coalesce({c}, 0) AS {c}" for c in columns)
    typed = ", ".join(f"{c} bigint" for c in columns)
    return f"""
INSERT INTO {table} (kind, entity_id, bucket, {cols})
SELECT k, i, to_timestamp(b), {coalesced}
FROM json_to_recordset($1::json) AS x(k text, i text, b bigint, {typed})
ORDER BY k, i, b
ON CONFLICT (kind, entity_id, bucket) DO UPDATE SET {_additions(table, columns)}
"""


_BUCKET_UPSERT = _additive_upsert("kpi_buckets", CALL_COUNTERS)

# Agent time arrives as the agents' changed segments, signed, each with the agent's
# team ("t"). One statement appends them to agent_segments, cut at whole hours
# (migration 0010 says why), and adds their time, split into minutes, to the team
# and center rows of kpi_time_buckets and kpi_reason_buckets: Postgres splits and
# sums in C what cost the worker a tenth of its Python time, and writes one row per
# segment instead of one per agent-minute.
_ROLLUPS = "(VALUES ('team', m.t), ('center', 'all')) AS g(kind, id)"  # "all": the center
_SEGMENTS_WRITE = """
WITH x AS MATERIALIZED (
  SELECT * FROM json_to_recordset($1::json)
    AS x(i text, t text, s bigint, e bigint, st text, r text, n int)
), own AS (
  INSERT INTO agent_segments (agent_id, start_us, end_us, state, reason, sign)
  SELECT x.i, greatest(x.s, h), least(x.e, h + {hour}), x.st, x.r, x.n
  FROM x CROSS JOIN LATERAL generate_series(x.s - x.s % {hour}, x.e - 1, {hour}) AS h
), m AS MATERIALIZED (
  -- each team's minutes summed first: the rollups then read those, not every agent-minute
  SELECT x.t, x.st, x.r, b, sum(x.n * (least(x.e, b + {minute}) - greatest(x.s, b))) AS us
  FROM x CROSS JOIN LATERAL generate_series(x.s - x.s % {minute}, x.e - 1, {minute}) AS b
  GROUP BY x.t, x.st, x.r, b
), reasons AS (
  INSERT INTO kpi_reason_buckets AS kr (kind, entity_id, bucket, reason, not_ready_us)
  SELECT g.kind, g.id, to_timestamp(m.b / 1000000), m.r, sum(m.us)::bigint
  FROM m CROSS JOIN LATERAL {rollups}
  WHERE m.st = 'not_ready'
  GROUP BY g.kind, g.id, m.b, m.r
  ORDER BY g.kind, g.id, m.b, m.r
  ON CONFLICT (kind, entity_id, bucket, reason) DO UPDATE SET
    not_ready_us = kr.not_ready_us + EXCLUDED.not_ready_us
)
INSERT INTO kpi_time_buckets (kind, entity_id, bucket, logged_in_us, {states})
SELECT g.kind, g.id, to_timestamp(m.b / 1000000), sum(m.us)::bigint, {by_state}
FROM m CROSS JOIN LATERAL {rollups}
GROUP BY g.kind, g.id, m.b
ORDER BY g.kind, g.id, m.b
ON CONFLICT (kind, entity_id, bucket) WHERE kind <> 'agent' DO UPDATE SET {updates}
""".format(
    hour=SEGMENT_PIECE_US,
    minute=MINUTE_US,
    rollups=_ROLLUPS,
    states=", ".join(f"{s}_us" for s in AGENT_STATES),
    by_state=", ".join(
        f"coalesce(sum(m.us) FILTER (WHERE m.st = '{s}'), 0)::bigint" for s in AGENT_STATES
    ),
    updates=_additions("kpi_time_buckets", AGENT_TIME_COUNTERS),
)
_FCR_BUCKET_UPSERT = _additive_upsert("kpi_fcr_buckets", FCR_COUNTERS)

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

# The calls of each probed customer offered within one window ($4) of the probes'
# times and of where the batch's calls ($3) were stored before (a late event can
# move a call's offered time), with how many calls the customer has in all: a
# customer whose calls were all loaded can be cached whole.
_FCR_WINDOW_LOAD = """
WITH probe(u, t) AS (
  SELECT * FROM unnest($1::text[], $2::bigint[])
  UNION ALL
  SELECT customer, offered_us FROM fcr_calls
  WHERE call_id = ANY($3::text[]) AND customer = ANY($1::text[])
), span AS (
  SELECT u, min(t) AS lo, max(t) AS hi,
         (SELECT count(*) FROM fcr_calls c WHERE c.customer = probe.u) AS total
  FROM probe GROUP BY u
)
SELECT s.u AS customer, s.lo, s.hi, s.total, f.call_id, f.fact, f.contrib
FROM span s LEFT JOIN fcr_calls f
  ON f.customer = s.u AND f.offered_us BETWEEN s.lo - $4 AND s.hi + $4
"""

# Customers kept whole in the FCR cache have at most this many calls: the cache
# serves the many customers with a few calls each; one with thousands is loaded
# by window from Postgres, which bounds what one key costs in memory and time.
FCR_CACHE_MAX_CALLS = 64

_FCR_UPSERT = """
INSERT INTO fcr_calls (call_id, customer, part, offered_us, pending, fact, contrib)
SELECT c, u, p, t, n, f, r
FROM json_to_recordset($1::json) AS x(c text, u text, p int, t bigint, n bool, f json, r json)
ON CONFLICT (call_id) DO UPDATE SET
  customer = EXCLUDED.customer, part = EXCLUDED.part, offered_us = EXCLUDED.offered_us,
  pending = EXCLUDED.pending, fact = EXCLUDED.fact, contrib = EXCLUDED.contrib
"""

# Records us as the last writer of the partitions and counts those we already were
# (every statement of a WITH sees the same snapshot: `prev` is the state before).
# Called under the partitions' advisory locks, so it cannot race with itself.
_OWNERS_SWAP = """
WITH prev AS (
  SELECT part, owner FROM stream_owners WHERE part = ANY($1::int[])
), swap AS (
  INSERT INTO stream_owners (part, owner) SELECT unnest($1::int[]), $2
  ON CONFLICT (part) DO UPDATE SET owner = EXCLUDED.owner
)
SELECT count(*) FROM prev WHERE owner = $2
"""

_STATS_UPSERT = """
INSERT INTO worker_stats (worker_id, events_processed, batches, last_lag_us, updated_at)
VALUES ($1, $2, 1, $3, now())
ON CONFLICT (worker_id) DO UPDATE SET
  events_processed = worker_stats.events_processed + EXCLUDED.events_processed,
  batches = worker_stats.batches + 1,
  last_lag_us = EXCLUDED.last_lag_us, updated_at = EXCLUDED.updated_at
"""


# Where each partition's processing got to (see stream_offsets in core/db.py):
# the last committed batch's, not the greatest ever, so that after the broker lost
# a topic the new, lower offsets replace the old ones.
_OFFSETS_WRITE = """
INSERT INTO stream_offsets (topic, part, next_offset, updated_at)
SELECT $1, p, n, now() FROM unnest($2::int[], $3::bigint[]) AS x(p, n)
ON CONFLICT (topic, part) DO UPDATE SET
  next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at
"""


async def write_offsets(conn: asyncpg.Connection, topic: str,
                        envelopes: Sequence[Envelope]) -> None:  # fmt: skip
    """Record, per partition, the offset after the last record of `envelopes`
    (records of unknown offset, such as quarantine replays, record nothing)."""
    nxt: dict[int, int] = {}
    for env in envelopes:
        if env.offset >= 0:
            nxt[env.partition] = max(nxt.get(env.partition, 0), env.offset + 1)
    if nxt:
        await conn.execute(_OFFSETS_WRITE, topic, list(nxt), list(nxt.values()))


_NOTIFY_FIGURES = "SELECT pg_notify('callkpi_figures', '')"  # alerting/service.py listens


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


def _split_cached(
    keys: Iterable[str], *caches: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """(values found in the first cache that has them, keys to fetch from Postgres)."""
    found: dict[str, Any] = {}
    missing: list[str] = []
    for key in keys:
        for cache in caches:
            value = cache.get(key)
            if value is not None:
                found[key] = value
                break
        else:
            missing.append(key)
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


class BadRecord(ValueError):
    """A record on the events topic that is neither an envelope nor a valid event."""


def decode_events_record(
    partition: int,
    raw: bytes | None,
    hash_key: bytes,
    rules: DoorRules = DEFAULT_RULES,
    now_us: int | None = None,
    offset: int = -1,
) -> Envelope:
    """Our ingest writes envelopes of normalised events. Other producers may write
    plain canonical events (one per record, keyed by call_id); those are validated
    and normalised here exactly as ingest would (with the worker's clock as `now_us`).
    Anything else is a BadRecord."""
    try:
        data = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise BadRecord(f"not JSON: {exc}") from None
    if isinstance(data, dict) and data.get("v") == 1 and isinstance(data.get("events"), list):
        events = data["events"]
        # exact type checks: cheap enough for every event of every envelope
        if not all(type(ev) is dict and type(ev.get("ts")) is int for ev in events):
            raise BadRecord("envelope holds an event that is not normalised (no integer ts)")
        checked = data.get("door") == DOOR_VERSION
        return Envelope(partition, int(data.get("at") or 0), events, offset, checked=checked)
    try:
        return Envelope(partition, 0, [normalize(data, hash_key, rules, now_us)], offset)
    except EventError as exc:
        raise BadRecord(f"invalid event: {exc}") from None


@dataclass(slots=True)
class _Work:
    """Everything one events batch will write, computed before its transaction."""

    calls: dict[str, CallState]
    agents: dict[str, list[StateEvent]]
    writes: list[tuple[str, str]]  # (upsert, JSON rows), in this order
    facts: list[dict[str, Any]]
    max_ts: int | None
    too_old: int

    @staticmethod
    def nothing() -> _Work:
        """No result yet: a batch committed with it is computed under its lock."""
        return _Work({}, {}, [], [], None, 0)


@dataclass(slots=True)
class PreparedEvents:
    """An events batch computed ahead (prepare_events), waiting for commit_events."""

    envelopes: Sequence[Envelope]
    n_events: int
    epoch: int  # the processor's epoch when the computation started
    work: _Work


class Processor:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        send_facts: SendFacts,
        worker_id: str,
        clock: Callable[[], int] = _now_us,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.send_facts = send_facts
        self.worker_id = worker_id
        self.clock = clock  # µs since the epoch
        # Unique per process: a restarted worker with the same id must not take
        # the previous process's writes for its own (see _still_owner).
        self.owner = f"{worker_id}/{uuid.uuid4().hex[:12]}"
        self._calls = _Lru(settings.call_cache_size)
        self._customers = _Lru(settings.call_cache_size // 4)
        self._agents = _Lru(settings.call_cache_size // 20)
        # States computed by batches not yet committed. The next batch is computed
        # while the previous one is still being written, and must see its result.
        # An entry leaves when its batch commits (into the LRU) or is replaced by
        # a recomputed one; a failed batch keeps its entries, as it is retried.
        self._pending_calls: dict[str, CallState] = {}
        self._pending_agents: dict[str, list[StateEvent]] = {}
        # Bumped whenever what a batch was computed from may differ from what it
        # will be committed on top of: a rebalance, a failed commit, a batch whose
        # recomputation under its lock came out different. A batch prepared in an
        # older epoch is recomputed from Postgres under its lock.
        self._epoch = 0
        # Partitions we have recorded ourselves as the writer of since the last
        # rebalance (see _claim). Only their states are cached: a claim vouches
        # for what is read after it, not for what was cached before.
        self._claimed: set[int] = set()
        self._rebalances = 0
        self._commit_lock = asyncio.Lock()
        self.window_us = settings.kpi.fcr_window_hours * 3600 * 1_000_000

    def forget(self) -> None:
        """Drop cached state: after a rebalance another worker may have written it."""
        self._customers.clear()
        self._claimed.clear()
        self._rebalances += 1
        self._distrust()

    def _distrust(self) -> None:
        """Stop trusting cached call and agent states and whatever batches were
        computed from them. Uncommitted results of our own batches stay in the
        pending maps: they are still being written (or retried)."""
        self._calls.clear()
        self._agents.clear()
        self._epoch += 1

    # --- stage 1 ---------------------------------------------------------------
    # A batch is computed (prepare_events: cache and Postgres reads, call assembly,
    # agent timelines, JSON encoding) before the transaction that writes it
    # (commit_events), so the worker can compute batch N+1 while Postgres writes
    # batch N. The computation is only trusted if, under the partitions' locks,
    # nothing it read can have changed: same epoch, and no other worker committed
    # to these partitions since our last commit there. Otherwise it is redone from
    # Postgres under the lock, which is exactly the unpipelined algorithm.
    async def process_events(self, envelopes: Sequence[Envelope]) -> int:
        """Compute and commit one batch."""
        return await self.commit_events(await self.prepare_events(envelopes))

    async def prepare_events(self, envelopes: Sequence[Envelope]) -> PreparedEvents:
        envelopes = await self._screen(envelopes)
        unclaimed = sorted({env.partition for env in envelopes} - self._claimed)
        if unclaimed:
            await self._claim(unclaimed)
        epoch = self._epoch
        work = await self._compute(None, envelopes)
        # Registered even if the epoch moved meanwhile (this batch will then be
        # recomputed): the next batch must see this one's states, or a
        # recomputation that comes out the same would leave it computed without.
        self._pending_calls.update(work.calls)
        self._pending_agents.update(work.agents)
        return PreparedEvents(envelopes, sum(len(env.items) for env in envelopes), epoch, work)

    async def commit_events(self, prepared: PreparedEvents) -> int:
        envelopes = prepared.envelopes
        parts = sorted({env.partition for env in envelopes})
        work = prepared.work
        try:
            async with self._commit_lock, self.pool.acquire() as conn, conn.transaction():
                await lock_partitions(conn, LOCK_EVENTS, parts)
                owned = await self._still_owner(conn, parts)
                if not owned:
                    # Another worker wrote here since we last did (or we just
                    # started): any cached state may be stale.
                    self._distrust()
                if prepared.epoch != self._epoch:
                    work = await self._recompute(conn, prepared)
                if work.too_old:
                    log.warning(
                        "%d agent.state event(s) older than call_state_retention_days "
                        "before their agent's latest event: not counted (docs/metrics.md)",
                        work.too_old,
                    )
                for sql, payload in work.writes:
                    await conn.execute(sql, payload)
                if work.max_ts is not None:
                    # One row per partition we hold the lock of, so workers never
                    # contend on it; the watermark is the max over all rows.
                    await conn.execute(
                        "INSERT INTO stream_watermark (id, event_us) VALUES ($1, $2) "
                        "ON CONFLICT (id) DO UPDATE SET "
                        "event_us = GREATEST(stream_watermark.event_us, EXCLUDED.event_us)",
                        parts[0],
                        work.max_ts,
                    )
                if work.facts:
                    # Facts go out before the commit: if we die after sending, the
                    # replay re-sends them and stage 2 stores the same fact again.
                    await self.send_facts(self._by_fcr_partition(work.facts))
                oldest = min((env.ingested_us for env in envelopes if env.ingested_us), default=0)
                lag = max(0, _now_us() - oldest) if oldest else 0
                await conn.execute(_STATS_UPSERT, self.worker_id, prepared.n_events, lag)
                await write_offsets(conn, self.settings.events_topic, envelopes)
                # wakes the alert evaluators (delivered at commit, coalesced by
                # Postgres per transaction); FCR updates wait for their timer
                await conn.execute(_NOTIFY_FIGURES)
        except BaseException:
            # The batch may or may not have committed (a connection lost during
            # COMMIT does not say): the cache may be stale, and batches computed
            # since must be recomputed. Its pending states stay: it is retried.
            self._distrust()
            raise
        if self._claimed.issuperset(parts):
            # (a rebalance since the claim: the next claim cannot vouch for these)
            for call_id, state in work.calls.items():
                self._calls.put(call_id, state)
            for agent, timeline in work.agents.items():
                self._agents.put(agent, timeline)
        self._discard(work)
        return prepared.n_events

    async def _screen(self, envelopes: Sequence[Envelope]) -> Sequence[Envelope]:
        """Set aside, one by one, the events the door would refuse: of envelopes it
        did not check (other producers, an older ingest), every check; of the
        others, the clock only: an event stamped further ahead of our clock than
        ingest allows would move the FCR watermark and an agent's timeline into
        the future for good."""
        rules = self.settings.door_rules
        now = self.clock()
        limit = now + rules.max_future_us
        if all(env.checked for env in envelopes) and all(
            ev["ts"] <= limit for env in envelopes for ev in env.items
        ):
            return envelopes
        kept = []
        for env in envelopes:
            items, index = [], []
            for i, ev in enumerate(env.items):
                try:
                    if env.checked:
                        if ev["ts"] > limit:
                            raise EventError(
                                f"occurred_at {ev.get('occurred_at')!r} is past the worker's "
                                f"clock + max_future_seconds={self.settings.max_future_seconds}"
                            )
                    else:
                        recheck(ev, rules, now)
                except EventError as exc:
                    await self._set_aside_event(env, i, str(exc))
                    continue
                items.append(ev)
                index.append(env.origin(i))
            kept.append(replace(env, items=items, index=tuple(index), checked=True))
        return kept

    async def set_aside_events(
        self,
        envelopes: Sequence[Envelope],
        failure: BaseException,
        prepared: PreparedEvents | None = None,
    ) -> None:
        """A batch failed for good (`failure` is permanent): count what can be
        counted and set aside the events that fail on their own."""
        log.error("events batch fails for good (%s); bisecting it", describe(failure))
        if prepared is not None:
            self._discard(prepared.work)
        self._distrust()

        async def run(envs: list[Envelope]) -> None:
            # Computed from Postgres under the lock, never from pending states: those
            # of the failed batch (and of any batch computed on top of it) hold all of
            # its events, so a half computed from them would find nothing new and
            # write nothing. The recomputation bumps the epoch: batches computed
            # ahead of this are computed again at their commit.
            screened = await self._screen(envs)
            n = sum(len(env.items) for env in screened)
            await self.commit_events(PreparedEvents(screened, n, -1, _Work.nothing()))

        async def aside(item: Item, exc: BaseException) -> None:
            await self._set_aside_event(item[0], item[1], describe(exc))

        await bisect(items_of(envelopes), failure, run, aside)

    async def set_aside_facts(self, envelopes: Sequence[Envelope], failure: BaseException) -> None:
        """As set_aside_events, for a batch of FCR facts (stage 2)."""
        log.error("facts batch fails for good (%s); bisecting it", describe(failure))

        async def aside(item: Item, exc: BaseException) -> None:
            env, index = item
            await store(self.pool, "facts", self.settings.fcr_topic, env.partition, env.offset,
                        env.origin(index), env.items[index], describe(exc))  # fmt: skip

        await bisect(items_of(envelopes), failure, self.process_facts, aside)

    async def set_aside_record(
        self, partition: int, offset: int, raw: bytes | None, why: str
    ) -> None:
        """An events record that is no envelope and no valid event, kept whole."""
        text = (raw or b"").decode("utf-8", errors="replace")
        await store(self.pool, "events", self.settings.events_topic, partition, offset, -1,
                    text, why)  # fmt: skip

    async def _set_aside_event(self, env: Envelope, i: int, error: str) -> None:
        """Quarantine the envelope's item i (stored under its index in the record)."""
        await store(self.pool, "events", self.settings.events_topic, env.partition, env.offset,
                    env.origin(i), env.items[i], error)  # fmt: skip

    async def _recompute(self, conn: asyncpg.Connection, prepared: PreparedEvents) -> _Work:
        """Redo a batch from Postgres under its lock. If the result differs from the
        one computed ahead, later batches may have been computed from the latter:
        replace it in the pending maps and make them recompute too. (Replacing only
        then keeps one recomputation from forcing the next, forever.)"""
        RECOMPUTED.inc()
        log.info(
            "batch of partitions %s recomputed under its lock (cache not trusted)",
            sorted({env.partition for env in prepared.envelopes}),
        )
        fresh = await self._compute(conn, prepared.envelopes)
        ahead = prepared.work
        if fresh.calls == ahead.calls and fresh.agents == ahead.agents:
            # Same states, so later batches saw the right ones; the deltas may still
            # differ (they depend on the state before), and fresh's are the truth.
            # The ahead objects stay, as the pending maps hold them by identity.
            return replace(fresh, calls=ahead.calls, agents=ahead.agents)
        self._discard(ahead)
        # where a later batch already replaced a state, its own recomputation
        # (forced by the epoch) will replace it again
        for key, state in fresh.calls.items():
            self._pending_calls.setdefault(key, state)
        for key, timeline in fresh.agents.items():
            self._pending_agents.setdefault(key, timeline)
        self._epoch += 1
        return fresh

    def _discard(self, work: _Work) -> None:
        """Take a batch's states out of the pending maps (unless a later batch
        has already replaced them)."""
        for call_id, state in work.calls.items():
            if self._pending_calls.get(call_id) is state:
                del self._pending_calls[call_id]
        for agent, timeline in work.agents.items():
            if self._pending_agents.get(agent) is timeline:
                del self._pending_agents[agent]

    async def _claim(self, parts: list[int]) -> None:
        """Record us as the last writer of partitions we start reading, before the
        first batch there is computed. Without this, that batch (and the ones
        computed during its commit) found another owner at commit and was
        recomputed: after a start or a rebalance, the first few batches, 30k
        events each in a backlog, were computed twice (measured: 4.6 s of a 21 s
        catch-up). States read after the claim are current as long as nobody else
        commits there, which the owner check at commit still verifies."""
        rebalances = self._rebalances
        async with self.pool.acquire() as conn, conn.transaction():
            await lock_partitions(conn, LOCK_EVENTS, parts)
            await self._still_owner(conn, parts)
        if rebalances == self._rebalances:  # else claim again after the rebalance
            self._claimed.update(parts)

    async def _still_owner(self, conn: asyncpg.Connection, parts: list[int]) -> bool:
        """Record us as the last writer of `parts`; True if we already were for all
        of them, i.e. nobody else committed there since our last commit."""
        mine = await conn.fetchval(_OWNERS_SWAP, parts, self.owner)
        return int(mine) == len(parts)

    async def _compute(
        self, conn: asyncpg.Connection | None, envelopes: Sequence[Envelope]
    ) -> _Work:
        """The batch's effects. With conn=None (ahead of the lock), states come from
        pending batches, the cache, then Postgres; with a locked conn, from Postgres."""
        # The CPU-heavy steps run in a thread: the event loop stays free to drive
        # the previous batch's statements (each needs the loop to send the next),
        # Kafka fetches and heartbeats. Only this task touches what they read.
        events = [ev for env in envelopes for ev in env.items]
        by_call, by_agent = await asyncio.to_thread(group_events, events)
        if conn is None:
            calls, missing_calls = _split_cached(by_call, self._pending_calls, self._calls)
            agents, missing_agents = _split_cached(by_agent, self._pending_agents, self._agents)
        else:
            calls, missing_calls = {}, list(by_call)
            agents, missing_agents = {}, list(by_agent)
        if missing_calls or missing_agents:
            if conn is None:
                async with self.pool.acquire() as own:
                    calls.update(await _fetch_calls(own, missing_calls))
                    agents.update(await _fetch_timelines(own, missing_agents))
            else:
                calls.update(await _fetch_calls(conn, missing_calls))
                agents.update(await _fetch_timelines(conn, missing_agents))
        return await asyncio.to_thread(self._effects, envelopes, by_call, calls, by_agent, agents)

    def _effects(
        self,
        envelopes: Sequence[Envelope],
        by_call: dict[str, list[Compact]],
        calls: dict[str, CallState],
        by_agent: dict[str, list[StateEvent]],
        agents: dict[str, list[StateEvent]],
    ) -> _Work:
        """The batch's new states and deltas, encoded for the upserts (pure CPU)."""
        result = assemble(by_call, calls, self.settings)
        tracked = track_agents(by_agent, agents, self.settings)
        writes: list[tuple[str, str]] = []
        if result.changed or tracked.changed:
            part_of = _partitions(envelopes)
            if result.changed:
                writes.append((_CALLS_UPSERT, _calls_rows(result.changed, part_of)))
            if tracked.changed:
                writes.append((_TIMELINES_UPSERT, _timeline_rows(tracked.changed, part_of)))
        if tracked.segments:
            rows = _segment_rows(tracked.segments, self.settings.agent_team)
            writes.append((_SEGMENTS_WRITE, rows))
        if result.deltas:
            writes.append((_BUCKET_UPSERT, _delta_rows(result.deltas)))
        max_ts = max((t for t in (result.max_ts, tracked.max_ts) if t is not None), default=None)
        return _Work(result.changed, tracked.changed, writes, result.facts, max_ts, tracked.too_old)

    def _by_fcr_partition(self, facts: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {}
        for fact in facts:
            out.setdefault(partition_for(fact["customer"], self.settings.partitions), []).append(
                fact
            )
        return out

    # --- stage 2 ---------------------------------------------------------------
    # A customer's calls are loaded only within one FCR window of the calls a batch
    # changes (and of where those calls were before): that is all their outcomes
    # depend on. A customer with thousands of calls (a switchboard, a number that
    # should have been withheld) costs each batch its window, not its history,
    # which was quadratic over an import. Customers whose every call was loaded,
    # and who have few, stay in the cache whole.
    async def process_facts(self, envelopes: Sequence[Envelope]) -> int:
        facts = [f for env in envelopes for f in env.items]
        parts = sorted({env.partition for env in envelopes})
        probes: dict[str, list[int]] = {}
        for f in facts:
            probes.setdefault(f["customer"], []).append(f["offered_at"])
        async with self.pool.acquire() as conn, conn.transaction():
            await lock_partitions(conn, LOCK_FCR, parts)
            watermark = await current_watermark(conn)
            customers, spans = await self._load_customers(
                conn, probes, [f["call_id"] for f in facts]
            )
            result = apply_facts(facts, customers, watermark, self.window_us, spans=spans)
            # a customer's facts arrive on its partition: no need to hash again
            part_of = {f["customer"]: env.partition for env in envelopes for f in env.items}
            await self._write_fcr(conn, result.changed, part_of)
            await write_fcr_deltas(conn, result.deltas)
            await write_offsets(conn, self.settings.fcr_topic, envelopes)
        self._cache_fcr(customers, spans, result.changed)
        return len(facts)

    async def sweep(self, partitions: Iterable[int], limit: int = SWEEP_CHUNK) -> int:
        """Finalise FCR candidates whose window the watermark has passed, for at most
        `limit` customers (call again while it returns `limit`)."""
        parts = sorted(set(partitions))
        if not parts:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            await lock_partitions(conn, LOCK_FCR, parts)
            watermark = await current_watermark(conn)
            rows = await conn.fetch(
                "SELECT customer, part, min(offered_us) AS lo, max(offered_us) AS hi "
                "FROM fcr_calls WHERE pending AND part = ANY($1::int[]) AND offered_us < $2 "
                "GROUP BY customer, part LIMIT $3",
                parts,
                watermark - self.window_us,
                limit,
            )
            if not rows:
                return 0
            probes = {r["customer"]: [int(r["lo"]), int(r["hi"])] for r in rows}
            customers, spans = await self._load_customers(conn, probes, [])
            result = apply_facts((), customers, watermark, self.window_us, touched=probes,
                                 spans=spans)  # fmt: skip
            await self._write_fcr(conn, result.changed, {r["customer"]: r["part"] for r in rows})
            await write_fcr_deltas(conn, result.deltas)
        self._cache_fcr(customers, spans, result.changed)
        return len(rows)

    async def _load_customers(
        self, conn: asyncpg.Connection, probes: Mapping[str, list[int]], call_ids: list[str]
    ) -> tuple[dict[str, dict[str, FcrRow]], dict[str, tuple[int, int]]]:
        """The calls of each customer in `probes` (customer -> offered times) within
        one window of those times and of where `call_ids` were stored before; and
        the span (lo, hi) of each customer not loaded whole (see apply_facts)."""
        out: dict[str, dict[str, FcrRow]]
        out, missing = _split_cached(probes, self._customers)
        spans: dict[str, tuple[int, int]] = {}
        if not missing:
            return out, spans
        names = [c for c in missing for _ in probes[c]]
        times = [t for c in missing for t in probes[c]]
        rows = await conn.fetch(_FCR_WINDOW_LOAD, names, times, call_ids, self.window_us)
        for r in rows:
            customer = r["customer"]
            rows_of = out.setdefault(customer, {})
            if r["call_id"] is not None:
                rows_of[r["call_id"]] = FcrRow(
                    orjson.loads(r["fact"]), Contribution.from_json(_loads(r["contrib"]))
                )
            if len(rows_of) < r["total"]:
                spans[customer] = (int(r["lo"]), int(r["hi"]))
            else:
                spans.pop(customer, None)
        for customer in missing:
            out.setdefault(customer, {})
        return out, spans

    def _cache_fcr(
        self,
        customers: dict[str, dict[str, FcrRow]],
        spans: Mapping[str, tuple[int, int]],
        changed: Mapping[str, FcrRow],
    ) -> None:
        for row in changed.values():
            customers.setdefault(row.fact["customer"], {})[row.fact["call_id"]] = row
        for name, rows in customers.items():
            if name in spans or len(rows) > FCR_CACHE_MAX_CALLS:
                self._customers.pop(name, None)  # loaded in part, or too many to keep
            else:
                self._customers.put(name, rows)

    async def _write_fcr(
        self, conn: asyncpg.Connection, changed: Mapping[str, FcrRow], part_of: Mapping[str, int]
    ) -> None:
        """Upsert changed FCR rows; `part_of`: each changed row's customer's partition."""
        if not changed:
            return
        rows = [
            {
                "c": cid,
                "u": row.fact["customer"],
                "p": part_of[row.fact["customer"]],
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
            for table in (*(t for t, _ in COUNTER_TABLES), "kpi_reason_buckets"):
                await conn.execute(
                    f"DELETE FROM {table} WHERE bucket < now() - make_interval(days => $1)",
                    s.retention_days,
                )
            await conn.execute(
                "DELETE FROM agent_segments WHERE end_us < $1",
                _now_us() - s.retention_days * 86_400_000_000,
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


async def lock_partitions(conn: asyncpg.Connection, lock_class: int, parts: list[int]) -> None:
    """Take the transaction-scoped advisory locks of `parts` (sorted: every caller
    takes them in the same order, so two workers cannot deadlock on them), in one
    round trip: unnest yields the array in order, and each row takes its lock."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, p) FROM unnest($2::int[]) AS p", lock_class, parts
    )


async def current_watermark(conn: asyncpg.Connection) -> int:
    value = await conn.fetchval("SELECT max(event_us) FROM stream_watermark")
    return int(value) if value is not None else 0


async def write_fcr_deltas(conn: asyncpg.Connection, deltas: Mapping[DeltaKey, Counters]) -> None:
    """One upsert of FCR counter deltas for a whole batch (stage 2, the sweep)."""
    if deltas:
        await conn.execute(_FCR_BUCKET_UPSERT, _delta_rows(deltas))


def _delta_rows(deltas: Mapping[DeltaKey, Counters]) -> str:
    return orjson.dumps(
        [
            {"k": kind, "i": ident, "b": bucket_us // 1_000_000, **counters}
            for (kind, ident, bucket_us), counters in deltas.items()
        ]
    ).decode()


def _segment_rows(segments: Iterable[SegmentRow], team: Callable[[str], str]) -> str:
    """Changed segments, each with its agent's team (see _SEGMENTS_WRITE)."""
    rows = [
        {"i": agent, "t": team(agent), "s": start, "e": end, "st": state, "r": reason, "n": sign}
        for agent, start, end, state, reason, sign in segments
    ]
    return orjson.dumps(rows).decode()


def _calls_rows(changed: Mapping[str, CallState], part_of: Mapping[str, int]) -> str:
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
    return orjson.dumps(rows).decode()


def _timeline_rows(changed: Mapping[str, list[StateEvent]], part_of: Mapping[str, int]) -> str:
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
    return orjson.dumps(rows).decode()


async def _fetch_calls(conn: asyncpg.Connection, call_ids: list[str]) -> dict[str, CallState]:
    if not call_ids:
        return {}
    rows = await conn.fetch(
        "SELECT call_id, events, contrib, fact FROM calls WHERE call_id = ANY($1::text[])",
        call_ids,
    )
    return {
        r["call_id"]: CallState(
            {e[0]: e for e in orjson.loads(r["events"])},
            Contribution.from_json(_loads(r["contrib"])),
            _loads(r["fact"]),
        )
        for r in rows
    }


async def _fetch_timelines(
    conn: asyncpg.Connection, agents: list[str]
) -> dict[str, list[StateEvent]]:
    if not agents:
        return {}
    rows = await conn.fetch(
        "SELECT agent_id, events FROM agent_timelines WHERE agent_id = ANY($1::text[])", agents
    )
    return {r["agent_id"]: orjson.loads(r["events"]) for r in rows}

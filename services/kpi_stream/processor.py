"""The worker's Processor: stage 1 (events to call states, agent timelines and
bucket deltas) and the commit protocol that makes its writes exactly-once; it
hands stage 2 to fcr_stage.py and housekeeping to retention.py. What to count is
core.py (pure); the SQL and the rows it writes are store.py.

One class, over 400 lines, on purpose: the pending maps, the epoch and the
claims are read and changed by every path that commits (a batch computed ahead,
its recomputation under the lock, the bisection of a batch that fails for good),
and the protocol is only right if they change together.

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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
from prometheus_client import Counter

from services.core.agents import StateEvent, timeline_key
from services.core.calls import Compact
from services.core.db import LOCK_EVENTS
from services.core.envelope import Envelope
from services.core.events import EventError, partition_for, recheck
from services.core.settings import Settings
from services.kpi_stream import store
from services.kpi_stream.cache import Lru, split_cached
from services.kpi_stream.core import (
    CallState,
    assemble,
    group_events,
    history_needs,
    track_agents,
    unknown_ids,
)
from services.kpi_stream.fcr_stage import SWEEP_CHUNK, FcrStage
from services.kpi_stream.quarantine import Item, bisect, describe, items_of
from services.kpi_stream.quarantine import store as quarantine_store
from services.kpi_stream.retention import enforce_retention

log = logging.getLogger("callkpi.worker")


def _now_us() -> int:
    return time.time_ns() // 1000


RECOMPUTED = Counter(
    "callkpi_worker_batches_recomputed_total",
    "Event batches recomputed from Postgres under their lock because what they were "
    "computed from ahead of it could have changed (rebalances, restarts, retries)",
)

SendFacts = Callable[[dict[int, list[dict[str, Any]]]], Awaitable[None]]


@dataclass(slots=True)
class _Work:
    """Everything one events batch will write, computed before its transaction."""

    calls: dict[str, CallState]
    agents: dict[str, list[StateEvent]]
    writes: list[tuple[str, str]]  # (upsert, JSON rows), in this order
    facts: list[dict[str, Any]]
    max_ts: int | None
    too_old: int
    # per changed agent, the earliest time its change touched: until the batch
    # commits, later batches keep the tail from there (see _keep)
    earliest: dict[str, int]

    @staticmethod
    def nothing() -> _Work:
        """No result yet: a batch committed with it is computed under its lock."""
        return _Work({}, {}, [], [], None, 0, {})


@dataclass(slots=True)
class PreparedEvents:
    """An events batch computed ahead (prepare_events), waiting for commit_events."""

    envelopes: Sequence[Envelope]
    n_events: int
    epoch: int  # the processor's epoch when the computation started
    work: _Work
    seq: int = -1  # its number among the batches prepared (-1: not prepared ahead)


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
        self._calls = Lru(settings.call_cache_size)
        self.fcr = FcrStage(settings, pool)
        self._agents = Lru(settings.call_cache_size // 20)
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
        # Per batch prepared and not yet committed (by seq), the earliest time it
        # changed each agent's timeline at. Its events are not in Postgres yet, so
        # the tails later batches build on must keep them: an event before a tail
        # is placed from Postgres (agent_state_events) and would miss them.
        self._unsettled: dict[int, dict[str, int]] = {}
        self._seq = 0
        # Partitions we have recorded ourselves as the writer of since the last
        # rebalance (see _claim). Only their states are cached: a claim vouches
        # for what is read after it, not for what was cached before.
        self._claimed: set[int] = set()
        self._rebalances = 0
        self._commit_lock = asyncio.Lock()

    def forget(self) -> None:
        """Drop cached state: after a rebalance another worker may have written it."""
        self.fcr.forget()
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
        self._seq += 1
        self._unsettled[self._seq] = work.earliest
        n_events = sum(len(env.items) for env in envelopes)
        return PreparedEvents(envelopes, n_events, epoch, work, self._seq)

    async def commit_events(self, prepared: PreparedEvents) -> int:
        envelopes = prepared.envelopes
        parts = sorted({env.partition for env in envelopes})
        work = prepared.work
        try:
            async with self._commit_lock, self.pool.acquire() as conn, conn.transaction():
                await store.lock_partitions(conn, LOCK_EVENTS, parts)
                owned = await self._still_owner(conn, parts)
                if not owned:
                    # Another worker wrote here since we last did (or we just
                    # started): any cached state may be stale.
                    self._distrust()
                if prepared.epoch != self._epoch:
                    work = await self._recompute(conn, prepared)
                    if prepared.seq in self._unsettled:
                        self._unsettled[prepared.seq] = work.earliest
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
                await conn.execute(store.STATS_UPSERT, self.worker_id, prepared.n_events, lag)
                await store.write_offsets(conn, self.settings.events_topic, envelopes)
                # wakes the alert evaluators (delivered at commit, coalesced by
                # Postgres per transaction); FCR updates wait for their timer
                await conn.execute(store.NOTIFY_FIGURES)
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
        self._unsettled.pop(prepared.seq, None)
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
            self._unsettled.pop(prepared.seq, None)
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
            await quarantine_store(
                self.pool, "facts", self.settings.fcr_topic, env.partition, env.offset,
                env.origin(index), env.items[index], describe(exc),
            )  # fmt: skip

        await bisect(items_of(envelopes), failure, self.process_facts, aside)

    # --- stage 2 and housekeeping (fcr_stage.py, retention.py) ---------------
    async def process_facts(self, envelopes: Sequence[Envelope]) -> int:
        return await self.fcr.process_facts(envelopes)

    async def sweep(self, partitions: Iterable[int], limit: int = SWEEP_CHUNK) -> int:
        """Finalise FCR candidates whose window the watermark has passed, for at most
        `limit` customers (call again while it returns `limit`)."""
        return await self.fcr.sweep(partitions, limit)

    async def enforce_retention(self) -> None:
        await enforce_retention(self.pool, self.settings, _now_us())

    async def set_aside_record(
        self, partition: int, offset: int, raw: bytes | None, why: str
    ) -> None:
        """An events record that is no envelope and no valid event, kept whole."""
        text = (raw or b"").decode("utf-8", errors="replace")
        topic = self.settings.events_topic
        await quarantine_store(self.pool, "events", topic, partition, offset, -1, text, why)

    async def _set_aside_event(self, env: Envelope, i: int, error: str) -> None:
        """Quarantine the envelope's item i (stored under its index in the record)."""
        await quarantine_store(
            self.pool, "events", self.settings.events_topic, env.partition, env.offset,
            env.origin(i), env.items[i], error,
        )  # fmt: skip

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
            await store.lock_partitions(conn, LOCK_EVENTS, parts)
            await self._still_owner(conn, parts)
        if rebalances == self._rebalances:  # else claim again after the rebalance
            self._claimed.update(parts)

    async def _still_owner(self, conn: asyncpg.Connection, parts: list[int]) -> bool:
        """Record us as the last writer of `parts`; True if we already were for all
        of them, i.e. nobody else committed there since our last commit."""
        mine = await conn.fetchval(store.OWNERS_SWAP, parts, self.owner)
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
            calls, missing_calls = split_cached(by_call, self._pending_calls, self._calls)
            agents, missing_agents = split_cached(by_agent, self._pending_agents, self._agents)
        else:
            calls, missing_calls = {}, list(by_call)
            agents, missing_agents = {}, list(by_agent)
        if missing_calls or missing_agents:
            if conn is None:
                async with self.pool.acquire() as own:
                    calls.update(await store.fetch_calls(own, missing_calls))
                    agents.update(await store.fetch_timelines(own, missing_agents))
            else:
                calls.update(await store.fetch_calls(conn, missing_calls))
                agents.update(await store.fetch_timelines(conn, missing_agents))
        agents = await self._placeable(conn, by_agent, agents)
        keep = self._keep(by_agent) if conn is None else {}
        return await asyncio.to_thread(
            self._effects, envelopes, by_call, calls, by_agent, agents, keep
        )

    async def _placeable(
        self,
        conn: asyncpg.Connection | None,
        by_agent: dict[str, list[StateEvent]],
        tails: dict[str, list[StateEvent]],
    ) -> dict[str, list[StateEvent]]:
        """The tails, each extended back with the stored events its agent's new
        events need to be placed among: those of an id the tail does not hold may
        replace a stored copy, those before the tail fall between stored events.
        In order (the common case) that is one lookup of the new ids, no more."""
        retention = self.settings.call_state_retention_us
        probes = unknown_ids(by_agent, tails)
        if not probes and not history_needs(by_agent, tails, {}, retention):
            return tails
        if conn is None:
            async with self.pool.acquire() as own:
                return await self._placeable(own, by_agent, tails)
        copies = await store.fetch_state_copies(conn, probes)
        needs = history_needs(by_agent, tails, copies, retention)
        if not needs:
            return tails
        out = dict(tails)
        for agent, older in (await store.fetch_history(conn, needs)).items():
            out[agent] = sorted(older, key=timeline_key) + tails[agent]
        return out

    def _keep(self, by_agent: Iterable[str]) -> dict[str, int]:
        """Per agent, the earliest time a batch not yet committed changed it at."""
        keep: dict[str, int] = {}
        for earliest in self._unsettled.values():
            for agent in by_agent:
                ts = earliest.get(agent)
                if ts is not None and ts < keep.get(agent, ts + 1):
                    keep[agent] = ts
        return keep

    def _effects(
        self,
        envelopes: Sequence[Envelope],
        by_call: dict[str, list[Compact]],
        calls: dict[str, CallState],
        by_agent: dict[str, list[StateEvent]],
        agents: dict[str, list[StateEvent]],
        keep: dict[str, int],
    ) -> _Work:
        """The batch's new states and deltas, encoded for the upserts (pure CPU)."""
        result = assemble(by_call, calls, self.settings)
        s = self.settings
        tracked = track_agents(by_agent, agents, s, s.agent_timeline_tail_us, keep)
        writes: list[tuple[str, str]] = []
        if result.changed or tracked.changed:
            part_of = store.partitions_of(envelopes)
            if result.changed:
                writes.append((store.CALLS_UPSERT, store.calls_rows(result.changed, part_of)))
            if tracked.changed:
                rows = store.timeline_rows(tracked.changed, part_of)
                writes.append((store.TIMELINES_UPSERT, rows))
                writes.append((store.STATE_EVENTS_WRITE, store.state_event_rows(tracked.written)))
        if tracked.segments:
            rows = store.segment_rows(tracked.segments, self.settings.agent_team)
            writes.append((store.SEGMENTS_WRITE, rows))
        if result.deltas:
            writes.append((store.BUCKET_UPSERT, store.delta_rows(result.deltas)))
        max_ts = max((t for t in (result.max_ts, tracked.max_ts) if t is not None), default=None)
        return _Work(result.changed, tracked.changed, writes, result.facts, max_ts,
                     tracked.too_old, tracked.earliest)  # fmt: skip

    def _by_fcr_partition(self, facts: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {}
        for fact in facts:
            out.setdefault(partition_for(fact["customer"], self.settings.partitions), []).append(
                fact
            )
        return out

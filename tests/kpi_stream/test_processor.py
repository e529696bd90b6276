"""The Postgres driver of the worker equals the reference, including when a batch
dies before its commit and is replayed, and when the cache is lost (restart)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import asyncpg
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from services.core.db import asyncpg_dsn
from services.core.envelope import Envelope
from services.core.settings import Settings
from services.devstack import EmbeddedPostgres
from services.kpi_stream import fcr_stage
from services.kpi_stream.processor import PreparedEvents, Processor
from tests.support.databases import new_database
from tests.support.processor_rig import clock, envelopes, read_figures
from tests.support.scenarios import deliveries, scenarios
from tests.support.small_center import SETTINGS, assert_same, expected

ONE_MINUTE_TAILS = SETTINGS.model_copy(update={"agent_timeline_tail_seconds": 60})


class Crash(Exception):
    """Stands in for the process dying in the middle of a batch."""


async def drive(
    url: str,
    batches: list[list[dict[str, Any]]],
    rnd: random.Random,
    settings: Settings = SETTINGS,
) -> dict[Any, Any]:
    """Feed `batches` the way the worker does: batch N+1 is computed before batch N
    commits. Commits fail now and then (retried in place, or the process restarts
    with an empty cache and both batches are replayed), rebalances drop the cache,
    and another worker sometimes writes a batch in between, while ours waits."""
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=4)
    fact_log: list[tuple[int, dict[str, Any]]] = []
    crash_next = False

    async def send_facts(by_part: dict[int, list[dict[str, Any]]]) -> None:
        for part, facts in by_part.items():
            fact_log.extend((part, f) for f in facts)
        if crash_next:
            raise Crash  # facts were "sent", the transaction never commits

    proc = Processor(settings, pool, send_facts, "test", clock=clock)
    other = Processor(settings, pool, send_facts, "other", clock=clock)
    waiting: tuple[PreparedEvents, list[Envelope]] | None = None  # computed, not committed
    consumed = 0

    async def commit(prepared: PreparedEvents, envs: list[Envelope]) -> bool:
        """Commit, or fail and recover as the worker would; False if it restarted."""
        nonlocal crash_next, proc
        crash_next = rnd.random() < 0.2
        try:
            await proc.commit_events(prepared)
            crash_next = False  # this batch sent no facts: nothing to crash on
            return True
        except Crash:
            crash_next = False
            if rnd.random() < 0.5:
                await proc.commit_events(prepared)  # the worker's retry
                return True
            proc = Processor(settings, pool, send_facts, "test", clock=clock)  # a new process
            await proc.process_events(envs)
            return False

    async def prepare_later(p: Processor, envs: list[Envelope]) -> PreparedEvents:
        # the worker reads its next batch from Kafka first: start anywhere in the commit
        await asyncio.sleep(rnd.choice([0, 0, 0.0005, 0.002, 0.005]))
        return await p.prepare_events(envs)

    try:
        for batch in batches:
            envs = envelopes(batch)
            if rnd.random() < 0.15:
                await other.process_events(envs)
                continue
            if waiting is None:
                prepared = await proc.prepare_events(envs)
            else:
                # as in the worker: the next batch is computed while this one commits
                before = proc
                _, prepared = await asyncio.gather(commit(*waiting), prepare_later(proc, envs))
                if proc is not before:  # restarted: the next batch comes again too
                    prepared = await proc.prepare_events(envs)
            waiting = (prepared, envs)
            if rnd.random() < 0.1:
                proc.forget()
            if rnd.random() < 0.5:
                new = fact_log[consumed:]
                consumed = len(fact_log)
                await proc.process_facts([Envelope(p, 0, [f]) for p, f in new])
        if waiting is not None:
            await proc.commit_events(waiting[0])
        await proc.process_facts([Envelope(p, 0, [f]) for p, f in fact_log[consumed:]])
        await proc.sweep(range(SETTINGS.partitions))
        async with pool.acquire() as conn:
            return await read_figures(conn)
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def pg_server(pg: EmbeddedPostgres) -> EmbeddedPostgres:
    return pg


@hsettings(max_examples=30, deadline=None)
@given(data=st.data())
def test_postgres_driver_with_crashes_and_replays_matches_reference(
    pg_server: EmbeddedPostgres, data: st.DataObject
) -> None:
    events = data.draw(scenarios())
    batches = data.draw(deliveries(events))
    url = new_database(pg_server)
    got = asyncio.run(drive(url, batches, random.Random(data.draw(st.integers(0, 99)))))
    assert_same(got, expected(events))


@hsettings(max_examples=30, deadline=None)
@given(data=st.data())
def test_one_minute_agent_tails_place_shuffled_state_events_from_postgres_as_the_reference(
    pg_server: EmbeddedPostgres, data: st.DataObject
) -> None:
    # With tails of a minute, almost every shuffled state event falls before its
    # agent's tail: it is placed among the events stored in agent_state_events,
    # under the same crashes, retries, rebalances and second worker as above.
    events = data.draw(scenarios())
    batches = data.draw(deliveries(events))
    url = new_database(pg_server)
    rnd = random.Random(data.draw(st.integers(0, 99)))
    got = asyncio.run(drive(url, batches, rnd, ONE_MINUTE_TAILS))
    assert_same(got, expected(events))


def test_watermark_sweep_finalises_fcr_once_the_window_has_passed(pg: EmbeddedPostgres) -> None:
    base = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

    def ev(eid: str, t: timedelta, typ: str, **f: Any) -> dict[str, Any]:
        return {"event_id": eid, "type": typ, "occurred_at": (base + t).isoformat(), **f}

    first = [
        ev("1", timedelta(0), "call.offered", call_id="A", queue_id="billing", customer_id="x"),
        ev("2", timedelta(seconds=5), "call.answered", call_id="A", agent_id="a1"),
        ev("3", timedelta(seconds=60), "call.ended", call_id="A", ended_by="agent"),
    ]
    # An unrelated call 61 minutes later moves the watermark past A's 1-hour window.
    later = [ev("4", timedelta(minutes=61), "call.offered", call_id="B", queue_id="tech")]
    url = new_database(pg)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=2)
        facts: list[dict[str, Any]] = []

        async def send(by_part: dict[int, list[dict[str, Any]]]) -> None:
            facts.extend(f for fs in by_part.values() for f in fs)

        proc = Processor(SETTINGS, pool, send, "test", clock=clock)
        await proc.process_events(envelopes(first))
        await proc.process_facts([Envelope(0, 0, facts)])
        async with pool.acquire() as conn:
            before = (await read_figures(conn))[("center", "all")]
        await proc.process_events(envelopes(later))
        await proc.sweep(range(SETTINGS.partitions))
        async with pool.acquire() as conn:
            after = (await read_figures(conn))[("center", "all")]
        await pool.close()
        return before, after

    before, after = asyncio.run(scenario())
    assert (before["fcr_candidates"], before["fcr_final"], before["fcr_rate"]) == (1, 0, None)
    assert before["fcr_rate_provisional"] == 1.0
    assert (after["fcr_final"], after["fcr_resolved"], after["fcr_rate"]) == (1, 1, 1.0)


def test_a_batch_computed_while_the_previous_one_is_recomputed_is_recomputed_too(
    pg: EmbeddedPostgres,
) -> None:
    """The worker computes batch N+1 while batch N commits. If N's ahead-of-lock
    result is discarded (another worker wrote its partition) and N+1 starts while N
    is being recomputed, N+1 read the call from Postgres before N's commit: it must
    not be committed as computed, or the call loses N's event."""
    base = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

    def ev(eid: str, secs: int, typ: str, **f: Any) -> dict[str, Any]:
        return {
            "event_id": eid,
            "type": typ,
            "occurred_at": (base + timedelta(seconds=secs)).isoformat(),
            **f,
        }

    offered = ev("1", 0, "call.offered", call_id="X", queue_id="billing")
    answered = ev("2", 10, "call.answered", call_id="X", agent_id="a1")
    ended = ev("3", 70, "call.ended", call_id="X", ended_by="agent")
    # a call of another customer that hashes to X's partition, written by another worker
    part = envelopes([offered])[0].partition
    foreign = next(
        ev(f"y{i}", 5, "call.offered", call_id=f"Y{i}", queue_id="tech")
        for i in range(1000)
        if envelopes([ev("p", 0, "call.offered", call_id=f"Y{i}", queue_id="tech")])[0].partition
        == part
    )
    url = new_database(pg)
    reached, release = asyncio.Event(), asyncio.Event()

    class PausesInRecompute(Processor):
        async def _compute(self, conn: Any, envs: Any) -> Any:
            if conn is not None:  # the recompute under the lock
                reached.set()
                await release.wait()
            return await super()._compute(conn, envs)

    async def scenario() -> dict[Any, Any]:
        pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=4)

        async def send(by_part: dict[int, list[dict[str, Any]]]) -> None:
            pass

        try:
            proc = PausesInRecompute(SETTINGS, pool, send, "test")
            other = Processor(SETTINGS, pool, send, "other", clock=clock)
            await other.process_events(envelopes([offered]))
            release.set()
            await proc.process_events(envelopes([offered]))  # proc owns the partition
            release.clear()
            reached.clear()
            await other.process_events(envelopes([foreign]))  # now other does
            batch_n = await proc.prepare_events(envelopes([answered]))
            writing = asyncio.create_task(proc.commit_events(batch_n))
            await reached.wait()
            batch_n1 = await proc.prepare_events(envelopes([ended]))
            release.set()
            await writing
            await proc.commit_events(batch_n1)
            async with pool.acquire() as conn:
                return await read_figures(conn)
        finally:
            await pool.close()

    got = asyncio.run(scenario())
    assert_same(got, expected([offered, answered, ended, foreign]))


def test_first_batches_after_a_start_or_rebalance_are_not_computed_twice(
    pg: EmbeddedPostgres,
) -> None:
    """A new worker (or one just given partitions) claims them before computing its
    first batch there, so that batch, and the one computed while it commits, are
    trusted at commit instead of recomputed under the lock. Another worker writing
    in between still forces the recomputation."""
    from services.kpi_stream.processor import RECOMPUTED

    base = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

    def call(i: int) -> list[dict[str, Any]]:
        t = base + timedelta(minutes=i)
        return [
            {"event_id": f"{i}o", "type": "call.offered", "occurred_at": t.isoformat(),
             "call_id": f"C{i}", "queue_id": "billing"},
            {"event_id": f"{i}e", "type": "call.ended", "occurred_at": t.isoformat(),
             "call_id": f"C{i}", "ended_by": "customer"},
        ]  # fmt: skip

    url = new_database(pg)

    async def scenario() -> tuple[float, float, float]:
        pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=4)

        async def send(by_part: dict[int, list[dict[str, Any]]]) -> None:
            pass

        async def pipelined(p: Processor, batches: list[list[dict[str, Any]]]) -> None:
            waiting = await p.prepare_events(envelopes(batches[0]))
            for batch in batches[1:]:
                _, waiting = await asyncio.gather(
                    p.commit_events(waiting), p.prepare_events(envelopes(batch))
                )
            await p.commit_events(waiting)

        try:
            proc = Processor(SETTINGS, pool, send, "test", clock=clock)
            start = RECOMPUTED._value.get()
            await pipelined(proc, [call(i) for i in range(6)])
            after_start = RECOMPUTED._value.get()
            proc.forget()  # a rebalance
            await pipelined(proc, [call(i) for i in range(6, 12)])
            after_rebalance = RECOMPUTED._value.get()
            other = Processor(SETTINGS, pool, send, "other", clock=clock)
            await other.process_events(envelopes(call(12)))
            await pipelined(proc, [call(12)])  # partition written by other since
            after_other = RECOMPUTED._value.get()
            return after_start - start, after_rebalance - after_start, after_other - after_rebalance
        finally:
            await pool.close()

    at_start, at_rebalance, after_other = asyncio.run(scenario())
    assert (at_start, at_rebalance) == (0, 0)
    assert after_other >= 1


@hsettings(max_examples=10, deadline=None)
@given(data=st.data())
def test_fcr_loaded_by_window_instead_of_whole_customers_matches_reference(
    pg_server: EmbeddedPostgres, data: st.DataObject
) -> None:
    """The same property with no customer cached whole: every FCR batch and sweep
    loads calls by window (the path of customers with many calls)."""
    events = data.draw(scenarios())
    batches = data.draw(deliveries(events))
    url = new_database(pg_server)
    with mock.patch.object(fcr_stage, "FCR_CACHE_MAX_CALLS", 0):
        got = asyncio.run(drive(url, batches, random.Random(data.draw(st.integers(0, 99)))))
    assert_same(got, expected(events))


def test_a_customer_with_2000_calls_is_counted_exactly_and_never_loaded_whole(
    pg_server: EmbeddedPostgres,
) -> None:
    """One caller id behind 2,000 calls over four days (a switchboard, or a number a
    PBX should have withheld), shuffled, duplicated and late: the figures are the
    reference's, and no FCR batch loads more than a window's worth of its calls."""
    rnd = random.Random(2000)
    base = datetime(2026, 11, 20, tzinfo=UTC)
    events: list[dict[str, Any]] = []
    t = 0.0
    for i in range(2000):
        # mostly minutes apart (repeats within the 1 h window), now and then hours
        t += rnd.choice([60, 120, 600, 1800, 5400])
        cid = f"hot{i}"
        at = base + timedelta(seconds=t)
        events += [
            {"event_id": f"{cid}o", "type": "call.offered", "occurred_at": at.isoformat(),
             "call_id": cid, "queue_id": "billing", "customer_id": "+8610000000"},
            {"event_id": f"{cid}a", "type": "call.answered", "call_id": cid, "agent_id": "a1",
             "occurred_at": (at + timedelta(seconds=5)).isoformat()},
            {"event_id": f"{cid}e", "type": "call.ended", "call_id": cid, "ended_by": "agent",
             "occurred_at": (at + timedelta(seconds=50)).isoformat()},
        ]  # fmt: skip
    delivered = events + rnd.sample(events, len(events) // 10)
    # roughly in time order, as a real import is, with some events late; the
    # second half newest first, as a database export sorted the other way: later
    # calls are then stored before the earlier ones whose outcome they decide
    delivered.sort(key=lambda e: e["occurred_at"] if rnd.random() < 0.9 else "0")
    half = len(delivered) // 2
    delivered[half:] = sorted(delivered[half:], key=lambda e: e["occurred_at"], reverse=True)
    batches = [delivered[i : i + 600] for i in range(0, len(delivered), 600)]
    largest = 0
    original = fcr_stage.FcrStage._load_customers

    async def measured(self: fcr_stage.FcrStage, *args: Any) -> Any:
        nonlocal largest
        out = await original(self, *args)
        largest = max(largest, max((len(rows) for rows in out[0].values()), default=0))
        return out

    url = new_database(pg_server)
    with mock.patch.object(fcr_stage.FcrStage, "_load_customers", measured):
        got = asyncio.run(drive(url, batches, random.Random(7)))
    assert_same(got, expected(events))
    # a batch of ~200 calls plus one hour either side, not the 2,000 calls
    assert 0 < largest < 1000, largest

"""No event can stop the count: a batch that fails for a reason no retry cures is
bisected, the events that fail alone are set aside in the quarantine, and every
other event is counted exactly once, as the reference counts the good ones.

These records bypass ingest (which refuses all of them): another producer writing
to the topic, or records an older ingest wrote."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import asyncpg
import pytest

from services.core.db import asyncpg_dsn
from services.core.envelope import Envelope
from services.core.events import normalize, parse_timestamp_us
from services.devstack import EmbeddedPostgres
from services.kpi_stream.app import retrying
from services.kpi_stream.processor import PreparedEvents, Processor
from services.kpi_stream.quarantine import is_permanent
from tests.support.databases import new_database
from tests.support.processor_rig import KEY, at, call, envelopes, rig
from tests.support.small_center import assert_same, expected


def poison() -> dict[str, dict[str, Any]]:
    """Normalised events (as they sit in an envelope) that no retry can store."""
    nul = normalize(call(90, 5)[0], KEY)
    nul |= {"call_id": "q9\x000", "event_id": "nul-o"}
    huge = normalize(call(91, 6)[3], KEY) | {"event_id": "huge-d", "sale_amount": 1e17}
    inf = normalize(call(92, 7)[3], KEY) | {"event_id": "inf-d", "sale_amount": 1e300}
    reason = normalize({"event_id": "r-nul", "type": "agent.state", "occurred_at": at(8),
                        "agent_id": "a2", "state": "not_ready"}, KEY) | {"reason": "lunch\x00"}  # fmt: skip
    future = normalize({"event_id": "far", "type": "call.offered",
                        "occurred_at": "9999-12-31T20:00:00-01:00", "call_id": "q93",
                        "queue_id": "billing"}, KEY)  # fmt: skip
    return {"nul-o": nul, "huge-d": huge, "inf-d": inf, "r-nul": reason, "far": future}


async def quarantined(pool: asyncpg.Pool) -> dict[str, str]:
    rows = await pool.fetch("SELECT event_id, error FROM quarantine ORDER BY id")
    return {r["event_id"]: r["error"] for r in rows}


async def run_like_the_worker(proc: Processor, envs: list[Envelope]) -> None:
    """As the worker's agent does: compute ahead, commit, and settle what fails
    for good (services/kpi_stream/app.py)."""

    async def failed(exc: BaseException) -> BaseException:
        return exc

    prepared: PreparedEvents | BaseException = await retrying(
        "events", partial(proc.prepare_events, envs), failed
    )
    if isinstance(prepared, BaseException):
        await proc.set_aside_events(envs, prepared)
        return
    ready = prepared
    await retrying("events", partial(proc.commit_events, ready),
                   lambda exc: proc.set_aside_events(ready.envelopes, exc, ready))  # fmt: skip


def test_poison_in_records_the_door_did_not_check_is_quarantined_event_by_event(
    pg: EmbeddedPostgres,
) -> None:
    good = [ev for n in range(8) for ev in call(n, n * 2)]
    good += call(91, 6)[:3] + call(92, 7)[:3]  # the calls of the poisoned dispositions
    good += [{"event_id": "s1", "type": "agent.state", "occurred_at": at(0), "agent_id": "a2",
              "state": "available"},
             {"event_id": "s2", "type": "agent.state", "occurred_at": at(30), "agent_id": "a2",
              "state": "logged_out"}]  # fmt: skip
    bad = poison()
    envs = envelopes(good)
    # the poison among the good events of the same records, offsets as Kafka gives
    for i, ev in enumerate(bad.values()):
        env = envs[i % len(envs)]
        env.items.insert(i % (len(env.items) + 1), ev)
    # records an older ingest wrote (no door mark): the worker checks each event
    envs = [Envelope(e.partition, 0, e.items, offset=100 + i, checked=False)
            for i, e in enumerate(envs)]  # fmt: skip
    url = new_database(pg)

    async def scenario() -> tuple[dict[Any, Any], dict[str, str], int, int]:
        async with rig(url) as r:
            proc = r.processor()
            await run_like_the_worker(proc, envs)
            # a crash and a replay of the same records quarantines nothing twice
            await run_like_the_worker(r.processor(), envs)
            await proc.process_facts([Envelope(0, 0, r.facts)])
            watermark = await r.pool.fetchval("SELECT max(event_us) FROM stream_watermark")
            count = await r.pool.fetchval("SELECT count(*) FROM quarantine")
            return await r.figures(), await quarantined(r.pool), int(watermark), int(count)

    figures, kept, watermark, count = asyncio.run(scenario())
    assert set(kept) == set(bad) and count == len(bad)
    assert "call_id must not contain control characters" in kept["nul-o"]
    assert "sale_amount must be smaller than or equal to 1000000000000" in kept["huge-d"]
    assert "sale_amount must be smaller than or equal to 1000000000000" in kept["inf-d"]
    assert "reason must not contain control characters" in kept["r-nul"]
    assert "max_future_seconds=3600 past the worker's clock" in kept["far"]
    # the year-9999 event moved no watermark
    assert watermark == parse_timestamp_us(at(30))
    assert_same(figures, expected(good))


def test_a_batch_that_fails_for_good_is_bisected_to_the_events_that_fail_alone(
    pg: EmbeddedPostgres,
) -> None:
    """The last net, for what a checked record still cannot store (a door that
    missed something): the batch is bisected and only the failing events set aside."""
    good = [ev for n in range(8) for ev in call(n, n * 2)] + call(92, 7)[:3]
    bad = {k: v for k, v in poison().items() if k in ("nul-o", "inf-d", "r-nul")}
    envs = envelopes(good)
    for i, ev in enumerate(bad.values()):
        envs[i % len(envs)].items.append(ev)
    envs = [Envelope(e.partition, 0, e.items, offset=200 + i) for i, e in enumerate(envs)]
    url = new_database(pg)

    async def scenario() -> tuple[dict[Any, Any], dict[str, str]]:
        async with rig(url) as r:
            proc = r.processor()
            await run_like_the_worker(proc, envs)
            await proc.process_facts([Envelope(0, 0, r.facts)])
            return await r.figures(), await quarantined(r.pool)

    figures, kept = asyncio.run(scenario())
    assert set(kept) == set(bad)
    assert "0x00" in kept["nul-o"]  # Postgres: invalid byte sequence for encoding "UTF8"
    assert "InvalidOperation" in kept["inf-d"]
    assert "UntranslatableCharacterError" in kept["r-nul"]
    assert_same(figures, expected(good))


def test_a_fact_that_fails_for_good_is_quarantined_and_the_others_are_counted(
    pg: EmbeddedPostgres,
) -> None:
    url = new_database(pg)
    events = [ev for n in range(3) for ev in call(n, n * 2)]

    async def scenario() -> tuple[dict[Any, Any], dict[str, str]]:
        async with rig(url) as r:
            proc = r.processor()
            await proc.process_events(envelopes(events))
            facts = r.facts
            broken = {**facts[1], "call_id": "broken", "offered_at": "yesterday"}
            envs = [Envelope(0, 0, [facts[0], broken, facts[1], facts[2]], offset=7)]
            await retrying("facts", partial(proc.process_facts, envs),
                           partial(proc.set_aside_facts, envs))  # fmt: skip
            rows = await r.pool.fetch("SELECT stage, record_offset, item, error FROM quarantine")
            kept = {f"{q['stage']}@{q['record_offset']}#{q['item']}": q["error"] for q in rows}
            return await r.figures(), kept

    figures, kept = asyncio.run(scenario())
    assert list(kept) == ["facts@7#1"]
    assert "TypeError" in kept["facts@7#1"]
    assert_same(figures, expected(events))


def test_only_errors_about_the_data_are_permanent(pg: EmbeddedPostgres) -> None:
    async def errors() -> list[BaseException]:
        found: list[BaseException] = []
        conn = await asyncpg.connect(asyncpg_dsn(pg.url("postgres")))
        for statement in ("SELECT 1/0", "SELECT 9223372036854775807::bigint + 1",
                          r"""SELECT '{"a": "\u0000"}'::jsonb""", "RAISE"):  # fmt: skip
            try:
                await conn.execute(statement)
            except Exception as exc:
                found.append(exc)
        await conn.close()
        try:
            await asyncpg.connect(host="127.0.0.1", port=1, user="x", timeout=2)
        except Exception as exc:
            found.append(exc)
        return found

    div, overflow, nul, syntax, refused = asyncio.run(errors())
    assert [is_permanent(e) for e in (div, overflow, nul)] == [True, True, True]
    # a syntax error is a bug, a refused connection an outage: retried, never set aside
    assert not is_permanent(syntax) and not is_permanent(refused)
    assert is_permanent(ValueError()) and not is_permanent(TimeoutError())


@pytest.mark.parametrize("amount", [1e17, 1e300])
def test_an_out_of_range_sale_leaves_its_call_counted_without_the_sale(
    pg: EmbeddedPostgres, amount: float
) -> None:
    good = call(1, 0)
    bad = normalize(call(2, 1)[3], KEY) | {"event_id": "bad", "sale_amount": amount}
    envs = envelopes(good + call(2, 1)[:3])
    envs[0].items.append(bad)
    # as an older ingest wrote them: checked event by event, so the poison is set
    # aside before it joins its call's state (where only the combination fails)
    envs = [Envelope(e.partition, 0, e.items, checked=False) for e in envs]
    url = new_database(pg)

    async def scenario() -> dict[Any, Any]:
        async with rig(url) as r:
            await run_like_the_worker(r.processor(), envs)
            return await r.figures()

    want = expected(good + call(2, 1)[:3])
    got = asyncio.run(scenario())
    # FCR is stage 2's (not driven here): compare the call counters of stage 1
    for key in (k for k in want if k[0] in ("center", "team", "queue")):
        for name in ("offered", "answered", "handled", "sales", "sales_amount", "aht_seconds"):
            assert got[key][name] == want[key][name], (key, name)

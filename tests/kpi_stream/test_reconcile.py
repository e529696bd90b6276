"""FCR facts the broker lost between the stages are re-derived from what call
assembly stored: after a reconcile the figures equal the reference, a second one
sends nothing, and a loss is seen from the offsets the workers had reached."""

from __future__ import annotations

import asyncio
from typing import Any

from services.core.envelope import Envelope
from services.devstack import EmbeddedPostgres
from services.kpi_stream.reconcile import check_and_repair, reconcile
from tests.support.databases import new_database
from tests.support.processor_rig import call, envelopes, rig
from tests.support.small_center import SETTINGS, assert_same, expected

# one customer calling back within the FCR window, another calling once, a third
# twice: FCR candidates, finals and repeats all depend on every fact arriving
CALLS = [(1, 0, "+861"), (2, 20, "+861"), (3, 5, "+862"), (4, 10, "+863"), (5, 40, "+863"),
         (6, 200, "+861")]  # fmt: skip


def events() -> list[dict[str, Any]]:
    return [ev for n, minute, who in CALLS for ev in call(n, minute, who)]


def with_offsets(envs: list[Envelope], first: int) -> list[Envelope]:
    return [Envelope(e.partition, 0, e.items, offset=first + i) for i, e in enumerate(envs)]


async def deliver(proc: Any, facts: list[dict[str, Any]]) -> None:
    """Stage 2 receives `facts` (each on its own record) and sweeps."""
    if facts:
        await proc.process_facts([Envelope(0, 0, [f]) for f in facts])
    await proc.sweep(range(SETTINGS.partitions))


def test_facts_lost_between_the_stages_are_sent_again_and_figures_equal_the_reference(
    pg: EmbeddedPostgres,
) -> None:
    evs = events()
    url = new_database(pg)

    async def scenario() -> tuple[Any, Any, int, int, int]:
        async with rig(url) as r:
            proc = r.processor()
            for env in envelopes(evs):
                await proc.process_events([env])
            sent = list(r.facts)
            # the broker lost every other fact before stage 2 read it
            await deliver(proc, sent[::2])
            broken = await r.figures()
            r.facts.clear()
            resent = await reconcile(r.pool, SETTINGS, r.send)
            await deliver(proc, list(r.facts))
            healed = await r.figures()
            r.facts.clear()
            again = await reconcile(r.pool, SETTINGS, r.send)
            return broken, healed, len(sent), resent, again

    broken, healed, sent, resent, again = asyncio.run(scenario())
    want = expected(evs)
    assert broken != healed, "the lost facts changed nothing: the test proves nothing"
    assert resent == sent - len(range(0, sent, 2)), "only the missing facts are sent"
    assert_same(healed, want)
    assert again == 0, "the stages agree: nothing to send"


def test_reconcile_sends_only_the_calls_offered_in_the_range(pg: EmbeddedPostgres) -> None:
    evs = events()
    url = new_database(pg)
    from tests.support.processor_rig import BASE

    async def scenario() -> list[str]:
        async with rig(url) as r:
            proc = r.processor()
            for env in envelopes(evs):
                await proc.process_events([env])
            r.facts.clear()  # all lost
            lo = int(BASE.timestamp() * 1e6) + 15 * 60_000_000
            hi = int(BASE.timestamp() * 1e6) + 60 * 60_000_000
            await reconcile(r.pool, SETTINGS, r.send, lo, hi)
            return sorted(f["call_id"] for f in r.facts)

    assert asyncio.run(scenario()) == ["q2", "q5"]  # offered at minutes 20 and 40


async def processed_from_offset_40(r: Any, evs: list[dict[str, Any]]) -> dict[tuple[str, int], int]:
    """The events processed one record each from offset 40 on; the offset each
    partition reached."""
    proc = r.processor()
    envs = with_offsets(envelopes(evs), first=40)
    for env in envs:
        await proc.process_events([env])
    return {(SETTINGS.events_topic, e.partition): e.offset + 1 for e in envs}


def test_a_partition_shorter_than_the_workers_reached_is_a_loss_repaired_once(
    pg: EmbeddedPostgres,
) -> None:
    evs = events()
    url = new_database(pg)

    async def scenario() -> tuple[list[Any], int, list[Any], list[Any]]:
        async with rig(url) as r:
            reached = await processed_from_offset_40(r, evs)
            r.facts.clear()  # lost with the broker's memory

            async def same() -> dict[tuple[str, int], int]:
                return dict(reached)

            async def restarted() -> dict[tuple[str, int], int]:
                return dict.fromkeys(reached, 0)  # the broker came back empty

            intact = await check_and_repair(r.pool, SETTINGS, r.send, same)
            losses = await check_and_repair(r.pool, SETTINGS, r.send, restarted)
            resent = len(r.facts)
            after = await check_and_repair(r.pool, SETTINGS, r.send, restarted)
            return intact, resent, losses, after

    intact, resent, losses, after = asyncio.run(scenario())
    assert intact == [], "end offsets at what the workers reached: no loss"
    assert losses and all(loss.end == 0 and loss.reached > 40 for loss in losses)
    assert resent == len(CALLS), "every call's fact went out again"
    assert after == [], "a loss is repaired once, not on every check"


def test_a_short_end_offset_is_a_loss_only_when_the_last_processed_record_is_gone(
    pg: EmbeddedPostgres,
) -> None:
    evs = events()
    url = new_database(pg)

    async def scenario() -> tuple[list[Any], list[Any], list[Any], set[Any], set[Any]]:
        async with rig(url) as r:
            reached = await processed_from_offset_40(r, evs)
            asked: list[tuple[str, int, int]] = []

            async def short() -> dict[tuple[str, int], int]:
                return {k: v - 3 for k, v in reached.items()}  # Tansu's ListOffsets

            def answer(held: bool | None) -> Any:
                async def holds(topic: str, part: int, offset: int) -> bool | None:
                    asked.append((topic, part, offset))
                    return held

                return holds

            still_there = await check_and_repair(r.pool, SETTINGS, r.send, short, answer(True))
            no_answer = await check_and_repair(r.pool, SETTINGS, r.send, short, answer(None))
            gone = await check_and_repair(r.pool, SETTINGS, r.send, short, answer(False))
            last = {(t, p, n - 1) for (t, p), n in reached.items()}
            return still_there, no_answer, gone, set(asked), last

    still_there, no_answer, gone, asked, last = asyncio.run(scenario())
    assert still_there == [] and no_answer == [], "the record is there, or no answer: no loss"
    assert gone and all(loss.end == loss.reached - 3 for loss in gone)
    # the record asked for is, per partition, the last one the workers processed
    assert asked == last

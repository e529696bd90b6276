"""Live-window reads answered again from memory (services/api/read_cache.py):
only under the very snapshot they were read in, and never older than
read_cache_seconds, so a commit shows in the next read."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from services.api.read_cache import MAX_ENTRIES, ReadCache
from tests.support.stack import Stack, events_processed, wait_until


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_an_answer_is_reused_only_under_the_same_snapshot_and_within_its_age() -> None:
    clock = Clock()
    cache = ReadCache(1.0, clock)
    cache.put("k", "10:12:", b"one")
    assert cache.get("k", "10:12:") == b"one"
    assert cache.get("k", "10:13:") is None  # something committed since
    assert cache.get("other", "10:12:") is None
    clock.t += 1.5
    assert cache.get("k", "10:12:") is None  # older than read_cache_seconds


def test_a_zero_age_turns_the_cache_off_and_its_size_is_bounded() -> None:
    assert not ReadCache(0).enabled
    cache = ReadCache(1.0, Clock())
    for i in range(MAX_ENTRIES):
        cache.put(i, "s", b"x")
    cache.put("one more", "s", b"y")  # a client asking for ever new ids
    assert cache.get(0, "s") is None
    assert cache.get("one more", "s") == b"y"


def test_requests_that_miss_together_wait_for_one_read() -> None:
    cache = ReadCache(1.0, Clock())
    reads: list[str] = []

    async def read() -> bytes:
        reads.append("read")
        await asyncio.sleep(0.01)
        return b"figures"

    async def clients() -> list[bytes]:
        same = [cache.answer("k", "s1", read) for _ in range(32)]
        return await asyncio.gather(*same, cache.answer("k", "s2", read))

    assert asyncio.run(clients()) == [b"figures"] * 33
    assert reads == ["read", "read"]  # one per snapshot


def test_a_read_that_fails_fails_its_waiters_and_is_not_kept() -> None:
    cache = ReadCache(1.0, Clock())

    async def failing() -> bytes:
        await asyncio.sleep(0.01)
        raise LookupError("no such entity")

    async def clients() -> list[Any]:
        calls = [cache.answer("k", "s", failing) for _ in range(3)]
        return await asyncio.gather(*calls, return_exceptions=True)

    assert [type(r) for r in asyncio.run(clients())] == [LookupError] * 3
    assert cache.get("k", "s") is None


def test_a_request_arriving_while_the_snapshot_is_read_waits_for_the_next_read() -> None:
    """A commit between the start of a snapshot query and a request's arrival must
    show in that request: it gets the query that starts after it arrived."""
    committed = ["1:1:"]
    started: list[int] = []
    gate, under_way = asyncio.Event(), asyncio.Event()

    async def snapshot() -> str:
        started.append(len(started))
        seen = committed[-1]
        under_way.set()
        if len(started) == 1:
            await gate.wait()  # the first query is slow
        return seen

    cache = ReadCache(1.0, Clock(), snapshot=snapshot)

    async def clients() -> list[str]:
        early = [asyncio.ensure_future(cache.snapshot()) for _ in range(8)]
        await under_way.wait()  # the first query has read "1:1:"
        committed.append("2:2:")  # a commit, then later requests arrive
        late = [asyncio.ensure_future(cache.snapshot()) for _ in range(8)]
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(*early, *late)

    got = asyncio.run(clients())
    assert got == ["1:1:"] * 8 + ["2:2:"] * 8
    assert started == [0, 1]  # 16 requests, two queries


def test_a_snapshot_that_cannot_be_read_fails_its_waiters_and_the_next_request_reads_again() -> (
    None
):
    outcomes: list[Exception | str] = [ConnectionError("Postgres is away"), "3:3:"]

    async def snapshot() -> str:
        await asyncio.sleep(0.01)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    cache = ReadCache(1.0, Clock(), snapshot=snapshot)

    async def clients() -> tuple[list[Any], str]:
        failed = await asyncio.gather(*(cache.snapshot() for _ in range(3)),
                                      return_exceptions=True)  # fmt: skip
        return failed, await cache.snapshot()

    failed, after = asyncio.run(clients())
    assert [type(f) for f in failed] == [ConnectionError] * 3
    assert after == "3:3:"


def _offered(stack: Stack, queue: str) -> int:
    r = stack.get(f"/v1/kpis/queue/{queue}", window="15m")
    return int(r.json()["offered"]) if r.status_code == 200 else -1


def test_a_window_read_right_after_a_commit_shows_it_though_the_same_read_was_just_cached(
    stack: Stack,
) -> None:
    now = datetime.now(UTC)

    def call(i: int) -> dict[str, Any]:
        at = (now - timedelta(seconds=60 - i)).isoformat()
        return {"event_id": f"rc-{i}", "type": "call.offered", "call_id": f"rc-{i}",
                "queue_id": "q-cache", "occurred_at": at}  # fmt: skip

    assert stack.post([call(1)]).status_code == 202
    assert wait_until(lambda: _offered(stack, "q-cache") == 1, timeout=30)
    assert _offered(stack, "q-cache") == 1  # (answered again from memory)
    before = events_processed(stack)
    assert stack.post([call(2)]).status_code == 202
    # the worker's commit, seen without reading the window
    assert wait_until(lambda: events_processed(stack) > before, timeout=30)
    assert _offered(stack, "q-cache") == 2  # the first read after it, not a second later


def test_a_window_answered_from_memory_is_the_same_document_as_one_read_afresh(
    stack: Stack,
) -> None:
    now = datetime.now(UTC)
    at = (now - timedelta(seconds=30)).isoformat()
    ev = {"event_id": "rc-doc", "type": "call.offered", "call_id": "rc-doc",
          "queue_id": "q-cache-doc", "occurred_at": at}  # fmt: skip
    assert stack.post([ev]).status_code == 202
    assert wait_until(lambda: _offered(stack, "q-cache-doc") == 1, timeout=30)
    first = stack.get("/v1/kpis/queue/q-cache-doc", window="15m")
    again = stack.get("/v1/kpis/queue/q-cache-doc", window="15m")
    assert first.headers["content-type"] == "application/json"
    # an explicit range is never cached: the same figures, encoded by FastAPI
    body = first.json()
    fresh = stack.get("/v1/kpis/queue/q-cache-doc", **{"from": body["from"], "to": body["to"]})
    assert fresh.status_code == 200, fresh.text
    assert again.json().keys() == fresh.json().keys()
    skip = {"window", "from", "to", "live", "pipeline"}
    same = {k: v for k, v in fresh.json().items() if k not in skip}
    assert {k: v for k, v in again.json().items() if k not in skip} == same

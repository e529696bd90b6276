"""Live-window reads of `GET /v1/kpis/{kind}/{id}` answered again from memory
while nothing has been committed since, for at most `read_cache_seconds`.

A wallboard, a BI tool or a script polling the same window costs each request
its queries from scratch (about 10 ms of API CPU plus Postgres' time: one API
process held ~100 window reads a second in `bench.reads`). Between two commits
the stored figures cannot differ, so the answer can be served again exactly:
each request reads Postgres' current snapshot (`pg_current_snapshot()`, which
changes with every transaction that commits anywhere in the database; one query,
on a connection of its own, serves all the requests that arrived before it
started: `Snapshots`) and a cached answer is used only under the very same
snapshot. Hits are answered before FastAPI's routing
(services/api/cache_hits.py). What the clock moves
(waits and time in state up to now, how far behind the pipeline is) is at most
`read_cache_seconds` old; the window's bounds (whole minutes) are part of the
key, so an answer is never served for other edges. 0 turns the cache off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

# Distinct windows held (entity × window × sl × breakdown); past it the cache
# starts again empty, which bounds its memory whatever ids clients ask for.
MAX_ENTRIES = 10_000

SNAPSHOT_SQL = "SELECT pg_current_snapshot()::text"


class Snapshots:
    """Postgres' current snapshot for the requests that ask, one query for all of
    those that asked before it started.

    A request must not be answered under a snapshot read before it arrived (a
    commit in between would not show), so a request that finds a query already
    under way waits for the next one, which starts as soon as that one returns.
    Under 32 clients that is two queries per round of requests instead of a
    connection check-out and a query each (a fifth of a cached read's time)."""

    def __init__(self, fetch: Callable[[], Awaitable[str]]) -> None:
        self._fetch = fetch
        self._next: asyncio.Future[str] | None = None
        self._running: asyncio.Task[None] | None = None

    async def current(self) -> str:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        fut = self._next
        if self._running is None:
            self._running = asyncio.get_running_loop().create_task(self._run())
        return await asyncio.shield(fut)

    async def _run(self) -> None:
        try:
            while self._next is not None:
                fut, self._next = self._next, None
                try:
                    fut.set_result(await self._fetch())
                except Exception as exc:
                    fut.set_exception(exc)
                    fut.exception()  # retrieved: each waiter raises it, it is not logged again
                except BaseException:  # cancelled (the process stops): so are its waiters
                    fut.cancel()
                    if self._next is not None:
                        self._next.cancel()
                        self._next = None
                    raise
        finally:
            self._running = None


def window_key(path: str, query_string: bytes, start: datetime, end: datetime) -> Any:
    """A live window's answer: the request as sent (entity, window, sl, breakdown)
    and the window's bounds now (whole minutes), so an answer is never served for
    other edges (the minute after, or 'today' after local midnight). The same
    request with its parameters in another order is another key: a miss, never a
    wrong answer."""
    return (path, query_string, start, end)


class ReadCache:
    def __init__(
        self,
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
        snapshot: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self.max_age_s = max_age_s
        self.clock = clock
        self._answers: dict[Any, tuple[str, float, bytes]] = {}
        self._reading: dict[tuple[Any, str], asyncio.Future[bytes]] = {}
        self._snapshots = Snapshots(snapshot) if snapshot is not None else None

    @property
    def enabled(self) -> bool:
        return self.max_age_s > 0

    async def snapshot(self) -> str:
        """Postgres' current snapshot, read after this call began (`Snapshots`)."""
        if self._snapshots is None:
            raise RuntimeError("this read cache was made without a way to read the snapshot")
        return await self._snapshots.current()

    def fresh(self, key: Any) -> bool:
        """An answer is held for `key` and young enough: worth asking the snapshot."""
        hit = self._answers.get(key)
        return hit is not None and self.clock() - hit[1] <= self.max_age_s

    def get(self, key: Any, snapshot: str) -> bytes | None:
        hit = self._answers.get(key)
        if hit is None or hit[0] != snapshot or self.clock() - hit[1] > self.max_age_s:
            return None
        return hit[2]

    def put(self, key: Any, snapshot: str, body: bytes) -> None:
        if len(self._answers) >= MAX_ENTRIES:
            self._answers.clear()
        self._answers[key] = (snapshot, self.clock(), body)

    async def answer(self, key: Any, snapshot: str, read: Callable[[], Awaitable[bytes]]) -> bytes:
        """The cached answer, or `read()`'s. Requests that miss together wait for
        the one read under their snapshot instead of each reading the same
        figures: when an answer ages out under 32 clients, all of them missed at
        once (a third of the API's time went to those duplicate reads)."""
        body = self.get(key, snapshot)
        if body is not None:
            return body
        pending = self._reading.get((key, snapshot))
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._reading[(key, snapshot)] = fut
        try:
            body = await read()
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: a failure nobody else waited for is not logged twice
            raise
        finally:
            del self._reading[(key, snapshot)]
        fut.set_result(body)
        self.put(key, snapshot, body)
        return body

"""Posting events to ingest, for the commands that feed it (simulate, replay,
asterisk import/follow)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("callkpi.client")

MAX_BACKOFF_S = 5.0
# How long a client keeps retrying one request before it gives up and says where
# it stopped: longer than a Postgres or broker restart (seconds) or an API
# redeploy, short enough that an operator is not left guessing.
PATIENCE_S = 120.0


class IngestError(Exception):
    """Ingest refused the request for good, or kept failing past the patience."""


class IngestStopped(Exception):
    """A feed gave up: what ingest had confirmed, and where to resume from (the
    mark of the first batch not confirmed; everything before it is counted)."""

    def __init__(self, accepted: int, rejected: int, resume: Any, cause: IngestError) -> None:
        super().__init__(str(cause))
        self.accepted = accepted
        self.rejected = rejected
        self.resume = resume
        self.cause = cause


async def post_events(
    client: httpx.AsyncClient, events: list[dict[str, Any]], patience_s: float = PATIENCE_S
) -> tuple[int, list[dict[str, Any]]]:
    """POST as a JSON array (one encode here and one decode in ingest: half
    NDJSON's cost per event on either side), retrying 503 and connection errors
    with backoff for up to `patience_s` (event ids make a retry harmless).
    Returns (accepted, rejected)."""
    if not events:
        return 0, []
    body = orjson.dumps(events)
    delay = 0.25
    started = time.monotonic()
    while True:
        try:
            r = await client.post(
                "/v1/events", content=body, headers={"content-type": "application/json"}
            )
        except Exception as exc:
            last = f"ingest unreachable: {type(exc).__name__}: {exc}"
        else:
            if r.status_code in (202, 422):
                data = r.json()
                return int(data.get("accepted", 0)), list(data.get("rejected", []))
            if r.status_code != 503:
                raise IngestError(f"ingest answered {r.status_code}: {r.text[:500]}")
            last = f"ingest answered 503: {_error_of(r)}"
        waited = time.monotonic() - started
        if waited + delay > patience_s:
            raise IngestError(f"ingest kept failing for {waited:.0f} s (last: {last})")
        log.warning("%s; retrying in %.1f s", last, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_BACKOFF_S)


def _error_of(r: httpx.Response) -> str:
    try:
        data = r.json()
    except Exception:
        return str(r.text[:200])
    return str(data.get("error") or data.get("detail") or data)[:300]


def log_rejections(rejected: list[dict[str, Any]], limit: int = 3) -> None:
    """Log the first `limit` events ingest rejected from one request."""
    for rej in rejected[:limit]:
        log.warning("ingest rejected event %s: %s", rej.get("index"), rej.get("error"))


class Sender:
    """Posts batches without waiting for each answer: up to `travelling` requests
    stay in flight while the caller builds the next batch. Counts what ingest
    accepted and rejected (the first rejections of each batch are logged). Each
    batch carries the caller's `mark` (a line number, a time); when a batch fails
    for good, `send` or `flush` raises IngestStopped with the mark of the first
    batch not confirmed, the others in flight having been stopped."""

    def __init__(
        self, client: httpx.AsyncClient, travelling: int = 1, patience_s: float = PATIENCE_S
    ) -> None:
        self.client = client
        self.travelling = travelling
        self.patience_s = patience_s
        self.accepted = 0
        self.rejected = 0
        # in the order sent: the first not yet confirmed is where a resume starts
        self._flying: list[tuple[Any, asyncio.Task[tuple[int, list[dict[str, Any]]]]]] = []

    async def send(self, events: list[dict[str, Any]], mark: Any = None) -> None:
        if events:
            task = asyncio.create_task(post_events(self.client, events, self.patience_s))
            self._flying.append((mark, task))
            await asyncio.sleep(0)  # let the request start before the caller computes on
        await self._settle(self.travelling)

    async def flush(self) -> None:
        await self._settle(0)

    async def _settle(self, limit: int) -> None:
        while len(self._flying) > limit:
            tasks = [t for _, t in self._flying]
            finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for mark, task in list(self._flying):
                if task not in finished:
                    continue
                exc = task.exception()
                if exc is not None:
                    await self._stop(exc)
                self._flying.remove((mark, task))
                ok, bad = task.result()
                self.accepted += ok
                self.rejected += len(bad)
                log_rejections(bad)

    async def _stop(self, exc: BaseException) -> None:
        """Stop every request in flight and raise where to resume: the first batch
        (in send order) that was not confirmed."""
        resume = None
        for mark, task in self._flying:
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await task
            if task.cancelled() or task.exception() is not None:
                if resume is None:
                    resume = mark
            else:
                ok, bad = task.result()
                if resume is None:  # confirmed before the first failure
                    self.accepted += ok
                    self.rejected += len(bad)
        self._flying.clear()
        cause = exc if isinstance(exc, IngestError) else IngestError(f"{type(exc).__name__}: {exc}")
        raise IngestStopped(self.accepted, self.rejected, resume, cause)

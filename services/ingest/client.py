"""Posting events to ingest, for the commands that feed it (simulate, replay,
asterisk import/follow)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

log = logging.getLogger("callkpi.client")

MAX_BACKOFF_S = 5.0


class IngestError(Exception):
    """Ingest refused the request for good (not a transient failure)."""


async def post_events(
    client: Any, events: list[dict[str, Any]], attempts: int = 12
) -> tuple[int, list[dict[str, Any]]]:
    """POST as NDJSON, retrying 503 and connection errors with backoff (event ids
    make a retry harmless). Returns (accepted, rejected)."""
    if not events:
        return 0, []
    body = b"\n".join(orjson.dumps(e) for e in events)
    delay = 0.25
    for attempt in range(1, attempts + 1):
        try:
            r = await client.post(
                "/v1/events", content=body, headers={"content-type": "application/x-ndjson"}
            )
        except Exception as exc:
            log.warning("ingest unreachable (%s); retrying in %.1fs", exc, delay)
        else:
            if r.status_code in (202, 422):
                data = r.json()
                return int(data.get("accepted", 0)), list(data.get("rejected", []))
            if r.status_code != 503:
                raise IngestError(f"ingest answered {r.status_code}: {r.text[:500]}")
            log.warning("ingest unavailable (503); retrying in %.1fs", delay)
        if attempt < attempts:
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
    raise IngestError("ingest kept failing; giving up (re-run: event ids make it safe)")


def log_rejections(rejected: list[dict[str, Any]], limit: int = 3) -> None:
    """Log the first `limit` events ingest rejected from one request."""
    for rej in rejected[:limit]:
        log.warning("ingest rejected event %s: %s", rej.get("index"), rej.get("error"))


class Sender:
    """Posts batches without waiting for each answer: up to `travelling` requests
    stay in flight while the caller builds the next batch. Counts what ingest
    accepted and rejected (the first rejections of each batch are logged); an
    IngestError of any batch is raised by `send` or `flush`."""

    def __init__(self, client: Any, travelling: int = 1) -> None:
        self.client = client
        self.travelling = travelling
        self.accepted = 0
        self.rejected = 0
        self._tasks: set[asyncio.Task[tuple[int, list[dict[str, Any]]]]] = set()

    async def send(self, events: list[dict[str, Any]]) -> None:
        if events:
            self._tasks.add(asyncio.create_task(post_events(self.client, events)))
            await asyncio.sleep(0)  # let the request start before the caller computes on
        await self._settle(self.travelling)

    async def flush(self) -> None:
        await self._settle(0)

    async def _settle(self, limit: int) -> None:
        while len(self._tasks) > limit:
            finished, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                self._tasks.discard(task)
                ok, bad = task.result()
                self.accepted += ok
                self.rejected += len(bad)
                log_rejections(bad)

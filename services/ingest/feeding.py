"""The loops that feed ingest, for the commands that do (simulate, replay):
events paced to their own clock, a history as fast as ingest takes it, a JSONL
file. Each posts through `Sender` (client.py), so one request is in flight while
the next batch is made, and a feed that gives up says where to resume."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from services.ingest.client import PATIENCE_S, Sender, log_rejections, post_events

if TYPE_CHECKING:
    import httpx

# A history is posted in batches this large: big enough that a request's fixed
# cost is noise, small enough for the default max_batch_events (10,000).
HISTORY_BATCH = 5000
# A paced feed posts what is due at least this often, or every this many events.
PACE_FLUSH_S = 0.2
PACE_BATCH = 1000
PROGRESS_EVERY_S = 5.0


async def wait_ready(client: httpx.AsyncClient, wait_s: float) -> None:
    """Wait up to `wait_s` for ingest's /readyz."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            r = await client.get("/readyz")
            if r.status_code == 200:
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"ingest at {client.base_url} not ready after {wait_s:.0f}s")
        await asyncio.sleep(0.5)


async def post_logged(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> int:
    """POST with retries (client.py); logs the first rejections."""
    accepted, rejected = await post_events(client, events)
    log_rejections(rejected)
    return accepted


async def feed_paced(
    client: httpx.AsyncClient, events: Iterable[dict[str, Any]], start: datetime, speed: float
) -> int:
    """Post each event when its `occurred_at` comes, on a clock that starts at
    `start` and runs `speed` times as fast as the wall clock. Returns the events
    accepted."""
    t0 = time.monotonic()
    batch: list[dict[str, Any]] = []
    sent = 0
    for ev in events:
        due = (datetime.fromisoformat(ev["occurred_at"]) - start).total_seconds() / speed
        delay = due - (time.monotonic() - t0)
        if delay > PACE_FLUSH_S or len(batch) >= PACE_BATCH:
            sent += await post_logged(client, batch)
            batch = []
            if delay > 0:
                await asyncio.sleep(delay)
        batch.append(ev)
    return sent + await post_logged(client, batch)


async def feed_history(
    client: httpx.AsyncClient,
    events: Iterable[dict[str, Any]],
    begin: datetime,
    end: datetime,
    *,
    resume: datetime | None = None,
    patience_s: float = PATIENCE_S,
    label: str = "backfill",
) -> int:
    """Post time-ordered events from [begin, end) as fast as ingest takes them,
    with progress every few seconds; from `resume` on only, when given. Each
    batch's mark (where a feed that gives up resumes) is its first event's
    time. Returns the events accepted."""
    started = last = time.monotonic()
    span = max((end - begin).total_seconds(), 1.0)
    sender = Sender(client, patience_s=patience_s)
    batch: list[dict[str, Any]] = []
    for ev in events:
        if resume is not None and datetime.fromisoformat(ev["occurred_at"]) < resume:
            continue
        batch.append(ev)
        if len(batch) < HISTORY_BATCH:
            continue
        await sender.send(batch, batch[0]["occurred_at"])
        batch = []
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            done = (datetime.fromisoformat(ev["occurred_at"]) - begin).total_seconds() / span
            print(f"{label}: {ev['occurred_at'][:10]} ({min(done, 1):.0%})  "
                  f"{sender.accepted:,} events  {sender.accepted / (last - started):,.0f}/s",
                  flush=True)  # fmt: skip
    await sender.send(batch, batch[0]["occurred_at"] if batch else None)
    await sender.flush()
    return sender.accepted


async def feed_file(
    client: httpx.AsyncClient,
    path: Path,
    total_bytes: int,
    batch_size: int,
    *,
    resume: int = 1,
    patience_s: float = PATIENCE_S,
) -> tuple[int, int, int]:
    """Post the JSON lines of `path` (`total_bytes` long) from line `resume` on,
    with progress on stderr; a malformed line is skipped and named. Each batch's mark is the line
    of its first event. Returns (events read, accepted, malformed lines)."""
    read = malformed = 0
    started = time.monotonic()
    sender = Sender(client, patience_s=patience_s)  # one request in flight while reading
    batch: list[dict[str, Any]] = []
    first = resume  # line of the batch's first event
    done_bytes = 0
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            done_bytes += len(line)
            if lineno < resume or not line.strip():
                continue
            if not batch:
                first = lineno
            try:
                batch.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                print(f"{path}:{lineno}: malformed JSON, skipped ({exc})", file=sys.stderr)
                malformed += 1
                continue
            read += 1
            if len(batch) >= batch_size:
                await sender.send(batch, first)
                batch = []
                rate = read / max(time.monotonic() - started, 1e-6)
                print(f"\r{done_bytes * 100 // max(total_bytes, 1):3d}%  {read} events  "
                      f"{rate:,.0f}/s", end="", file=sys.stderr, flush=True)  # fmt: skip
    await sender.send(batch, first)
    await sender.flush()
    return read, sender.accepted, malformed

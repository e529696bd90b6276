"""Re-derive stage 2's input from what stage 1 stored, after the broker lost some.

Stage 1 stores each call's latest customer fact (calls.fact) in the transaction
that counts the call, and sends it to the FCR topic just before. Stage 2 keeps
the fact it last received (fcr_calls.fact). A fact sent and then lost by the
broker (the embedded broker restarted, a topic deleted, an unclean leader
election) leaves the two apart for good: stage 1 re-sends a fact only when it
changes, so re-posting the events changes nothing. Reconciling sends again every
fact that stage 2 lacks or holds older than stage 1's; stage 2 keeps the newest
by event count, so a fact sent twice, or an older one arriving after a newer,
changes nothing. Safe to run at any time, as often as wanted.

Losses are detected from stream_offsets (written with every batch): a partition
whose broker end offset is below the offset the workers already reached has lost
records (`check_and_repair`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from prometheus_client import Counter

from services.core.events import partition_for
from services.core.settings import Settings

log = logging.getLogger("callkpi.reconcile")

FACTS_RESENT = Counter(
    "callkpi_reconcile_facts_resent_total",
    "FCR facts sent again because the FCR stage lacked them or held an older one",
)
LOSSES = Counter(
    "callkpi_broker_losses_total",
    "Topic partitions found holding fewer records than the workers had processed",
    ["stage"],
)

# Calls compared per query: one round trip per chunk and at most this many facts in
# memory; 5,000 facts are ~1.3 MB, a few Kafka records.
CHUNK = 5000

# Calls whose fact stage 2 lacks, or holds with other content (stage 1's is the
# one its events now give). Keyset-paginated by call_id.
_STALE = """
SELECT c.call_id, c.fact FROM calls c LEFT JOIN fcr_calls f ON f.call_id = c.call_id
WHERE c.call_id > $1 AND c.fact IS NOT NULL AND c.fact::text <> 'null'
  AND ($2::bigint IS NULL OR c.offered_at >= timestamptz 'epoch' + $2 * interval '1 microsecond')
  AND ($3::bigint IS NULL OR c.offered_at < timestamptz 'epoch' + $3 * interval '1 microsecond')
  AND (f.call_id IS NULL OR f.fact::jsonb IS DISTINCT FROM c.fact::jsonb)
ORDER BY c.call_id LIMIT $4
"""

SendFacts = Callable[[dict[int, list[dict[str, Any]]]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Loss:
    topic: str
    partition: int
    reached: int  # the offset the workers had processed up to
    end: int  # the broker's end offset now


async def forget_losses(conn: asyncpg.Connection, losses: list[Loss]) -> None:
    """Take the broker's new offsets as where the workers are, so a loss is
    repaired once (a batch committing meanwhile writes its own offsets anyway)."""
    for loss in losses:
        await conn.execute(
            "UPDATE stream_offsets SET next_offset = $3, updated_at = now() "
            "WHERE topic = $1 AND part = $2 AND next_offset = $4",
            loss.topic, loss.partition, loss.end, loss.reached,
        )  # fmt: skip


async def reconcile(
    pool: asyncpg.Pool,
    settings: Settings,
    send: SendFacts,
    from_us: int | None = None,
    to_us: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Send again the facts of calls offered in [from_us, to_us) (None: no bound)
    that stage 2 lacks or holds stale; returns how many. `progress(compared_chunks, resent)`
    is called after each chunk."""
    after, resent, chunks = "", 0, 0
    while True:
        async with pool.acquire() as conn:
            rows = await conn.fetch(_STALE, after, from_us, to_us, CHUNK)
        if not rows:
            break
        by_part: dict[int, list[dict[str, Any]]] = {}
        for r in rows:
            fact = orjson.loads(r["fact"])
            by_part.setdefault(partition_for(fact["customer"], settings.partitions), []).append(
                fact
            )
        await send(by_part)
        resent += len(rows)
        chunks += 1
        FACTS_RESENT.inc(len(rows))
        after = rows[-1]["call_id"]
        if progress is not None:
            progress(chunks, resent)
        if len(rows) < CHUNK:
            break
    return resent


async def check_and_repair(
    pool: asyncpg.Pool,
    settings: Settings,
    send: SendFacts,
    read_ends: Callable[[], Awaitable[Mapping[tuple[str, int], int] | None]],
    holds: Callable[[str, int, int], Awaitable[bool | None]] | None = None,
) -> list[Loss]:
    """Detect lost records and, if any, reconcile. `read_ends()`: the broker's end
    offsets by (topic, partition), None when it cannot be reached. Stored offsets
    are read before the end offsets: a batch committing in between can only raise
    the end past what was read, never make a partition look shorter than it is."""
    async with pool.acquire() as conn:
        stored = await conn.fetch("SELECT topic, part, next_offset FROM stream_offsets")
    ends = await read_ends()
    if ends is None:  # broker unreachable: nothing to compare
        return []
    losses = [
        Loss(r["topic"], r["part"], int(r["next_offset"]), ends[(r["topic"], r["part"])])
        for r in stored
        if (r["topic"], r["part"]) in ends and ends[(r["topic"], r["part"])] < r["next_offset"]
    ]
    if holds is not None:
        # an end offset short of what was processed is a loss only if the last
        # processed record is gone too (Tansu's ListOffsets under-reports the
        # end: services/core/kafka.py holds_record); no answer: ask next round
        # (an empty log holds nothing: no need to ask, and right after the broker
        # came back a fetch may not be answered yet)
        answers = [
            False if loss.end == 0 else await holds(loss.topic, loss.partition, loss.reached - 1)
            for loss in losses
        ]
        losses = [loss for loss, held in zip(losses, answers, strict=True) if held is False]
    if not losses:
        return []
    for loss in losses:
        stage = "facts" if loss.topic == settings.fcr_topic else "events"
        LOSSES.labels(stage).inc()
        gone = (
            "FCR facts it held that were not yet processed are re-derived now"
            if stage == "facts"
            else "events it held that were not yet processed are gone (re-post them: event "
            "ids make it safe); the FCR facts are re-derived now"
        )
        log.error(
            "broker lost records of %s partition %d: the workers had processed up to offset "
            "%d, the broker now ends at %d; %s (docs/operations.md#broker-loss)",
            loss.topic, loss.partition, loss.reached, loss.end, gone,
        )  # fmt: skip
    resent = await reconcile(pool, settings, send)
    async with pool.acquire() as conn:
        await forget_losses(conn, losses)
    log.warning("reconciled after the loss: %d FCR fact(s) sent again", resent)
    return losses

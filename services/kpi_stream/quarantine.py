"""Setting aside what no retry can cure, so that one event never stops the count.

A batch is retried while its failure may pass (Postgres or the broker away, a
deadlock, an admin shutdown): nothing is set aside then, and nothing is lost. A
failure that is about the data itself (a value Postgres refuses, an arithmetic
error in the pure KPI code) fails the same way on every retry: the batch is then
bisected (each half processed on its own, which is exact because every write is
idempotent and order-independent) down to the single events that fail, and those
go to the `quarantine` table with their error, partition and offset.
`callkpi quarantine list | replay` shows them and sends them through again once
the cause is mended (docs/operations.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import orjson
from prometheus_client import Counter

from services.core.envelope import Envelope

log = logging.getLogger("callkpi.worker")

QUARANTINED = Counter(
    "callkpi_worker_events_quarantined_total",
    "Events set aside in the quarantine table: processing them fails for a reason "
    "retrying cannot cure (docs/operations.md)",
    ["stage"],
)

# One event's error, as stored and logged: enough to see the cause, bounded.
ERROR_CHARS = 2000

# Errors about the data, not the moment: retrying them gives the same error.
# Postgres: class 22 (data exception: a value out of range, U+0000 in text, ...)
# and 23 (integrity); asyncpg's client-side DataError (a value it cannot encode).
# Python, from the pure code a batch runs through: ValueError, TypeError,
# LookupError (KeyError, IndexError), ArithmeticError (decimal.InvalidOperation,
# OverflowError), UnicodeError. Everything else, connection and Kafka errors
# first, is transient and retried without setting anything aside.
_PERMANENT: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.exceptions.DataError,
    ValueError,
    TypeError,
    LookupError,
    ArithmeticError,
)
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # connections, TimeoutError
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TransactionRollbackError,
)


def is_permanent(exc: BaseException) -> bool:
    if isinstance(exc, asyncpg.DataError | asyncpg.exceptions.DataError):
        return True  # asyncpg's client-side DataError is also an InterfaceError
    if isinstance(exc, _TRANSIENT):
        return False
    return isinstance(exc, _PERMANENT)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]


def _storable(text: str) -> str:
    return text.replace("\x00", "\\u0000")  # Postgres text cannot hold U+0000


Item = tuple[Envelope, int]  # an envelope and the index of one of its items


def items_of(envelopes: Sequence[Envelope]) -> list[Item]:
    return [(env, i) for env in envelopes for i in range(len(env.items))]


def regroup(items: Sequence[Item]) -> list[Envelope]:
    """Envelopes holding just `items`, each with its record's partition and offset."""
    out: dict[int, tuple[Envelope, list[int]]] = {}
    for env, i in items:
        out.setdefault(id(env), (env, []))[1].append(i)
    return [
        Envelope(env.partition, env.ingested_us, [env.items[i] for i in chosen], env.offset,
                 tuple(env.origin(i) for i in chosen), env.checked)
        for env, chosen in out.values()
    ]  # fmt: skip


async def bisect(
    items: Sequence[Item],
    failure: BaseException,
    run: Callable[[list[Envelope]], Awaitable[Any]],
    set_aside: Callable[[Item, BaseException], Awaitable[None]],
) -> None:
    """`items` failed together with the permanent `failure`: process halves on
    their own until the failing items stand alone, and set those aside. A transient
    error on the way propagates (the caller retries; what was committed is not
    counted twice)."""
    if len(items) == 1:
        await set_aside(items[0], failure)
        return
    mid = len(items) // 2
    for half in (items[:mid], items[mid:]):
        try:
            await run(regroup(half))
        except Exception as exc:
            if not is_permanent(exc):
                raise
            await bisect(half, exc, run, set_aside)


_INSERT = """
INSERT INTO quarantine (stage, topic, part, record_offset, item, event_id, event, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (stage, part, record_offset, item) WHERE record_offset >= 0 DO NOTHING
RETURNING id
"""


def _text(item: Any) -> str:
    try:
        return orjson.dumps(item).decode()
    except (TypeError, ValueError):  # nested past orjson's limit
        return repr(item)[:100_000]


async def store(
    pool: asyncpg.Pool,
    stage: str,
    topic: str,
    part: int,
    offset: int,
    index: int,
    item: Any,
    error: str,
) -> None:
    """Keep one set-aside item (idempotent for a known offset), count and log it."""
    event_id = item.get("event_id") if isinstance(item, dict) else None
    text = _text(item)
    async with pool.acquire() as conn:
        new = await conn.fetchval(
            _INSERT,
            stage,
            topic,
            part,
            offset,
            index,
            _storable(event_id) if isinstance(event_id, str) else None,
            text,
            _storable(error),
        )
    if new is None:  # a replay of a record whose item is already there
        log.info("%s item %s[%d]@%d#%d is already quarantined", stage, topic, part, offset, index)
        return
    QUARANTINED.labels(stage).inc()
    log.error(
        "quarantined %s item %s[%d]@%d#%d (event_id %r): %s",
        stage,
        topic,
        part,
        offset,
        index,
        event_id,
        error,
    )


Send = Callable[[str, int, bytes], Awaitable[None]]


async def replay(
    pool: asyncpg.Pool,
    send: Send,
    max_request_bytes: int,
    *,
    ids: Sequence[int] | None,
    stage: str | None,
    now_us: int,
) -> list[int]:
    """Send quarantined items back to their topic and partition, and mark them
    replayed; returns their ids. Events go without the door's mark, so the worker
    checks each again under the code and rules of now: an item that still fails is
    quarantined again (a new row: a new offset). Counting a replayed event that
    was counted already changes nothing (its event id is known)."""
    from services.core.envelope import pack

    rows = await pool.fetch(
        "SELECT id, stage, topic, part, item, event FROM quarantine "
        "WHERE replayed_at IS NULL AND ($1::bigint[] IS NULL OR id = ANY($1)) "
        "AND ($2::text IS NULL OR stage = $2) ORDER BY id",
        None if ids is None else list(ids),
        stage,
    )
    done = []
    for r in rows:
        item = orjson.loads(r["event"])
        if r["item"] < 0:  # a whole record that was no envelope: as it came
            value = item.encode("utf-8") if isinstance(item, str) else orjson.dumps(item)
        else:
            field = "events" if r["stage"] == "events" else "facts"
            value = next(pack(field, [orjson.dumps(item)], now_us, max_request_bytes, 1))
        await send(r["topic"], r["part"], value)
        await pool.execute("UPDATE quarantine SET replayed_at = now() WHERE id = $1", r["id"])
        done.append(int(r["id"]))
    return done

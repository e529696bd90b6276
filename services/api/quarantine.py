"""`GET /v1/admin/quarantine`: the events the worker set aside, and why
(docs/operations.md#quarantine). Replaying them is `callkpi quarantine replay`."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import asyncpg
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Body, HTTPException, Query
from pydantic import Field

from services.api.deps import ConnDep, SettingsDep
from services.core.db import asyncpg_dsn, require_database_url
from services.core.timewin import iso
from services.kpi_stream.quarantine import replay
from services.readmodel import queries

router = APIRouter(prefix="/v1/admin/quarantine", tags=["operations"])

MAX_PAGE = 1000


@router.get("")
async def list_quarantine(
    conn: ConnDep,
    settings: SettingsDep,
    stage: Annotated[Literal["events", "facts"] | None, Query()] = None,
    after_id: Annotated[int, Query(ge=0, le=2**63 - 1, description="paging: the last id seen")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    replayed: Annotated[bool, Query(description="include those already replayed")] = False,
) -> dict[str, Any]:
    """Quarantined items, oldest first: each with its partition, offset and index in
    the Kafka record, the event as stored, and the error. `next_after_id` pages on."""
    rows = await queries.quarantine_rows(
        conn, stage=stage, after_id=after_id, limit=limit, replayed=replayed
    )
    waiting = await queries.quarantine_waiting(conn)
    items = [
        {
            "id": r["id"],
            "stage": r["stage"],
            "topic": r["topic"],
            "partition": r["part"],
            "offset": r["record_offset"],
            "index": r["item"],
            "event_id": r["event_id"],
            "event": r["event"],
            "error": r["error"],
            "quarantined_at": iso(r["quarantined_at"], settings.tz),
            "replayed_at": None if r["replayed_at"] is None else iso(r["replayed_at"], settings.tz),
        }
        for r in rows
    ]
    return {
        "waiting": {stage: w["events"] for stage, w in waiting.items()},
        "items": items,
        "next_after_id": items[-1]["id"] if len(items) == limit else None,
    }


@router.post("/replay")
async def replay_quarantine(
    settings: SettingsDep,
    ids: Annotated[list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | None, Body(embed=True)] = None,
    all_waiting: Annotated[bool, Body(embed=True, alias="all")] = False,
    stage: Annotated[Literal["events", "facts"] | None, Body(embed=True)] = None,
) -> dict[str, Any]:
    """Send quarantined items back through the worker, after the cause is mended:
    `{"ids": [...]}` or `{"all": true}` (optionally with `stage`). Idempotent:
    what was counted already is not counted again; what still fails is set aside
    again with its new error."""
    if not ids and not all_waiting:
        raise HTTPException(422, 'name the items: {"ids": [1, 2]} or {"all": true}')
    bootstrap = settings.kafka_bootstrap
    if not bootstrap:
        raise HTTPException(503, "this API process has no broker (kafka_bootstrap) to replay to")
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        max_request_size=settings.kafka_max_request_bytes,
        request_timeout_ms=10_000,
    )
    pool = await asyncpg.create_pool(
        asyncpg_dsn(require_database_url(settings)), min_size=1, max_size=1
    )
    try:
        await producer.start()

        async def send(topic: str, part: int, value: bytes) -> None:
            await producer.send_and_wait(topic, value, partition=part)

        done = await replay(pool, send, settings.kafka_max_request_bytes,
                            ids=None if all_waiting else ids, stage=stage,
                            now_us=time.time_ns() // 1000)  # fmt: skip
    finally:
        await producer.stop()
        await pool.close()
    return {"replayed": done}

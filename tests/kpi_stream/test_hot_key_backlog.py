"""A backlog in which one caller id holds 20,000 calls, on a single partition and
with a small record limit: counted completely, and no record on any topic is
larger than the limit (one such record used to stop the worker for good)."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.support.databases import new_database, stack_env
from tests.support.stack import Stack, wait_until

LIMIT = 64 * 1024  # kafka_max_request_bytes here: a 20,000-fact batch needs ~100 records
CALLS = 20_000


def history() -> list[dict[str, Any]]:
    base = datetime(2026, 2, 2, tzinfo=UTC)
    out: list[dict[str, Any]] = []
    for i in range(CALLS):
        at = base + timedelta(seconds=97 * i)  # 22 days, repeats within 72 h
        cid = f"hk{i}"
        out += [
            {"event_id": f"{cid}o", "type": "call.offered", "occurred_at": at.isoformat(),
             "call_id": cid, "queue_id": "billing", "customer_id": "+8613900000000"},
            {"event_id": f"{cid}a", "type": "call.answered", "call_id": cid, "agent_id": "b00",
             "occurred_at": (at + timedelta(seconds=4)).isoformat()},
            {"event_id": f"{cid}e", "type": "call.ended", "call_id": cid, "ended_by": "agent",
             "occurred_at": (at + timedelta(seconds=60)).isoformat()},
        ]  # fmt: skip
    return out


async def largest_record(bootstrap: str, topics: list[str]) -> dict[str, tuple[int, int]]:
    """(records, largest value in bytes) per topic, read from the broker."""
    out: dict[str, tuple[int, int]] = {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        for topic in topics:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            n = size = 0
            while n < end:
                batch = await consumer.getmany(tp, timeout_ms=2000)
                for msg in batch.get(tp, []):
                    n += 1
                    size = max(size, len(msg.value or b""))
            out[topic] = (n, size)
    finally:
        await consumer.stop()
    return out


def test_twenty_thousand_calls_of_one_caller_on_one_partition_count_completely(
    pg: EmbeddedPostgres, broker: EmbeddedBroker
) -> None:
    prefix = f"hot{os.getpid()}"
    env = stack_env(broker, new_database(pg), prefix, CALLKPI_PARTITIONS="1",
                    CALLKPI_KAFKA_MAX_REQUEST_BYTES=str(LIMIT),
                    CALLKPI_MAX_EVENT_BYTES="16384")  # fmt: skip
    stack = Stack(env).start()
    try:
        events = history()
        for i in range(0, len(events), 15_000):
            r = stack.post(events[i : i + 15_000])
            assert r.status_code == 202 and r.json()["rejected"] == [], r.text[:300]

        def center() -> dict[str, Any]:
            r = stack.get("/v1/kpis/center/all", **{"from": "2026-02-01T00:00:00Z",
                                                    "to": "2026-03-01T00:00:00Z"})  # fmt: skip
            return r.json() if r.status_code == 200 else {}

        def counted() -> Any:
            c = center()
            return c.get("handled") == CALLS and c.get("fcr_candidates") == CALLS and c

        figures = wait_until(counted, timeout=240, interval=1)
        assert figures, center()
        # every call but the last is repeated within 72 h: none is resolved
        assert figures["fcr_resolved"] == 0
        sizes = asyncio.run(largest_record(broker.bootstrap, [f"{prefix}.events", f"{prefix}.fcr"]))
        for topic, (n, size) in sizes.items():
            assert n > 1 and size <= LIMIT, (topic, n, size)
        assert sizes[f"{prefix}.fcr"][0] >= CALLS * 200 // LIMIT  # facts were split
    finally:
        stack.stop()

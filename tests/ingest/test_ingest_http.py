"""Bad input gets a clear error naming what and where, and never corrupts or drops
the good events around it."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import asyncpg
import httpx
import orjson

from services.core.db import asyncpg_dsn
from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.support.databases import new_database, stack_env
from tests.support.stack import Stack, wait_until

T = "2026-01-05T09:00:00+08:00"  # far from the other tests' time ranges


def offered(eid: str, queue: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": eid, "type": "call.offered", "occurred_at": T, "call_id": eid,
            "queue_id": queue, **extra}  # fmt: skip


def queue_offered(stack: Stack, queue: str) -> int | None:
    r = stack.get(f"/v1/kpis/queue/{queue}", **{"from": "2026-01-05T00:00:00+08:00",
                                                 "to": "2026-01-06T00:00:00+08:00"})  # fmt: skip
    return None if r.status_code == 404 else int(r.json()["offered"])


def test_malformed_json_body_is_422_and_produces_nothing(stack: Stack) -> None:
    r = httpx.post(f"{stack.url}/v1/events", content=b'[{"event_id": "x", ', timeout=10,
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 422
    assert "not valid JSON" in r.json()["rejected"][0]["error"]


def test_each_invalid_event_is_reported_by_index_and_the_valid_ones_still_count(
    stack: Stack,
) -> None:
    batch = [
        offered("mix-1", "q-mixed"),
        {**offered("mix-2", "q-mixed"), "occurred_at": "2026-01-05T09:00:00"},
        {"event_id": "mix-3", "type": "call.teleported", "occurred_at": T, "call_id": "c"},
        {"event_id": "mix-4", "type": "survey.completed", "occurred_at": T, "call_id": "c",
         "score": "5"},
        {"event_id": "mix-5", "type": "call.ended", "occurred_at": T, "call_id": "c"},
        offered("mix-6", "q-mixed", note="unknown fields are kept and ignored"),
    ]  # fmt: skip
    r = stack.post(batch)
    assert r.status_code == 202
    body = r.json()
    assert body["accepted"] == 2
    errors = {e["index"]: e["error"] for e in body["rejected"]}
    assert set(errors) == {1, 2, 3, 4}
    assert "UTC offset" in errors[1]
    assert "type must be one of" in errors[2]
    assert "score must be integer" in errors[3]
    assert "ended_by" in errors[4]
    assert wait_until(lambda: queue_offered(stack, "q-mixed") == 2, timeout=30)


def test_a_request_with_no_valid_event_is_422_and_leaves_no_trace(stack: Stack) -> None:
    r = stack.post([{**offered("none-1", "q-none"), "occurred_at": "yesterday"}, {"type": 3}])
    assert r.status_code == 422
    assert [e["index"] for e in r.json()["rejected"]] == [0, 1]
    # a valid event posted afterwards is processed, proving the worker had its chance
    assert stack.post([offered("none-probe", "q-none-probe")]).status_code == 202
    assert wait_until(lambda: queue_offered(stack, "q-none-probe") == 1, timeout=30)
    assert queue_offered(stack, "q-none") is None


def test_ndjson_bad_line_is_reported_with_its_line_number(stack: Stack) -> None:
    lines = [
        orjson.dumps(offered("nd-1", "q-nd")),
        b"{oops",
        b"",
        orjson.dumps(offered("nd-2", "q-nd")),
    ]
    r = httpx.post(f"{stack.url}/v1/events", content=b"\n".join(lines), timeout=10,
                   headers={"content-type": "application/x-ndjson"})  # fmt: skip
    assert r.status_code == 202
    assert r.json()["accepted"] == 2
    (rej,) = r.json()["rejected"]
    assert rej["line"] == 2 and "malformed JSON" in rej["error"]
    assert wait_until(lambda: queue_offered(stack, "q-nd") == 2, timeout=30)


def test_oversized_body_and_oversized_batch_are_413(stack: Stack) -> None:
    big = [offered(f"big-{i}", "q-big", pad="x" * 400) for i in range(1000)]
    r = stack.post(big)
    assert r.status_code == 413
    assert "max_body_bytes" in r.json()["rejected"][0]["error"]
    many = [{"type": "x"}] * 2001
    r = stack.post(many)
    assert r.status_code == 413
    assert "max_batch_events=2000" in r.json()["rejected"][0]["error"]
    time.sleep(1)
    assert queue_offered(stack, "q-big") is None


def test_caller_ids_are_stored_only_as_keyed_hashes(stack: Stack) -> None:
    phone = "+8613912345678"
    assert stack.post([offered("hash-1", "q-hash", customer_id=phone)]).status_code == 202
    assert wait_until(lambda: queue_offered(stack, "q-hash") == 1, timeout=30)

    async def stored() -> str:
        conn = await asyncpg.connect(asyncpg_dsn(stack.env["CALLKPI_DATABASE_URL"]))
        try:
            return str(await conn.fetchval("SELECT events FROM calls WHERE call_id = 'hash-1'"))
        finally:
            await conn.close()

    data = asyncio.run(stored())
    assert phone not in data and "13912345678" not in data
    assert "customer_id" in data


def test_broker_down_gives_503_with_retry_after(pg: EmbeddedPostgres) -> None:
    own = EmbeddedBroker()
    own.start()
    stack = Stack(stack_env(own, new_database(pg), f"down{os.getpid()}"))
    try:
        stack.start(worker=False)
        assert stack.post([offered("up-1", "q-up")]).status_code == 202
        own.stop()
        r = stack.post([offered("down-1", "q-down")])
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert "retry" in r.json()["error"]
    finally:
        stack.stop()
        own.stop()


def bad_records(stack: Stack) -> float:
    """The worker's process-wide count (other tests add to it too)."""
    text = httpx.get(f"http://127.0.0.1:{stack.worker_port}/metrics", timeout=5).text
    bad = [
        line for line in text.splitlines() if line.startswith("callkpi_worker_bad_records_total")
    ]
    return float(bad[0].split()[-1]) if bad else 0.0


def test_records_produced_straight_to_kafka_bad_ones_quarantined_plain_events_counted(
    stack: Stack,
) -> None:
    from aiokafka import AIOKafkaProducer

    before = bad_records(stack)
    topic = f"{stack.env['CALLKPI_TOPIC_PREFIX']}.events"
    good = offered("direct-1", "q-direct", customer_id="+8613900000000")
    records = [
        b"\x00\x01 not json",
        orjson.dumps({"v": 1, "at": 0, "events": [{"no": "ts"}]}),
        orjson.dumps({**good, "occurred_at": "2026-01-05 09:00"}),  # invalid canonical event
        orjson.dumps(good),  # a valid canonical event from a third-party producer
    ]

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.env["CALLKPI_KAFKA_BOOTSTRAP"])
        await producer.start()
        try:
            for value in records:
                await producer.send_and_wait(topic, value, key=b"direct-1")
        finally:
            await producer.stop()

    asyncio.run(produce())
    assert wait_until(lambda: queue_offered(stack, "q-direct") == 1, timeout=30)
    # the worker is alive and still counting what ingest sends
    assert stack.post([offered("direct-2", "q-direct")]).status_code == 202
    assert wait_until(lambda: queue_offered(stack, "q-direct") == 2, timeout=30)
    assert bad_records(stack) - before == 3.0
    log = (stack.worker.log).read_text()
    assert "quarantined events item" in log and "UTC offset" in log

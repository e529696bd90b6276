"""Records that another producer (or an older ingest) wrote to the events topic,
holding what the pipeline cannot store, are set aside and shown: the API's
/readyz and /metrics, the admin listing and `callkpi quarantine`; the calls
around them count, and a replay is idempotent."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from services.core.events import normalize
from tests.support.databases import ROOT
from tests.support.stack import Stack, wait_until

T = "2026-01-09T09:00:00+08:00"  # far from the other tests' time ranges
KEY = b"test-hash-key"  # the stack's CALLKPI_HASH_KEY


def offered(cid: str, queue: str) -> dict[str, Any]:
    return {"event_id": f"{cid}-o", "type": "call.offered", "occurred_at": T, "call_id": cid,
            "queue_id": queue}  # fmt: skip


def produce(stack: Stack, values: list[bytes]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.env["CALLKPI_KAFKA_BOOTSTRAP"])
        await producer.start()
        try:
            topic = stack.env["CALLKPI_TOPIC_PREFIX"] + ".events"
            for value in values:
                await producer.send_and_wait(topic, value, partition=0)
        finally:
            await producer.stop()

    asyncio.run(run())


def counted(stack: Stack, queue: str) -> int:
    r = stack.get(f"/v1/kpis/queue/{queue}", **{"from": "2026-01-09T00:00:00+08:00",
                                                 "to": "2026-01-10T00:00:00+08:00"})  # fmt: skip
    return 0 if r.status_code == 404 else int(r.json()["offered"])


def waiting(stack: Stack) -> dict[str, Any]:
    body: dict[str, Any] = stack.get("/v1/admin/quarantine", limit=1000).json()
    return body


def cli(stack: Stack, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "quarantine", *args, "--url", stack.url],
        cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_poison_written_past_ingest_is_quarantined_shown_and_replayed_without_counting_twice(
    stack: Stack,
) -> None:
    # items other tests set aside in the shared stack come before ours
    before = max((i["id"] for i in waiting(stack)["items"]), default=0)
    poisoned = normalize(offered("qe-1", "q-quarantine"), KEY) | {"call_id": "qe\x001"}
    good = normalize(offered("qe-2", "q-quarantine"), KEY)
    # an envelope an older ingest wrote (no door mark): poison beside a good call
    old_ingest = orjson.dumps({"v": 1, "at": 0, "events": [poisoned, good]})
    produce(stack, [old_ingest, b"\x00not json at all"])
    # the call after them counts
    assert stack.post([offered("qe-3", "q-quarantine")]).status_code == 202
    assert wait_until(lambda: counted(stack, "q-quarantine") == 2, timeout=30)

    def new_items() -> list[dict[str, Any]]:
        return [i for i in waiting(stack)["items"] if i["id"] > before]

    items = wait_until(lambda: len(new_items()) == 2 and new_items(), timeout=30)
    assert items, waiting(stack)
    by_kind = {("record" if i["index"] == -1 else "event"): i for i in items}
    assert by_kind["event"]["event_id"] == "qe-1-o"
    assert "call_id must not contain control characters" in by_kind["event"]["error"]
    assert "\\u0000" in by_kind["event"]["event"]
    assert by_kind["record"]["error"].startswith("not JSON")

    ready = stack.get("/readyz").json()
    assert ready["ready"] is True and ready["quarantined"]["events"] >= 2
    metrics = stack.get("/metrics").text
    found = re.search(r'^callkpi_quarantined_events\{stage="events"\} (\S+)$', metrics, re.M)
    assert found and float(found[1]) >= 2

    listed = cli(stack, "list", "--stage", "events")
    assert "'qe-1-o'" in listed and "call_id must not contain control characters" in listed

    # a replay without a fix: the same errors again, nothing counted twice
    ids = [str(i["id"]) for i in items]
    out = cli(stack, "replay", "--id", *ids)
    assert f"replayed 2 item(s): {' '.join(sorted(ids, key=int))}" in out
    again = wait_until(
        lambda: len([i for i in new_items() if i["id"] not in map(int, ids)]) == 2, timeout=30
    )
    assert again, waiting(stack)
    assert stack.post([offered("qe-4", "q-quarantine")]).status_code == 202
    assert wait_until(lambda: counted(stack, "q-quarantine") == 3, timeout=30)
    assert "replayed 0 item(s)" in cli(stack, "replay", "--id", *ids)

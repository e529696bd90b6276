"""What the pipeline cannot store is refused at the door, by index, with the field
and the reason; the good events of the same request count, and a canary posted
after it is counted: no single input stops the count."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.support.databases import new_database, stack_env
from tests.support.simulated import api_figures, expected, mismatches, simulated
from tests.support.stack import Stack, wait_until

T = "2026-01-07T09:00:00+08:00"  # far from the other tests' time ranges
_ids = itertools.count()


def offered(queue: str, **extra: Any) -> dict[str, Any]:
    n = next(_ids)
    return {"event_id": f"door-{n}", "type": "call.offered", "occurred_at": T,
            "call_id": f"door-{n}", "queue_id": queue, **extra}  # fmt: skip


def counted(stack: Stack, queue: str) -> int:
    r = stack.get(f"/v1/kpis/queue/{queue}", **{"from": "2026-01-07T00:00:00+08:00",
                                                 "to": "2026-01-08T00:00:00+08:00"})  # fmt: skip
    return 0 if r.status_code == 404 else int(r.json()["offered"])


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"x": value}
    return value


def far_future() -> str:
    return (datetime.now(UTC) + timedelta(hours=2)).isoformat()


HOSTILE: dict[str, tuple[Any, str]] = {
    "call_id with U+0000": (
        {"event_id": "h1", "type": "call.answered", "occurred_at": T, "call_id": "a\x00b",
         "agent_id": "b00"},
        "call_id must not contain control characters (U+0000-U+001F, U+007F); found U+0000 at position 1",
    ),
    "agent.state reason with U+0000": (
        {"event_id": "h2", "type": "agent.state", "occurred_at": T, "agent_id": "b00",
         "state": "not_ready", "reason": "lunch\x00"},
        "reason must not contain control characters",
    ),
    "a tab in an agent id": (
        {"event_id": "h3", "type": "agent.state", "occurred_at": T, "agent_id": "b\t00",
         "state": "available"},
        "found U+0009 at position 1",
    ),
    "sale_amount 1e17": (
        {"event_id": "h4", "type": "call.disposition", "occurred_at": T, "call_id": "c",
         "agent_id": "b00", "sale_amount": 1e17},
        "sale_amount must be smaller than or equal to 1000000000000",
    ),
    "sale_amount 1e300": (
        {"event_id": "h5", "type": "call.disposition", "occurred_at": T, "call_id": "c",
         "agent_id": "b00", "sale_amount": 1e300},
        "sale_amount must be smaller than or equal to 1000000000000",
    ),
    "year 9999": (
        {"event_id": "h6", "type": "call.offered", "occurred_at": "9999-12-31T20:00:00-01:00",
         "call_id": "c9999", "queue_id": "q"},
        "h ahead of ingest's clock (at most max_future_seconds=3600 ahead",
    ),
    "two hours ahead": (
        {"event_id": "h7", "type": "agent.state", "occurred_at": far_future(), "agent_id": "b00",
         "state": "available"},
        "ahead of ingest's clock",
    ),
    "year 0001": (
        {"event_id": "h8", "type": "call.offered", "occurred_at": "0001-01-01T00:00:00+01:00",
         "call_id": "c0001", "queue_id": "q"},
        "is before 1970-01-01T00:00:00Z",
    ),
    "customer_id a number on call.answered": (
        {"event_id": "h9", "type": "call.answered", "occurred_at": T, "call_id": "c",
         "agent_id": "b00", "customer_id": 8613800000001},
        "customer_id must be string",
    ),
    "an extra field nested 300 deep": (
        {"event_id": "h10", "type": "call.ended", "occurred_at": T, "call_id": "c",
         "ended_by": "agent", "extra": nested(300)},
        "call.ended: cannot be encoded",
    ),
    "an event of 70 kB": (
        {"event_id": "h11", "type": "call.ended", "occurred_at": T, "call_id": "c",
         "ended_by": "agent", "notes": "x" * 70_000},
        "more than max_event_bytes=65536",
    ),
    "null": (None, "event must be a JSON object, got null"),
    "a number": (7, "event must be a JSON object, got a number"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(HOSTILE))
def test_an_event_the_pipeline_cannot_store_is_refused_by_index_and_the_call_after_it_counts(
    stack: Stack, case: str
) -> None:
    bad, message = HOSTILE[case]
    queue = f"q-door-{next(_ids)}"
    r = httpx.post(f"{stack.url}/v1/events", content=json.dumps([offered(queue), bad]).encode(),
                   headers={"content-type": "application/json"}, timeout=30)  # fmt: skip
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["accepted"] == 1
    assert [e["index"] for e in body["rejected"]] == [1]
    assert message in body["rejected"][0]["error"]
    # the canary, posted after the bad input, is counted
    assert stack.post([offered(queue)]).status_code == 202
    assert wait_until(lambda: counted(stack, queue) == 2, timeout=30)


def test_a_history_of_1999_is_accepted_and_counted(stack: Stack) -> None:
    ev = {**offered("q-door-1999"), "occurred_at": "1999-03-01T09:00:00+08:00"}
    assert stack.post([ev]).status_code == 202

    def offered_1999() -> Any:
        r = stack.get("/v1/kpis/queue/q-door-1999", **{"from": "1999-03-01T00:00:00+08:00",
                                                       "to": "1999-03-02T00:00:00+08:00"})  # fmt: skip
        return r.status_code == 200 and r.json()["offered"] == 1

    assert wait_until(offered_1999, timeout=30)


def test_an_ndjson_flood_of_malformed_lines_is_413_at_the_first_line_past_the_batch_limit(
    stack: Stack,
) -> None:
    flood = b"x\n" * 140_000  # under the stack's max_body_bytes, 70x its max_batch_events
    r = httpx.post(f"{stack.url}/v1/events", content=flood, timeout=30,
                   headers={"content-type": "application/x-ndjson"})  # fmt: skip
    assert r.status_code == 413
    assert r.json() == {
        "accepted": 0,
        "rejected": [{"index": None,
                      "error": "batch of 2,001+ events exceeds max_batch_events=2000 (at line 2001)"}],
    }  # fmt: skip
    blank = b"\n" * 140_000
    r = httpx.post(f"{stack.url}/v1/events", content=blank, timeout=30,
                   headers={"content-type": "application/x-ndjson"})  # fmt: skip
    assert r.status_code == 413
    assert "more than 5,000 lines" in r.json()["rejected"][0]["error"]


@pytest.fixture(scope="module")
def own_stack(pg: EmbeddedPostgres, broker: EmbeddedBroker) -> Iterator[Stack]:
    """A stack of its own: the shared one's watermark and agent timelines are at
    today (other tests), which finalises a January call's FCR at once and puts its
    agents' states beyond retention; the reference knows only these events."""
    s = Stack(stack_env(broker, new_database(pg), f"door{os.getpid()}")).start()
    yield s
    s.stop()


def test_hostile_events_among_a_simulated_quarter_hour_leave_the_figures_of_the_good_ones(
    own_stack: Stack,
) -> None:
    stack = own_stack
    start = datetime(2026, 1, 7, 14, 0, tzinfo=UTC)
    good = simulated(seed=19, minutes=15, start=start)
    # (the 70 kB event alone would fill a quarter of the stack's max_body_bytes)
    hostile = [bad for case, (bad, _) in HOSTILE.items() if case != "an event of 70 kB"]
    items: list[tuple[Any, bool]] = []
    for i, ev in enumerate(good):
        items.append((ev, False))
        if i % 40 == 0:
            items.append((hostile[(i // 40) % len(hostile)], True))
    accepted = 0
    for at in range(0, len(items), 500):
        chunk = items[at : at + 500]
        r = httpx.post(f"{stack.url}/v1/events", content=json.dumps([x for x, _ in chunk]).encode(),
                       headers={"content-type": "application/json"}, timeout=60)  # fmt: skip
        assert r.status_code == 202, r.text
        assert [e["index"] for e in r.json()["rejected"]] == [
            i for i, (_, bad) in enumerate(chunk) if bad
        ]
        accepted += r.json()["accepted"]
    assert accepted == len(good)

    want = expected(good)
    keys = list(want)
    times = [datetime.fromisoformat(e["occurred_at"]) for e in good]
    # every call and the shift's logouts lie inside: no agent state is cut by it
    lo = min(times).replace(second=0, microsecond=0)
    hi = max(times).replace(second=0, microsecond=0) + timedelta(minutes=1)
    window = (lo.isoformat(), hi.isoformat())

    def agree() -> list[str]:
        return mismatches(api_figures(stack, keys, *window), {k: want[k] for k in keys})

    assert wait_until(lambda: not agree(), timeout=60), agree()[:5]

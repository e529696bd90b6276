"""`GET /v1/stream` through the real broker, worker and Postgres: a snapshot
first, updates as figures change (coalesced to one a second per entity), exact
resumption with Last-Event-ID, and a client that stops reading does not hold up
the others."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.sse import Feed
from tests.support.stack import Stack, post_and_wait

pytestmark = pytest.mark.slow


def call(cid: str, queue: str, at: datetime, *, answered: bool) -> list[dict[str, Any]]:
    """A call offered at `at`; answered after 4 s and ended at 60 s, or still waiting."""
    out = [{"event_id": f"{cid}-o", "type": "call.offered", "occurred_at": at.isoformat(),
            "call_id": cid, "queue_id": queue}]  # fmt: skip
    if answered:
        out += [
            {"event_id": f"{cid}-a", "type": "call.answered", "call_id": cid, "agent_id": "x-sse",
             "occurred_at": (at + timedelta(seconds=4)).isoformat()},
            {"event_id": f"{cid}-e", "type": "call.ended", "call_id": cid, "ended_by": "agent",
             "occurred_at": (at + timedelta(seconds=60)).isoformat()},
        ]  # fmt: skip
    return out


def feed(stack: Stack, last_event_id: str | None = None, **params: Any) -> Feed:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    f = Feed(f"{stack.url}/v1/stream", params, headers)
    assert f.status == 200, f.body
    return f


def test_snapshot_first_then_an_update_when_a_call_starts_waiting(stack: Stack) -> None:
    now = datetime.now(UTC)
    post_and_wait(stack, call("sse-a1", "q-sse-a", now - timedelta(seconds=20), answered=False),
                  "q-sse-a", live={"in_queue": 1})  # fmt: skip
    with feed(stack, kind="queue", id="q-sse-a") as f:
        snap = f.next("snapshot")
        (tile,) = snap.data["entities"]
        assert (tile["kind"], tile["id"], tile["team"]) == ("queue", "q-sse-a", "unassigned")
        assert tile["live"]["in_queue"] == 1
        assert tile["live"]["longest_wait_seconds"] >= 20
        assert tile["m15"]["offered"] == 1 and tile["m15"]["answer_rate"] is None
        assert "figures_at" in snap.data and isinstance(snap.data["alerts"], list)
        posted = time.monotonic()
        assert stack.post(call("sse-a2", "q-sse-a", datetime.now(UTC), answered=False))
        upd = f.next("update", timeout=15, where=lambda fr: fr.data["live"]["in_queue"] == 2)
        assert upd.data["m15"]["offered"] == 2
        assert upd.id is not None and snap.id is not None
        epoch, seq = upd.id.split("-")
        assert epoch == snap.id.split("-")[0] and int(seq) > int(snap.id.split("-")[1])
        print(f"update {upd.at - posted:.2f} s after the POST returned")


def test_updates_of_one_entity_come_at_most_once_a_second(stack: Stack) -> None:
    # a waiting call's longest wait changes every second: the feed's busiest case
    now = datetime.now(UTC)
    post_and_wait(stack, call("sse-r1", "q-sse-rate", now - timedelta(seconds=5), answered=False),
                  "q-sse-rate", live={"in_queue": 1})  # fmt: skip
    with feed(stack, kind="queue", id="q-sse-rate") as f:
        f.next("snapshot")
        for i in range(12):  # a new call every 0.25 s: 12 changes in 3 s
            stack.post(call(f"sse-r{i + 2}", "q-sse-rate", datetime.now(UTC), answered=False))
            time.sleep(0.25)
        f.next("update", where=lambda fr: fr.data["live"]["in_queue"] == 13, timeout=15)
        start = time.monotonic()
        updates = []
        while time.monotonic() - start < 5:
            try:
                updates.append(f.next("update", timeout=5 - (time.monotonic() - start)))
            except TimeoutError:
                break
    # 5 s of a wait that grows every second: about 5 updates, never more than 6
    assert 3 <= len(updates) <= 6, [u.at - start for u in updates]


def without_clock(tile: dict[str, Any]) -> dict[str, Any]:
    """A tile without what the clock alone moves: its windows' edges and trend."""
    return {k: v for k, v in tile.items() if k not in ("windows", "trend")}


def test_last_event_id_resumes_with_only_what_changed_and_a_foreign_id_gets_a_snapshot(
    stack: Stack,
) -> None:
    now = datetime.now(UTC)
    start = now - timedelta(minutes=3)
    # handled too: the call's end may come in a later batch than its answer
    post_and_wait(stack, call("sse-res1", "q-sse-res", start, answered=True), "q-sse-res",
                  offered=1, answered=1, handled=1)  # fmt: skip
    with feed(stack, kind="queue", id="q-sse-res") as f:
        seen = f.next("snapshot").id
    post_and_wait(stack, call("sse-res2", "q-sse-res", start, answered=True), "q-sse-res",
                  offered=2, answered=2, handled=2)  # fmt: skip
    # back with the id it had: what changed since, as an update, no snapshot
    # (pipeline frames, which say how far behind the figures are, may come between)
    not_pipeline = lambda fr: fr.event != "pipeline"  # noqa: E731
    with feed(stack, last_event_id=seen, kind="queue", id="q-sse-res") as f:
        first = f.next(timeout=10, where=not_pipeline)
        assert first.event == "update", first
        assert first.data["m15"]["offered"] == 2
        resumed = first.id
    # back with the latest id: nothing to send until something changes; only
    # the clock may move the tile (a minute boundary moves the windows' edges)
    with feed(stack, last_event_id=resumed, kind="queue", id="q-sse-res") as f:
        frame = f.next(timeout=10, where=not_pipeline)
        while frame.event == "update":
            assert frame.data["windows"] != first.data["windows"], frame
            assert without_clock(frame.data) == without_clock(first.data), frame
            frame = f.next(timeout=10, where=not_pipeline)
        assert frame.event == "heartbeat", frame
    # an id of another process (a restart, another replica): a whole snapshot
    with feed(stack, last_event_id="0badc0de-3", kind="queue", id="q-sse-res") as f:
        snap = f.next(timeout=10)
        assert snap.event == "snapshot" and snap.data["entities"][0]["m15"]["offered"] == 2


def test_a_client_that_stops_reading_does_not_hold_up_the_others(stack: Stack) -> None:
    now = datetime.now(UTC)
    post_and_wait(stack, call("sse-s1", "q-sse-slow", now - timedelta(seconds=3), answered=False),
                  "q-sse-slow", live={"in_queue": 1})  # fmt: skip
    stalled = socket.create_connection(("127.0.0.1", int(stack.url.rsplit(":", 1)[1])))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    stalled.sendall(
        b"GET /v1/stream?kind=agent&entity=queue:q-sse-slow HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    try:
        time.sleep(3)  # its buffers fill; it reads nothing more
        with feed(stack, kind="queue", id="q-sse-slow") as f:
            f.next("snapshot")
            stack.post(call("sse-s2", "q-sse-slow", datetime.now(UTC), answered=False))
            f.next("update", where=lambda fr: fr.data["live"]["in_queue"] == 2, timeout=15)
    finally:
        stalled.close()


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"kind": "queue", "id": "never-seen-queue"}, 404, "'never-seen-queue': not in the roster"),
        ({"entity": "team"}, 422, "entity[0]: 'team' is not kind:id"),
        ({"entity": "planet:earth"}, 422, "entity[0]: 'planet:earth' is not kind:id"),
        ({"id": "billing"}, 422, "id: give kind with id"),
        ({}, 422, "nothing to watch"),
        ({"kind": "center", "id": "north"}, 404, "center 'north'"),
    ],
)
def test_a_bad_selection_is_refused_with_what_is_wrong(
    stack: Stack, params: dict[str, str], status: int, says: str
) -> None:
    r = httpx.get(f"{stack.url}/v1/stream", params=params, timeout=10)
    assert r.status_code == status, r.text
    assert says in r.json()["detail"]

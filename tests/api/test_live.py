"""What is true now: calls waiting, agents by state, and an open state counted up
to now, through the real broker, worker and Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.stack import Stack, wait_until


def event(eid: str, typ: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"live-{eid}", "type": typ, "occurred_at": at.isoformat(), **fields}


def test_waiting_calls_and_an_open_agent_state_show_live_and_count_up_to_now(
    stack: Stack,
) -> None:
    now = datetime.now(UTC)
    events = [
        # queue q-live: one call waiting 40 s, one 10 s, one answered (not waiting)
        event("c1", "call.offered", now - timedelta(seconds=40), call_id="live-1", queue_id="q-live"),
        event("c2", "call.offered", now - timedelta(seconds=10), call_id="live-2", queue_id="q-live"),
        event("c3", "call.offered", now - timedelta(seconds=30), call_id="live-3", queue_id="q-live"),
        event("c4", "call.answered", now - timedelta(seconds=25), call_id="live-3", agent_id="x-live"),
        # agent x-live: not ready (lunch) for 2 minutes, then on a call since 90 s ago
        event("s1", "agent.state", now - timedelta(seconds=210), agent_id="x-live",
              state="not_ready", reason="lunch"),
        event("s2", "agent.state", now - timedelta(seconds=90), agent_id="x-live", state="on_call"),
    ]  # fmt: skip
    assert stack.post(events).status_code == 202

    def queue_live() -> dict[str, Any] | None:
        r = stack.get("/v1/kpis/queue/q-live", window="15m")
        return r.json()["live"] if r.status_code == 200 else None

    live = wait_until(lambda: (q := queue_live()) and q["in_queue"] == 2 and q, timeout=30)
    assert live, queue_live()
    assert 40 <= live["longest_wait_seconds"] < 40 + 30

    def agent() -> dict[str, Any] | None:
        r = stack.get("/v1/kpis/agent/x-live", window="15m")
        return r.json() if r.status_code == 200 else None

    a = wait_until(lambda: (b := agent()) and b["live"]["state"] == "on_call" and b, timeout=30)
    assert a, agent()
    # the closed lunch segment (120 s), and the open call segment up to now
    assert a["not_ready_seconds"] == 120.0
    assert a["not_ready_by_reason"] == {"lunch": 120.0}
    assert 90 <= a["on_call_seconds"] < 90 + 30
    # each field is rounded to the microsecond on its own, so their float sum may
    # differ from the total in the last bit
    assert a["logged_in_seconds"] == pytest.approx(
        a["not_ready_seconds"] + a["on_call_seconds"], abs=2e-6
    )
    assert a["live"]["seconds_in_state"] >= 90

    team = stack.get("/v1/kpis/team/unassigned", window="15m").json()["live"]
    assert team["agents"]["on_call"] >= 1

    # a range that ended before the open state began gets none of it
    start = (now - timedelta(minutes=30)).replace(second=0, microsecond=0)
    past = stack.get(
        "/v1/kpis/agent/x-live",
        **{"from": start.isoformat(), "to": (start + timedelta(minutes=10)).isoformat()},
    ).json()
    assert past["on_call_seconds"] == 0.0


def test_service_level_threshold_must_be_a_bin_edge(stack: Stack) -> None:
    r = stack.get("/v1/kpis/center/all", window="15m", sl=25)
    assert r.status_code == 422
    assert "bin edge" in r.text and "30" in r.text
    ok = stack.get("/v1/kpis/center/all", window="15m", sl=30).json()
    assert ok["sl_seconds"] == 30 and ok["definitions"]["service_level_seconds"] == 20

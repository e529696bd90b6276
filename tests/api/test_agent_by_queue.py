"""An agent's figures per queue (`?by=queue`) through the real broker, worker and
Postgres: for an agent in two queues, answered, handle time and RONA in each,
summing to the agent's own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.stack import Stack, post_and_wait

AGENT = "bq-1001"


def call(cid: str, queue: str, at: datetime, talk_s: int | None) -> list[dict[str, Any]]:
    """Rings at AGENT 2 s after it is offered; answered 3 s later and talked
    `talk_s`, or (None) never answered there: another agent takes it."""

    def ev(suffix: str, typ: str, dt: float, **f: Any) -> dict[str, Any]:
        return {"event_id": f"{cid}-{suffix}", "type": typ, "call_id": cid,
                "occurred_at": (at + timedelta(seconds=dt)).isoformat(), **f}  # fmt: skip

    out = [ev("o", "call.offered", 0, queue_id=queue), ev("r", "call.ringing", 2, agent_id=AGENT)]
    if talk_s is None:
        out += [ev("a", "call.answered", 20, agent_id="bq-other"),
                ev("e", "call.ended", 80, ended_by="customer")]  # fmt: skip
    else:
        out += [ev("a", "call.answered", 5, agent_id=AGENT),
                ev("e", "call.ended", 5 + talk_s, ended_by="customer")]  # fmt: skip
    return out


def test_an_agents_figures_in_each_of_its_queues_sum_to_its_own(stack: Stack) -> None:
    start = (datetime.now(UTC) - timedelta(minutes=30)).replace(second=0, microsecond=0)
    events = (
        call("bq-1", "bq-sales", start, 60)
        + call("bq-2", "bq-sales", start + timedelta(minutes=1), 120)
        + call("bq-3", "bq-care", start + timedelta(minutes=2), None)
        + call("bq-4", "bq-care", start + timedelta(minutes=3), 30)
    )
    span = (start, start + timedelta(minutes=10))
    post_and_wait(stack, events[:8], "bq-sales", span, handled=2)
    post_and_wait(stack, events[8:], "bq-care", span, handled=2)
    r = stack.get(f"/v1/kpis/agent/{AGENT}", by="queue",
                  **{"from": start.isoformat(), "to": span[1].isoformat()})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    by = {row["queue"]: row for row in body["by_queue"]}
    assert list(by) == ["bq-care", "bq-sales"]
    sales, care = by["bq-sales"], by["bq-care"]
    assert (sales["presented"], sales["answered"], sales["rona"]) == (2, 2, 0)
    assert sales["aht_seconds"] == 90.0 and sales["avg_ring_seconds"] == 3.0
    assert (care["presented"], care["answered"], care["rona"]) == (2, 1, 1)
    assert care["aht_seconds"] == 30.0
    assert sales["team"] == care["team"] == "unassigned"
    # the agent's own figures are the sum of its queues'
    assert (body["presented"], body["answered"], body["rona"]) == (4, 3, 1)
    assert body["aht_seconds"] == (60 + 120 + 30) / 3
    # no agent time per queue: agents are not assigned to queues
    assert "logged_in_seconds" not in sales and "logged_in_seconds" in body


def test_by_queue_is_for_agents_only(stack: Stack) -> None:
    r = stack.get("/v1/kpis/queue/bq-sales", by="queue", window="15m")
    assert r.status_code == 422 and "only for agents" in r.text
    r = stack.get(f"/v1/kpis/agent/{AGENT}", by="team", window="15m")
    assert r.status_code == 422 and "by='team'" in r.text
    assert "by_queue" not in stack.get(f"/v1/kpis/agent/{AGENT}", window="15m").json()

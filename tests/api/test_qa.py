"""`GET /v1/qa/deviations` through the real pipeline: four weeks of a team's
usual calls, then one agent rushing its calls in the same weekday's hour; only
that agent is abnormal, on talk time, with the figures worked by hand."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.support.databases import new_database, stack_env
from tests.support.stack import Stack, events_processed, wait_until

pytestmark = pytest.mark.slow
SHANGHAI = ZoneInfo("Asia/Shanghai")  # the example config's timezone
# Yesterday 10:00-11:00 local, whatever the day the suite runs: a full hour in
# the past, and the same weekday's hour in each of the four weeks before.
PERIOD = datetime.combine(datetime.now(SHANGHAI).date() - timedelta(days=1),
                          datetime.min.time(), SHANGHAI) + timedelta(hours=10)  # fmt: skip
AGENTS = ("b00", "b01", "b02", "b03")
USUAL_TALK_S = {"b00": 100, "b01": 98, "b02": 100, "b03": 102}


@pytest.fixture(scope="module")
def stack(pg: EmbeddedPostgres, broker: EmbeddedBroker) -> Iterator[Stack]:
    s = Stack(stack_env(broker, new_database(pg), f"qa{os.getpid()}")).start()
    yield s
    s.stop()


def calls(agent: str, hour: datetime, talk_s: int, n: int, tag: str) -> list[dict[str, Any]]:
    """`n` calls of the billing queue answered by `agent` in `hour`, one every
    110 s, each talked `talk_s` seconds and ended by the agent."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        cid, t0 = f"qa-{tag}-{agent}-{i}", hour + timedelta(seconds=110 * i)
        out += [
            {"event_id": f"{cid}-o", "type": "call.offered", "call_id": cid,
             "queue_id": "billing", "occurred_at": t0.isoformat()},
            {"event_id": f"{cid}-a", "type": "call.answered", "call_id": cid, "agent_id": agent,
             "occurred_at": (t0 + timedelta(seconds=4)).isoformat()},
            {"event_id": f"{cid}-e", "type": "call.ended", "call_id": cid, "ended_by": "agent",
             "occurred_at": (t0 + timedelta(seconds=4 + talk_s)).isoformat()},
        ]  # fmt: skip
    return out


@pytest.fixture(scope="module")
def deviations(stack: Stack) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    for week in range(1, 5):
        hour = PERIOD - timedelta(weeks=week)
        for agent in AGENTS:
            events += calls(agent, hour, USUAL_TALK_S[agent], 30, f"w{week}")
    for agent in AGENTS:  # this week b00 talks 60 s a call: 40% shorter
        events += calls(agent, PERIOD, 60 if agent == "b00" else USUAL_TALK_S[agent], 25, "now")
    before = events_processed(stack)
    for i in range(0, len(events), 1000):
        r = stack.post(events[i : i + 1000])
        assert r.status_code == 202 and r.json()["rejected"] == [], r.text
    assert wait_until(lambda: events_processed(stack) >= before + len(events), timeout=90)
    r = stack.get("/v1/qa/deviations", team="billing", **{
        "from": PERIOD.isoformat(), "to": (PERIOD + timedelta(hours=1)).isoformat()})  # fmt: skip
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def row(body: dict[str, Any], agent: str, figure: str) -> dict[str, Any]:
    found = [a for a in body["agents"] if a["agent"] == agent and a["figure"] == figure]
    assert len(found) == 1, (agent, figure)
    one: dict[str, Any] = found[0]
    return one


def test_the_rushing_agent_alone_is_abnormal_on_talk_time(deviations: dict[str, Any]) -> None:
    assert deviations["abnormal"] == ["b00"]
    talk = row(deviations, "b00", "avg_talk_seconds")
    assert (talk["current"], talk["baseline"], talk["abnormal"]) == (60, 100, True)
    assert talk["change"] == pytest.approx(-0.4)
    # the team at 60 98 100 102: median 99, absolute deviations 39 1 1 3, MAD 2
    assert talk["team_median"] == 99
    assert talk["score"] == pytest.approx(0.6745 * (60 - 99) / 2)
    for agent in ("b01", "b02", "b03"):
        other = row(deviations, agent, "avg_talk_seconds")
        assert other["change"] == pytest.approx(0) and not other["abnormal"]


def test_agents_without_calls_and_figures_without_a_baseline_are_not_flagged(
    deviations: dict[str, Any],
) -> None:
    quiet = row(deviations, "b07", "avg_talk_seconds")  # in the roster, no calls
    assert quiet["not_assessed"] == "0 calls in the period, fewer than 20"
    assert quiet["current"] is None and not quiet["abnormal"]
    hold = row(deviations, "b00", "avg_hold_seconds")  # nobody held: 0 against 0
    assert (hold["baseline"], hold["change"], hold["abnormal"]) == (0, None, False)


def test_an_unknown_team_is_404_and_a_bad_range_months_or_a_control_character_422(
    stack: Stack,
) -> None:
    span = {"from": PERIOD.isoformat(), "to": (PERIOD + timedelta(hours=1)).isoformat()}
    r = stack.get("/v1/qa/deviations", team="nobody", **span)
    assert r.status_code == 404 and "'nobody' is not in the roster" in r.json()["detail"]
    r = stack.get("/v1/qa/deviations", team="billing", **{**span, "to": span["from"]})
    assert r.status_code == 422
    months = {"from": "2025-01-01T00:00:00+08:00", "to": "2025-06-01T00:00:00+08:00"}
    r = stack.get("/v1/qa/deviations", team="billing", **months)
    assert r.status_code == 422 and "at most 62 days" in r.json()["detail"]
    r = stack.get("/v1/qa/deviations", team="bill\x00ing", **span)
    assert r.status_code == 422 and "control character" in r.json()["detail"]

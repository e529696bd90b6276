"""GET /v1/calls through the real pipeline: the calls behind a figure, paged by
cursor or as one CSV, filtered as a drill-down asks."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.support.dips import calls
from tests.support.stack import Stack, post_and_wait

pytestmark = pytest.mark.slow
SHANGHAI = ZoneInfo("Asia/Shanghai")
# two days back at any hour, a queue of this test's own
T0 = (datetime.now(SHANGHAI) - timedelta(days=2)).replace(
    hour=10, minute=0, second=0, microsecond=0
)
SPAN = {"from": T0.isoformat(), "to": (T0 + timedelta(minutes=30)).isoformat()}


@pytest.fixture(scope="module")
def posted(stack: Stack) -> dict[str, Any]:
    events = calls("cd", "q-calls", T0, answered=17, abandoned=6, spread=timedelta(minutes=20))
    return post_and_wait(stack, events, "q-calls", (T0, T0 + timedelta(minutes=30)), offered=23)


def test_the_calls_of_a_range_are_its_offered_calls_oldest_first_in_cursor_pages(
    stack: Stack, posted: dict[str, Any]
) -> None:
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params = {**SPAN, "queue": "q-calls", "limit": 7} | ({"cursor": cursor} if cursor else {})
        body = stack.get("/v1/calls", **params).json()
        seen += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 4 and len(seen) == posted["offered"] == 23
    assert [c["offered_at"] for c in seen] == sorted(c["offered_at"] for c in seen)
    assert len({c["call_id"] for c in seen}) == 23
    answered = [c for c in seen if c["outcome"] == "answered"]
    assert len(answered) == posted["answered"] == 17
    # answered after 5 s, ended at 60 s: 55 s of talk, by one of the tag's agents
    assert {(c["wait_seconds"], c["talk_seconds"]) for c in answered} == {(5.0, 55.0)}
    assert all(len(c["agents"]) == 1 and c["agents"][0]["answered"] for c in answered)
    assert all(c["team"] == "unassigned" and c["queue_id"] == "q-calls" for c in seen)


def test_a_drill_down_into_abandons_after_30_s_finds_the_figures_calls(
    stack: Stack, posted: dict[str, Any]
) -> None:
    body = stack.get("/v1/calls", **SPAN, queue="q-calls", outcome="abandoned", min_wait=30).json()
    assert len(body["items"]) == posted["abandoned"] == 6
    assert all(c["ended_by"] == "customer" and c["wait_seconds"] == 30.0 for c in body["items"])
    assert stack.get("/v1/calls", **SPAN, queue="q-calls", min_wait=31).json()["items"] == []
    agent = body["items"][0]["call_id"]  # any call id: no agent by that name
    assert stack.get("/v1/calls", **SPAN, queue="q-calls", agent=agent).json()["items"] == []


def test_the_csv_is_every_call_of_the_range_in_one_response(
    stack: Stack, posted: dict[str, Any]
) -> None:
    r = stack.get("/v1/calls", **SPAN, queue="q-calls", format="csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 23
    assert sum(row["outcome"] == "abandoned" for row in rows) == 6
    assert rows[0]["offered_at"] == min(row["offered_at"] for row in rows)


def test_a_filter_that_is_no_outcome_or_a_cursor_not_given_is_refused_naming_it(
    stack: Stack, posted: dict[str, Any]
) -> None:
    r = stack.get("/v1/calls", **SPAN, outcome="dropped")
    assert r.status_code == 422 and "outcome" in r.json()["detail"]
    r = stack.get("/v1/calls", **SPAN, cursor="!!")
    assert r.status_code == 422 and "cursor" in r.json()["detail"]
    r = stack.get("/v1/calls", **SPAN, team="nope")
    assert r.status_code == 404


def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_is_written_as_text(
    stack: Stack,
) -> None:
    # a hostile client names its queue and agent as formulas
    queue, agent = '=HYPERLINK("http://x","click")', "@SUM(1+1)"
    t0 = T0 + timedelta(hours=3)
    cid = "cd-formula"
    events = [
        {"event_id": f"{cid}-o", "type": "call.offered", "call_id": cid, "queue_id": queue,
         "occurred_at": t0.isoformat()},
        {"event_id": f"{cid}-a", "type": "call.answered", "call_id": cid, "agent_id": agent,
         "occurred_at": (t0 + timedelta(seconds=4)).isoformat()},
        {"event_id": f"{cid}-e", "type": "call.ended", "call_id": cid, "ended_by": "agent",
         "occurred_at": (t0 + timedelta(seconds=40)).isoformat()},
    ]  # fmt: skip
    span = (t0, t0 + timedelta(minutes=1))
    post_and_wait(stack, events, queue, span, offered=1)
    q = {"from": t0.isoformat(), "to": span[1].isoformat(), "queue": queue}
    (row,) = list(csv.DictReader(io.StringIO(stack.get("/v1/calls", **q, format="csv").text)))
    assert row["queue_id"] == "'" + queue and row["agents"] == "'" + agent
    assert row["last_agent"] == "'" + agent and row["wait_seconds"] == "4.0"
    (item,) = stack.get("/v1/calls", **q).json()["items"]
    assert item["queue_id"] == queue  # the JSON keeps what was sent

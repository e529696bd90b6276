"""`GET /v1/qa/deviations` through the real pipeline: four weeks of a team's
usual calls, then one agent rushing its calls in the same weekday's hour; only
that agent is abnormal, on talk time, with the figures worked by hand."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.support.databases import new_database, stack_env
from tests.support.samples import answered_calls as calls
from tests.support.stack import Stack, events_processed, wait_until

pytestmark = pytest.mark.slow
SHANGHAI = ZoneInfo("Asia/Shanghai")  # the example config's timezone
# Yesterday 10:00-11:00 local, whatever the day the suite runs: a full hour in
# the past, and the same weekday's hour in each of the four weeks before.
PERIOD = datetime.combine(datetime.now(SHANGHAI).date() - timedelta(days=1),
                          datetime.min.time(), SHANGHAI) + timedelta(hours=10)  # fmt: skip
AGENTS = ("b00", "b01", "b02", "b03")
USUAL_TALK_S = {"b00": 100, "b01": 98, "b02": 100, "b03": 102}


# Three hours after PERIOD, b02 answers 10 calls it ends within 3 s among 15 usual
SHORT_HOUR = PERIOD + timedelta(hours=3)
BILLING = [f"b{i:02d}" for i in range(12)]  # the example roster's billing team


@pytest.fixture(scope="module")
def database(pg: EmbeddedPostgres) -> str:
    return new_database(pg)


@pytest.fixture(scope="module")
def stack(database: str, broker: EmbeddedBroker) -> Iterator[Stack]:
    s = Stack(stack_env(broker, database, f"qa{os.getpid()}")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def deviations(stack: Stack) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    for week in range(1, 5):
        hour = PERIOD - timedelta(weeks=week)
        for agent in AGENTS:
            events += calls(agent, hour, USUAL_TALK_S[agent], 30, f"w{week}")
    for agent in AGENTS:  # this week b00 talks 60 s a call: 40% shorter
        events += calls(agent, PERIOD, 60 if agent == "b00" else USUAL_TALK_S[agent], 25, "now")
    events += calls("b02", SHORT_HOUR, 3, 10, "short") + calls("b02", SHORT_HOUR, 100, 15,
                                                                "short", first=10)  # fmt: skip
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


def span(start: datetime, hours: int = 1) -> dict[str, str]:
    return {"from": start.isoformat(), "to": (start + timedelta(hours=hours)).isoformat()}


def test_the_sample_puts_the_rushing_agent_first_with_talk_time_and_its_calls_then_draws(
    stack: Stack, deviations: dict[str, Any]
) -> None:
    r = stack.get("/v1/qa/sample", team="billing", **span(PERIOD))
    assert r.status_code == 200, r.text
    body = r.json()
    first, *drawn = body["sample"]
    assert (first["agent"], first["abnormal"]) == ("b00", True)
    # nobody holds or wraps up here, so AHT is talk time and falls with it
    assert [r["figure"] for r in first["reasons"]] == ["avg_talk_seconds", "aht_seconds"]
    assert [r["change"] for r in first["reasons"]] == [pytest.approx(-0.4)] * 2
    # ten of its 25 calls, five for each reason, each a 60 s one: the calls that show it
    why = [(c["why"], c["talk_seconds"]) for c in first["calls"]]
    assert why == [("avg_talk_seconds", 60)] * 5 + [("aht_seconds", 60)] * 5
    assert all(c["call_id"].startswith("qa-now-b00-") for c in first["calls"])
    # 30% of 12 agents: b00 and three drawn, lowest SHA-256 of period, team and agent
    label = f"{PERIOD.isoformat()}/{(PERIOD + timedelta(hours=1)).isoformat()}"
    by_hand = sorted((a for a in BILLING if a != "b00"), key=lambda a: hashlib.sha256(
        f"callkpi-qa:{label}:billing:{a}".encode()).hexdigest())[:3]  # fmt: skip
    assert [d["agent"] for d in drawn] == by_hand and body["wanted"] == 4
    assert not any(d["abnormal"] or d["reasons"] for d in drawn)
    assert stack.get("/v1/qa/sample", team="billing", **span(PERIOD)).json() == body


def test_an_agent_ending_a_tenth_of_its_calls_within_seconds_is_sampled_for_short_calls(
    stack: Stack, deviations: dict[str, Any]
) -> None:
    body = stack.get("/v1/qa/sample", team="billing", **span(SHORT_HOUR)).json()
    first = body["sample"][0]
    assert first["agent"] == "b02"
    assert first["reasons"] == [{"figure": "short_calls", "count": 10, "answered": 25,
                                 "share": 0.4}]  # fmt: skip
    assert first["suspicious"] == {"answered": 25, "short": 10, "released": 10, "transfers": 0}
    why = [(c["why"], c["talk_seconds"]) for c in first["calls"]]
    assert why == [("short_calls", 3)] * 10  # its calls_per_agent (10) are the short ones
    # no baseline at that hour: the figures say so instead of flagging anyone
    assert "fewer than 60" in body["not_assessed"]["b02"]["avg_talk_seconds"]


def test_the_sample_as_csv_has_a_row_per_call_to_hear_and_each_read_is_audited(
    stack: Stack, database: str, deviations: dict[str, Any]
) -> None:
    r = stack.get("/v1/qa/sample", team="billing", format="csv", **span(PERIOD))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    b00 = [row for row in rows if row["agent"] == "b00"]
    assert len(b00) == 10 and {row["reasons"] for row in b00} == {"avg_talk_seconds;aht_seconds"}
    drawn = {row["agent"] for row in rows if row["abnormal"] == "False"}
    assert len(drawn) == 3  # drawn agents without calls have a row each, the call empty

    async def audited() -> list[Any]:
        conn = await asyncpg.connect(database.replace("postgresql+asyncpg", "postgresql"))
        try:
            return list(await conn.fetch(
                "SELECT actor, period, detail FROM audit_log WHERE action = 'read_qa_sample'"))  # fmt: skip
        finally:
            await conn.close()

    rows_ = asyncio.run(audited())
    csv_reads = [row for row in rows_ if json.loads(row["detail"])["format"] == "csv"]
    assert csv_reads and json.loads(csv_reads[-1]["detail"])["agents"][0] == "b00"


def test_the_sample_wants_a_known_pay_period_or_a_range_and_not_both(stack: Stack) -> None:
    r = stack.get("/v1/qa/sample", team="billing")
    assert r.status_code == 422 and "period" in r.json()["detail"]
    r = stack.get("/v1/qa/sample", team="billing", period="2026-13")
    assert r.status_code == 404
    r = stack.get("/v1/qa/sample", team="billing", period="2026-11", **span(PERIOD))
    assert r.status_code == 422 and "not both" in r.json()["detail"]
    r = stack.get("/v1/qa/sample", team="nobody", period="2026-11")
    assert r.status_code == 404
    r = stack.get("/v1/qa/sample", team="billing", period="2026-11")
    assert r.status_code == 200 and r.json()["period"] == "2026-11"


def test_short_calls_per_interval_link_to_exactly_those_calls(
    stack: Stack, deviations: dict[str, Any]
) -> None:
    r = stack.get("/v1/qa/suspicious", team="billing", granularity="30m", **span(SHORT_HOUR))
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    # b02's 25 calls, one every 110 s from the hour: 17 in the first half hour
    # (the 10 short ones among them), 8 in the second
    assert [(x["agent"], x["answered"], x["short"], x["released"]) for x in rows] == [
        ("b02", 17, 10, 10), ("b02", 8, 0, 0)]  # fmt: skip
    link = rows[0]["calls"]["short"]
    calls = httpx.get(f"{stack.url}{link}", headers=stack.headers, timeout=30).json()["items"]
    assert len(calls) == 10 and {c["talk_seconds"] for c in calls} == {3}
    r = stack.get("/v1/calls", suspicious="odd", **span(SHORT_HOUR))
    assert r.status_code == 422 and "suspicious: 'odd' is none of short" in r.json()["detail"]


def test_a_range_written_in_another_zone_draws_the_same_sample(stack: Stack) -> None:
    utc = {"from": PERIOD.astimezone(UTC).isoformat(),
           "to": (PERIOD + timedelta(hours=1)).astimezone(UTC).isoformat()}  # fmt: skip
    here = stack.get("/v1/qa/sample", team="billing", **span(PERIOD)).json()
    there = stack.get("/v1/qa/sample", team="billing", **utc).json()
    assert here["period"] == there["period"] == f"{span(PERIOD)['from']}/{span(PERIOD)['to']}"
    assert [s["agent"] for s in here["sample"]] == [s["agent"] for s in there["sample"]]

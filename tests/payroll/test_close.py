"""Closing pay periods through the real pipeline and Postgres: the stored figures
equal the read API's, CSV equals JSON, too-early and repeated closes are refused
with the reason, and a version cannot be changed."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.api.periods import CSV_COLUMNS
from services.core.kpi import AGENT_FIELDS
from services.devstack import EmbeddedBroker, EmbeddedPostgres
from services.payroll.close import checksum
from tests.support.databases import new_database, stack_env
from tests.support.dips import calls
from tests.support.stack import Stack, post_and_wait, wait_until

pytestmark = pytest.mark.slow
SHANGHAI = ZoneInfo("Asia/Shanghai")
TODAY = datetime.now(SHANGHAI).date()


def day(offset: int) -> date:
    return TODAY + timedelta(days=offset)


# Ranges relative to today, so the test means the same whenever it runs: `past`
# ended long ago, `recent` ended at midnight (FCR windows still open), `current`
# has not ended.
RANGES = [
    # within call_state_retention_days (14), so a late survey still finds its call
    {"id": "past", "from": str(day(-10)), "to": str(day(-5))},
    {"id": "quiet1", "from": str(day(-33)), "to": str(day(-30))},
    {"id": "recent", "from": str(day(-2)), "to": str(day(-1))},
    {"id": "current", "from": str(day(0)), "to": str(day(1))},
]


EXAMPLE_SCORE_COLUMNS = [
    "manual.callback_rate", "manual.qa_score", "manual.complaints_city",
    "manual.complaints_province", "scorecard",
    "score.answer_rate", "score.satisfaction", "score.response_time", "score.calls_answered",
    "score.fcr", "score.callback_rate", "score.quality", "score.attendance", "score.conversion",
    "score.sales_count",
    "penalty.complaints", "penalty.absences", "part.data", "part.listening",
    "score_total", "score_units", "commission",
]  # fmt: skip


@pytest.fixture(scope="module")
def payroll(pg: EmbeddedPostgres, broker: EmbeddedBroker) -> Iterator[tuple[Stack, str]]:
    db = new_database(pg)
    env = stack_env(broker, db, "payroll", CALLKPI_PERIODS__CALENDAR="explicit",
                    CALLKPI_PERIODS__RANGES=json.dumps(RANGES))  # fmt: skip
    s = Stack(env).start()
    yield s, db
    s.stop()


@pytest.fixture(scope="module")
def closed_past(payroll: tuple[Stack, str]) -> dict[str, Any]:
    stack, _ = payroll
    t0 = datetime.combine(day(-8), datetime.min.time(), SHANGHAI) + timedelta(hours=10)
    events = calls("pay", "billing", t0, answered=17, abandoned=3)
    post_and_wait(
        stack, events, "billing", (t0, t0 + timedelta(minutes=10)), offered=20, in_queue=0
    )
    r = stack.post_json("/v1/periods/past/close", {"by": "test-payroll"})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def test_closing_an_ended_period_stores_version_1_equal_to_the_read_api(
    payroll: tuple[Stack, str], closed_past: dict[str, Any]
) -> None:
    stack, _ = payroll
    assert (closed_past["version"], closed_past["fcr_provisional"]) == (1, False)
    assert closed_past["created_by"] == "test-payroll"
    period = stack.get("/v1/periods/past").json()
    assert (
        period["status"] == "closed"
        and period["versions"][0]["checksum"] == closed_past["checksum"]
    )
    rows = stack.get("/v1/periods/past/agents").json()["items"]
    agents = {r["agent_id"]: r for r in rows}
    assert {f"pay-agent{i}" for i in range(4)} <= set(agents)
    for agent in (f"pay-agent{i}" for i in range(4)):
        live = stack.get(
            f"/v1/kpis/agent/{agent}", **{"from": period["from"], "to": period["to"]}
        ).json()
        assert {f: agents[agent][f] for f in AGENT_FIELDS} == {f: live[f] for f in AGENT_FIELDS}
    assert sum(agents[f"pay-agent{i}"]["answered"] for i in range(4)) == 17
    # roster agents without a call are there too, with zeros
    assert agents["b00"]["answered"] == 0 and agents["b00"]["team"] == "billing"


def test_csv_has_the_documented_columns_and_equals_the_json(
    payroll: tuple[Stack, str], closed_past: dict[str, Any]
) -> None:
    stack, _ = payroll
    r = stack.get("/v1/periods/past/agents", format="csv")
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    table = list(csv.DictReader(io.StringIO(r.content.decode("utf-8"))))
    # the fixed columns, then the example scorecard's (docs/payroll.md#columns)
    assert list(table[0]) == [*CSV_COLUMNS, *EXAMPLE_SCORE_COLUMNS]
    items = stack.get("/v1/periods/past/agents").json()["items"]
    assert len(table) == len(items)
    for line, item in zip(table, items, strict=True):
        for col in line:
            want = item.get(col)
            assert line[col] == ("" if want is None else str(want)), (col, line[col], want)


def test_etag_round_trip_gives_304_until_the_version_changes(
    payroll: tuple[Stack, str], closed_past: dict[str, Any]
) -> None:
    stack, _ = payroll
    first = stack.get("/v1/periods/past/agents")
    etag = first.headers["etag"]
    again = stack.get_with("/v1/periods/past/agents", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = stack.get_with("/v1/periods/past/agents", headers={"If-None-Match": '"other"'})
    assert other.status_code == 200


def test_closing_twice_is_refused_and_keeps_version_1(
    payroll: tuple[Stack, str], closed_past: dict[str, Any]
) -> None:
    stack, _ = payroll
    r = stack.post_json("/v1/periods/past/close", {})
    assert r.status_code == 409 and "already closed (version 1)" in r.json()["detail"]
    assert [v["version"] for v in stack.get("/v1/periods/past").json()["versions"]] == [1]


def test_closing_while_fcr_windows_are_open_is_refused_with_the_earliest_time(
    payroll: tuple[Stack, str],
) -> None:
    stack, _ = payroll
    r = stack.post_json("/v1/periods/recent/close", {})
    assert r.status_code == 409, r.text
    end = datetime.combine(day(0), datetime.min.time(), SHANGHAI)
    assert r.json()["earliest_close"] == (end + timedelta(hours=72 + 6)).isoformat()
    assert "force=true" in r.json()["detail"]
    forced = stack.post_json("/v1/periods/recent/close?force=true", {})
    assert forced.status_code == 201 and forced.json()["fcr_provisional"] is True
    assert stack.get("/v1/periods/recent/agents").json()["items"][0]["fcr_provisional"] is True


def test_a_period_that_has_not_ended_cannot_be_closed_even_with_force(
    payroll: tuple[Stack, str],
) -> None:
    stack, _ = payroll
    r = stack.post_json("/v1/periods/current/close?force=true", {})
    assert r.status_code == 409 and "has not ended" in r.json()["detail"]
    assert stack.get("/v1/periods/current").json()["status"] == "open"
    assert stack.get("/v1/periods/2026-10").status_code == 404  # not a configured range


def test_concurrent_closes_produce_one_version(payroll: tuple[Stack, str]) -> None:
    stack, _ = payroll
    codes: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: codes.append(stack.post_json("/v1/periods/quiet1/close", {}).status_code)
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [201, 409, 409, 409]
    assert len(stack.get("/v1/periods/quiet1").json()["versions"]) == 1


async def test_a_stored_version_cannot_be_updated_and_its_checksum_matches_its_figures(
    payroll: tuple[Stack, str], closed_past: dict[str, Any]
) -> None:
    _, db = payroll
    conn = await asyncpg.connect(db.replace("postgresql+asyncpg", "postgresql"))
    try:
        row = await conn.fetchrow("SELECT definitions, figures, checksum FROM period_versions "
                                  "WHERE period = 'past' AND version = 1")  # fmt: skip
        assert row is not None
        assert (
            checksum("past", json.loads(row["definitions"]), json.loads(row["figures"]))
            == row["checksum"]
        )
        with pytest.raises(asyncpg.RaiseError, match="immutable"):
            await conn.execute("UPDATE period_versions SET created_by = 'x' WHERE period = 'past'")
        with pytest.raises(asyncpg.RaiseError, match="immutable"):
            await conn.execute("DELETE FROM period_versions WHERE period = 'past'")
    finally:
        await conn.close()


def test_cli_lists_periods_and_refuses_a_second_close_with_the_reason(
    payroll: tuple[Stack, str], closed_past: dict[str, Any]
) -> None:
    import subprocess
    import sys

    stack, _ = payroll
    env = stack.env
    listed = subprocess.run([sys.executable, "-m", "services.cli", "periods", "list"], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:2] == ["past", "closed"] for line in listed.stdout.splitlines())
    again = subprocess.run([sys.executable, "-m", "services.cli", "periods", "close", "past"],
                           env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert again.returncode == 1 and "already closed (version 1)" in again.stderr
    bad = subprocess.run([sys.executable, "-m", "services.cli", "periods", "close", "nope"],
                         env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "not one of the configured ranges" in bad.stderr


def test_the_payroll_export_holds_the_closed_versions_rows(
    payroll: tuple[Stack, str], closed_past: dict[str, Any], tmp_path: Any
) -> None:
    import subprocess
    import sys

    import pyarrow.parquet as pq

    stack, _ = payroll
    start = datetime.combine(day(-10), datetime.min.time(), SHANGHAI)
    run = subprocess.run(
        [sys.executable, "-m", "services.cli", "export", "--kind", "payroll", "--from",
         start.isoformat(), "--to", (start + timedelta(days=1)).isoformat(), "--out", str(tmp_path)],
        env=stack.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    rows = {r["agent_id"]: r for r in pq.read_table(tmp_path / "payroll.parquet").to_pylist()}
    api = stack.get("/v1/periods/past/agents").json()["items"]
    assert set(rows) == {a["agent_id"] for a in api}
    for a in api:
        mine = rows[a["agent_id"]]
        assert (mine["period"], mine["version"]) == ("past", closed_past["version"])
        for name in ("answered", "answer_rate", "aht_seconds", "score_total", "scorecard"):
            assert mine.get(name) == a.get(name), (a["agent_id"], name)


SURVEY_FIELDS = {"surveys", "satisfied", "csat", "survey_rate"}


def test_late_survey_after_close_leaves_version_1_unchanged_and_restates_as_version_2(
    payroll: tuple[Stack, str], closed_past: dict[str, Any]
) -> None:
    stack, _ = payroll
    v1 = stack.get("/v1/periods/past/agents/pay-agent1", version=1).json()
    assert v1["surveys"] == 0
    # call pay-1 was answered by pay-agent1; its survey arrives after the close
    t = datetime.combine(day(-8), datetime.min.time(), SHANGHAI) + timedelta(hours=11)
    survey = {"event_id": "pay-1-survey", "type": "survey.completed", "call_id": "pay-1",
              "score": 5, "occurred_at": t.isoformat()}  # fmt: skip
    assert stack.post([survey]).status_code == 202

    def adjustments() -> Any:
        items = stack.get("/v1/periods/past/adjustments").json()["items"]
        return items if items else None

    items = wait_until(adjustments, timeout=30)
    assert items, "the late survey never showed as an adjustment"
    assert {(i["agent_id"], i["field"]) for i in items} == {
        ("pay-agent1", f) for f in SURVEY_FIELDS
    }
    by_field = {i["field"]: i for i in items}
    assert (
        by_field["surveys"]["closed"],
        by_field["surveys"]["current"],
        by_field["surveys"]["difference"],
    ) == (0, 1, 1)
    assert by_field["csat"]["closed"] is None and by_field["csat"]["difference"] is None

    # version 1 is untouched
    assert stack.get("/v1/periods/past/agents/pay-agent1", version=1).json() == v1
    assert (
        stack.get("/v1/periods/past").json()["versions"][0]["checksum"] == closed_past["checksum"]
    )

    r = stack.post_json("/v1/periods/past/restate", {"reason": "late survey", "by": "payroll-test"})
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2 and r.json()["checksum"] != closed_past["checksum"]
    d = stack.get("/v1/periods/past/versions/2/diff").json()
    assert d["reason"] == "late survey"
    assert [(i["agent_id"], i["field"], i["old"], i["new"]) for i in d["items"]] == [
        (i["agent_id"], i["field"], i["closed"], i["current"]) for i in items
    ]
    assert stack.get("/v1/periods/past/agents/pay-agent1").json()["version"] == 2
    assert stack.get("/v1/periods/past/agents/pay-agent1", version=1).json() == v1
    assert stack.get("/v1/periods/past/adjustments").json()["items"] == []
    again = stack.post_json("/v1/periods/past/restate", {"reason": "again"})
    assert again.status_code == 409 and "nothing changed since version 2" in again.json()["detail"]
    assert stack.get("/v1/periods/past/versions/1/diff").status_code == 422
    assert (
        stack.post_json("/v1/periods/past/restate", {}).status_code == 422
    )  # a reason is required

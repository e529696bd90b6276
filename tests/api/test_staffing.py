"""Staffing through the real pipeline: a schedule uploaded as CSV, calls and
agent states posted to ingest and counted by the worker, then required,
scheduled and staffed agents per interval, the forecast of the next week, and
each agent's adherence and attendance, worked by hand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.core.staffing import patience_seconds, requirement
from services.core.staffing_rules import Goal
from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.support.databases import new_database, stack_env
from tests.support.dips import calls
from tests.support.stack import Stack, post_and_wait, wait_until

pytestmark = pytest.mark.slow
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Three days back at any hour the suite runs: whole, in the past, well inside the
# retention of call state (a fixed date would leave it one day)
DAY = datetime.now(SHANGHAI).date() - timedelta(days=3)
SCHEDULE = (
    "agent_id,date,start,end,activity\n"
    f"b00,{DAY},10:00,12:00,work\n"
    f"b00,{DAY},11:00,11:15,break\n"
    f"b01,{DAY},10:15,12:00,work\n"
    f"b02,{DAY},,,off\n"
    f"t05,{DAY},09:00,17:00,work\n"  # never logs in
)


def at(clock: str, day: date = DAY) -> datetime:
    return datetime.combine(day, datetime.strptime(clock, "%H:%M").time(), SHANGHAI)


def state(agent: str, clock: str, st: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": f"st-{agent}-{clock}-{st}", "type": "agent.state",
            "occurred_at": at(clock).isoformat(), "agent_id": agent, "state": st, **extra}  # fmt: skip


@pytest.fixture(scope="module")
def center(pg: EmbeddedPostgres, broker: EmbeddedBroker) -> Iterator[Stack]:
    period = [{"id": "sday", "from": str(DAY), "to": str(DAY)}]
    env = stack_env(broker, new_database(pg), "staffing", CALLKPI_PERIODS__CALENDAR="explicit",
                    CALLKPI_PERIODS__RANGES=json.dumps(period))  # fmt: skip
    s = Stack(env, logs="staffing-").start()
    r = httpx.post(f"{s.url}/v1/schedules", content=SCHEDULE, params={"note": "week plan"})
    assert r.status_code == 201, r.text
    states = [
        state("b00", "10:00", "available"),
        state("b00", "11:00", "not_ready", reason="break"),
        state("b00", "11:20", "available"),
        state("b00", "12:00", "logged_out"),
        state("b01", "10:25", "available"),
        state("b01", "12:00", "logged_out"),
    ]
    assert s.post(states).status_code == 202
    first = calls(
        "sf1", "billing", at("10:00"), answered=27, abandoned=3, spread=timedelta(minutes=25)
    )
    second = calls(
        "sf2", "billing", at("10:30"), answered=20, abandoned=0, spread=timedelta(minutes=25)
    )
    post_and_wait(s, first + second, "billing", (at("10:00"), at("11:00")), offered=50)

    def logged() -> bool:  # the agents' states are counted too
        r = s.get(
            "/v1/kpis/agent/b01", **{"from": at("10:00").isoformat(), "to": at("12:00").isoformat()}
        )
        return r.status_code == 200 and r.json()["logged_in_seconds"] == 95 * 60

    assert wait_until(logged, 60)
    yield s
    s.stop()


def staffing(stack: Stack, kind: str, ident: str, start: datetime, end: datetime) -> dict[str, Any]:
    r = stack.get(f"/v1/staffing/{kind}/{ident}/intervals", **{"from": start.isoformat(),
                  "to": end.isoformat(), "granularity": "30m"})  # fmt: skip
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_scheduled_and_staffed_agents_per_half_hour_are_the_averages_worked_by_hand(
    center: Stack,
) -> None:
    body = staffing(center, "team", "billing", at("10:00"), at("12:00"))
    rows = body["intervals"]
    # b00 10:00-12:00 less a 11:00-11:15 break; b01 from 10:15
    assert [r["scheduled_agents"] for r in rows] == [1.5, 2.0, 1.5, 2.0]
    # b00 available but for 11:00-11:20; b01 from 10:25
    assert [r["staffed_agents"] for r in rows] == pytest.approx([1 + 5 / 30, 2.0, 1 + 1 / 3, 2.0])
    assert [r["logged_in_agents"] for r in rows] == pytest.approx([1 + 5 / 30, 2.0, 2.0, 2.0])
    assert [r["offered"] for r in rows] == [30, 20, 0, 0]


def test_required_agents_are_erlang_a_of_each_intervals_load_and_the_measured_patience(
    center: Stack,
) -> None:
    body = staffing(center, "team", "billing", at("10:00"), at("12:00"))
    # 47 answered after 5 s, 3 abandoned after 30 s: patience (47·5 + 3·30) / 3 s
    patience = patience_seconds(3, (47 * 5 + 3 * 30) * 1_000_000)
    assert body["patience_seconds"] == pytest.approx(patience)
    assert body["model"] == "erlang_a" and body["goal"] == {"target": 0.8, "seconds": 20}
    goal = Goal(target=0.8, seconds=20)
    rows = body["intervals"]
    for row, offered in zip(rows, [30, 20, 0, 0], strict=True):
        want = requirement(
            offered, 1800, 55.0 if offered else None, goal, patience, "erlang_a", None
        )
        assert want is not None and want.erlang_a is not None and want.erlang_c is not None
        assert row["required_agents"] == want.erlang_a.agents
        assert row["required_agents_erlang_c"] == want.erlang_c.agents
    assert rows[0]["aht_seconds"] == 55.0
    assert rows[0]["required_agents"] >= 1 and rows[2]["required_agents"] == 0
    # fit: 1 − Σ|scheduled − required| / Σ required, over the intervals that need anyone
    need = [r["required_agents"] for r in rows]
    miss = sum(abs(r["scheduled_agents"] - r["required_agents"]) for r in rows)
    assert body["schedule_fit"] == pytest.approx(1 - miss / sum(need))
    assert rows[2]["schedule_fit"] is None  # nothing required: no denominator


def test_next_weeks_forecast_is_this_weeks_calls_where_only_one_week_is_known(
    center: Stack,
) -> None:
    nxt = DAY + timedelta(days=7)
    body = staffing(center, "queue", "billing", at("10:00", nxt), at("11:00", nxt))
    rows = body["intervals"]
    # one week of history: its own weight, normalised, is the whole forecast
    assert [r["forecast_offered"] for r in rows] == pytest.approx([30.0, 20.0])
    assert [r["forecast_aht_seconds"] for r in rows] == pytest.approx([55.0, 55.0])
    assert rows[0]["forecast_required_agents"] >= rows[1]["forecast_required_agents"] >= 1
    # a queue has no agents of its own
    assert rows[0]["scheduled_agents"] is None and rows[0]["staffed_agents"] is None
    assert [d["forecast_wape"] for d in body["days"]] == [None]  # nothing came yet


def test_each_agents_adherence_and_attendance_worked_by_hand(center: Stack) -> None:
    span = {"from": at("00:00").isoformat(), "to": at("00:00", DAY + timedelta(days=1)).isoformat()}
    b00 = center.get("/v1/kpis/agent/b00", **span).json()["schedule"]
    # 120 min scheduled; out of adherence 11:15-11:20 (not ready in work time)
    assert b00["adherence_rate"] == pytest.approx(115 / 120)
    assert (b00["attendance_rate"], b00["late_shifts"], b00["absent_shifts"]) == (1.0, 0, 0)
    b01 = center.get("/v1/kpis/agent/b01", **span).json()["schedule"]
    # scheduled 10:15-12:00, logged in 10:25: ten minutes late (grace 5)
    assert b01["adherence_rate"] == pytest.approx(95 / 105)
    assert (b01["late_shifts"], b01["lateness_seconds"]) == (1, 600)
    assert b01["conformance_rate"] == pytest.approx(95 / 105)
    # a day off is no shift; an agent without a schedule has none
    assert center.get("/v1/kpis/agent/b02", **span).json()["schedule"] is None


def test_a_schedule_with_bad_rows_is_refused_whole_naming_each(center: Stack) -> None:
    before = center.get("/v1/schedules/uploads").json()["uploads"]
    bad = f"agent_id,date,start,end,activity\nb00,{DAY},10:00,11:00,lunhc\nzz,{DAY},10:00,11:00,work\n"
    r = httpx.post(f"{center.url}/v1/schedules", content=bad)
    assert r.status_code == 422
    assert r.json()["problems"] == [
        "line 2, column 5: unknown activity 'lunhc' (configured: break, coaching, lunch, "
        "meeting, offline, training, work; 'off' for a day off)",
        "line 3, column 1: agent 'zz' is not in the roster",
    ]
    assert center.get("/v1/schedules/uploads").json()["uploads"] == before


def test_a_new_upload_replaces_only_the_agent_days_it_holds_and_old_versions_stay_readable(
    center: Stack,
) -> None:
    later = DAY + timedelta(days=1)  # a day no other test reads
    first = f"agent_id,date,start,end\nb03,{later},09:00,17:00\nb04,{later},09:00,17:00\n"
    v1 = httpx.post(f"{center.url}/v1/schedules", content=first).json()["version"]
    second = f"agent_id,date,start,end\nb03,{later},13:00,21:00\n"
    v2 = httpx.post(f"{center.url}/v1/schedules", content=second).json()["version"]
    assert v2 > v1
    now = center.get("/v1/schedules", **{"from": str(later), "to": str(later)}).json()
    assert [(s["agent_id"], s["start"][11:16]) for s in now["segments"]] == [
        ("b03", "13:00"),
        ("b04", "09:00"),
    ]
    then = center.get("/v1/schedules", **{"from": str(later), "to": str(later), "as_of": v1}).json()
    assert [(s["agent_id"], s["start"][11:16]) for s in then["segments"]] == [
        ("b03", "09:00"),
        ("b04", "09:00"),
    ]
    uploads = center.get("/v1/schedules/uploads").json()["uploads"]
    assert [u["version"] for u in uploads[:2]] == [v2, v1]
    assert uploads[-1]["note"] == "week plan"


def test_payroll_rows_carry_attendance_and_score_it_and_a_later_schedule_is_an_adjustment(
    center: Stack,
) -> None:
    r = httpx.post(f"{center.url}/v1/periods/sday/close", params={"force": "true"}, json={})
    assert r.status_code == 201, r.text
    rows = {a["agent_id"]: a for a in center.get("/v1/periods/sday/agents").json()["items"]}
    assert (rows["b01"]["attendance_rate"], rows["b01"]["late_shifts"]) == (1.0, 1)
    assert rows["b00"]["adherence_rate"] == pytest.approx(115 / 120)
    # t05 missed the shift: the example scorecard's computed attendance and absence
    t05 = rows["t05"]
    assert (t05["attendance_rate"], t05["absent_shifts"]) == (0.0, 1)
    assert (t05["score.attendance"], t05["penalty.absences"]) == (0.0, 5.0)
    assert rows["b02"]["scheduled_shifts"] is None  # a day off: no schedule in the period
    csv_text = center.get("/v1/periods/sday/agents", format="csv").text
    assert "attendance_rate" in csv_text.splitlines()[0]
    # the planner gives t05 the day off after all: an adjustment until restated
    r = httpx.post(
        f"{center.url}/v1/schedules", content=f"agent_id,date,start,end,activity\nt05,{DAY},,,off\n"
    )
    assert r.status_code == 201, r.text
    items = center.get("/v1/periods/sday/adjustments").json()["items"]
    changed = {(i["agent_id"], i["field"]): (i["closed"], i["current"]) for i in items}
    assert changed[("t05", "absent_shifts")] == (1, None)
    assert changed[("t05", "penalty.absences")] == (5.0, 0.0)


def test_the_last_half_hours_required_staffed_and_scheduled_agents_are_in_metrics(
    center: Stack,
) -> None:
    now = datetime.now(SHANGHAI).replace(second=0, microsecond=0)
    start = now - timedelta(hours=1)
    plan = f"agent_id,date,start,end\ns00,{start.date()},{start:%H:%M},{now + timedelta(hours=1):%H:%M}\n"
    assert httpx.post(f"{center.url}/v1/schedules", content=plan).status_code == 201
    here = now - timedelta(minutes=25)
    on = {"event_id": "st-s00-now", "type": "agent.state", "occurred_at": here.isoformat(),
          "agent_id": "s00", "state": "available"}  # fmt: skip
    events = calls("sfnow", "sales", now - timedelta(minutes=20), answered=12, abandoned=0)
    post_and_wait(center, [on, *events], "sales", (now - timedelta(minutes=20), now + timedelta(minutes=1)),
                  offered=12)  # fmt: skip

    def gauges() -> dict[str, float] | None:
        text = center.get("/metrics").text
        out = {}
        for name in ("required", "staffed", "scheduled"):
            prefix = f'callkpi_{name}_agents{{id="sales",kind="team"}} '
            line = next((x for x in text.splitlines() if x.startswith(prefix)), None)
            if line is None:
                return None
            out[name] = float(line.split()[-1])
        return out if out["staffed"] > 0 else None

    got = wait_until(gauges, 30)
    assert got is not None
    # s00 is scheduled for the whole half hour, and available for 25 minutes of it
    # (up to now); 12 calls of 55 s in half an hour need an agent
    assert got["scheduled"] == 1.0
    assert 0.75 < got["staffed"] <= 1.0
    assert got["required"] >= 1


def test_a_staffing_range_longer_than_a_month_or_in_whole_days_is_refused_naming_why(
    center: Stack,
) -> None:
    r = center.get("/v1/staffing/team/billing/intervals", **{"from": at("00:00").isoformat(),
                   "to": at("00:00", DAY + timedelta(days=32)).isoformat()})  # fmt: skip
    assert r.status_code == 422 and "at most 31 days" in r.json()["detail"]
    r = center.get("/v1/staffing/team/billing/intervals", **{"from": at("00:00").isoformat(),
                   "to": at("01:00").isoformat(), "granularity": "1d"})  # fmt: skip
    assert r.status_code == 422 and "granularity" in r.json()["detail"]

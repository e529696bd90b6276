"""GET /v1/reports through the real pipeline: one team's half hours with the
alert line in force and how each stands against it, the agents required,
scheduled and staffed, the week before; and the CSV and XLSX downloads equal
to the JSON, row for row."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.core.settings import load_settings
from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.support.databases import EXAMPLE_CONFIG, new_database, stack_env
from tests.support.dips import calls
from tests.support.stack import Stack, post_and_wait

pytestmark = pytest.mark.slow
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Two days back at any hour the suite runs (a fixed date would leave the call
# state's retention); the week before it for the comparison
DAY = datetime.now(SHANGHAI).date() - timedelta(days=2)
WEEK_BEFORE = DAY - timedelta(days=7)
SCHEDULE = f"agent_id,date,start,end\nb00,{DAY},10:00,12:00\nb01,{DAY},10:30,12:00\n"
EXAMPLE = load_settings(EXAMPLE_CONFIG)


def at(clock: str, day: date = DAY) -> datetime:
    return datetime.combine(day, datetime.strptime(clock, "%H:%M").time(), SHANGHAI)


def span(a: datetime, b: datetime, **extra: Any) -> dict[str, Any]:
    return {"from": a.isoformat(), "to": b.isoformat(), **extra}


@pytest.fixture(scope="module")
def center(pg: EmbeddedPostgres, broker: EmbeddedBroker) -> Iterator[Stack]:
    s = Stack(stack_env(broker, new_database(pg), "reports"), logs="reports-").start()
    r = httpx.post(f"{s.url}/v1/schedules", content=SCHEDULE)
    assert r.status_code == 201, r.text
    states = [
        {"event_id": f"rs-{a}-{t}", "type": "agent.state", "agent_id": a, "state": st,
         "occurred_at": at(t).isoformat()}
        for a, t, st in [("b00", "10:00", "available"), ("b00", "12:00", "logged_out")]
    ]  # fmt: skip
    assert s.post(states).status_code == 202
    # 10:00-10:30 answers 27 of 30 (90%), 10:30-11:00 10 of 20 (50%): the second
    # is under the line on enough calls to alert; the week before, 8 of 10
    events = (
        calls("rp1", "billing", at("10:00"), answered=27, abandoned=3, spread=timedelta(minutes=25))
        + calls("rp2", "billing", at("10:30"), answered=10, abandoned=10,
                spread=timedelta(minutes=25))
        + calls("rp0", "billing", at("10:00", WEEK_BEFORE), answered=8, abandoned=2,
                spread=timedelta(minutes=20))
    )  # fmt: skip
    post_and_wait(s, events, "billing", (at("10:00"), at("11:00")), offered=50)
    post_and_wait(s, [], "billing", (at("10:00", WEEK_BEFORE), at("11:00", WEEK_BEFORE)),
                  offered=10)  # fmt: skip
    yield s
    s.stop()


def report(stack: Stack, **params: Any) -> dict[str, Any]:
    params.setdefault("granularity", "30m")
    r = stack.get("/v1/reports/team/billing", **span(at("10:00"), at("12:00")) | params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_each_half_hour_carries_its_alert_line_and_where_it_stands(center: Stack) -> None:
    body = report(center)
    rows = body["rows"]
    assert [r["offered"] for r in rows] == [30, 20, 0, 0]
    assert [r["answer_rate"] for r in rows] == [0.9, 0.5, None, None]
    rule = EXAMPLE.alerts.rules[0]  # answer-rate-team: every team
    assert body["lines"]["answer_rate"] == {"rule": "answer-rate-team", "direction": "below",
        "min_calls": 20, "peak": 0.85, "off_peak": 0.90}  # fmt: skip
    assert body["lines"]["service_level"] is None  # no rule watches it
    for r in rows:
        cls = EXAMPLE.alerts.schedule.class_at(datetime.fromisoformat(r["from"]), SHANGHAI)
        assert r["schedule_class"] == cls
        assert r["answer_rate_line"] == rule.thresholds.in_force(cls)
        assert r["service_level_line"] is None and r["service_level_status"] is None
    # 90% is under neither 85% (peak) nor 90% (off-peak); 50% on 20 calls
    # (min_calls 20) would alert; no calls, no rate, nothing to judge
    assert [r["answer_rate_status"] for r in rows] == ["ok", "below", None, None]


def test_a_report_row_holds_the_figures_and_the_staffing_the_api_gives_for_its_interval(
    center: Stack,
) -> None:
    body = report(center)
    q = span(at("10:00"), at("12:00"), granularity="30m")
    kpis = center.get("/v1/kpis/team/billing/intervals", **q).json()["intervals"]
    staff = center.get("/v1/staffing/team/billing/intervals", **q).json()["intervals"]
    names = [c["name"] for c in body["columns"]]
    assert "presented" not in names and "required_agents" in names  # a team's columns
    for row, k, st in zip(body["rows"], kpis, staff, strict=True):
        assert (row["from"], row["to"]) == (k["from"], k["to"])
        for name in ("offered", "answered", "abandoned", "answer_rate", "service_level",
                     "asa_seconds", "aht_seconds", "occupancy", "fcr_rate_provisional"):  # fmt: skip
            assert row[name] == k[name], name
        for name in ("required_agents", "scheduled_agents", "staffed_agents"):
            assert row[name] == st[name], name
    # b00 from 10:00, b01 from 10:30
    assert [r["scheduled_agents"] for r in body["rows"]] == [1.0, 2.0, 2.0, 2.0]


def test_the_week_before_is_the_same_weekday_and_interval(center: Stack) -> None:
    rows = report(center)["rows"]
    assert [r["last_week_offered"] for r in rows] == [10, 0, 0, 0]
    assert [r["last_week_answered"] for r in rows] == [8, 0, 0, 0]
    assert rows[0]["last_week_answer_rate"] == 0.8 and rows[1]["last_week_answer_rate"] is None


def test_a_day_granularity_spans_mixed_hours_without_one_line_or_staffing(center: Stack) -> None:
    body = report(
        center,
        granularity="1d",
        **span(at("00:00", WEEK_BEFORE), at("00:00", DAY + timedelta(days=1))),
    )
    assert body["staffing"] is False and body["compared"] is True
    days = body["rows"]
    assert len(days) == 8
    assert (days[0]["offered"], days[-1]["offered"]) == (10, 50)
    weekday = DAY.weekday() < 5
    assert days[-1]["schedule_class"] == ("mixed" if weekday else "off_peak")
    assert days[-1]["answer_rate_line"] == (None if weekday else 0.90)
    assert all(d["required_agents"] is None for d in days)
    assert days[-1]["last_week_offered"] == 10


def test_a_range_of_local_dates_is_midnight_to_midnight_in_the_centers_zone(
    center: Stack,
) -> None:
    by_dates = report(
        center, granularity="1d", **{"from": str(DAY), "to": str(DAY + timedelta(days=1))}
    )
    assert by_dates["from"] == at("00:00").isoformat()
    assert [r["offered"] for r in by_dates["rows"]] == [50]
    r = center.get("/v1/reports/team/billing", **{"from": "2026-02-30", "to": str(DAY)})
    assert (
        r.status_code == 422 and r.json()["detail"] == "from: not a date (YYYY-MM-DD): '2026-02-30'"
    )


def test_weeks_and_months_sum_their_days(center: Stack) -> None:
    q = span(at("00:00", WEEK_BEFORE - timedelta(days=40)), at("00:00", DAY + timedelta(days=1)))
    weeks = report(center, granularity="1w", **q)["rows"]
    months = report(center, granularity="1mo", **q)
    assert sum(w["offered"] for w in weeks) == sum(m["offered"] for m in months["rows"]) == 60
    assert all(datetime.fromisoformat(w["from"]).weekday() == 0 for w in weeks[1:])
    assert all(datetime.fromisoformat(m["from"]).day == 1 for m in months["rows"][1:])
    assert months["compared"] is False
    assert all(m["last_week_offered"] is None for m in months["rows"])


def test_the_csv_is_the_reports_rows_column_for_column(center: Stack) -> None:
    body = report(center)
    r = center.get("/v1/reports/team/billing", **span(at("10:00"), at("12:00"),
                   granularity="30m", format="csv"))  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    disposition = r.headers["content-disposition"]
    assert disposition == f'attachment; filename="callkpi-team-billing-{DAY}-30m.csv"'
    rows = list(csv.DictReader(io.StringIO(r.text)))
    names = [c["name"] for c in body["columns"]]
    assert list(rows[0]) == names
    for got, want in zip(rows, body["rows"], strict=True):
        assert got == {n: "" if want[n] is None else str(want[n]) for n in names}


def test_the_xlsx_is_the_reports_rows_under_their_labels_as_numbers(center: Stack) -> None:
    from openpyxl import load_workbook

    body = report(center)
    r = center.get("/v1/reports/team/billing", **span(at("10:00"), at("12:00"),
                   granularity="30m", format="xlsx"))  # fmt: skip
    assert r.status_code == 200 and r.headers["content-disposition"].endswith('30m.xlsx"')
    book = load_workbook(io.BytesIO(r.content))
    sheet = book["Report"]
    table = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert table[0] == [c["label"] for c in body["columns"]]
    for got, want in zip(table[1:], body["rows"], strict=True):
        for c, value in zip(body["columns"], got, strict=True):
            expected = want[c["name"]]
            if c["unit"] == "time":
                expected = datetime.fromisoformat(expected).replace(tzinfo=None)
            assert value == expected, c["name"]
    rate = body["columns"].index(next(c for c in body["columns"] if c["name"] == "answer_rate"))
    assert sheet.cell(row=2, column=rate + 1).number_format == "0.0%"
    about = dict(book["About"].iter_rows(values_only=True))
    assert about["Time zone"] == "Asia/Shanghai" and about["Granularity"] == "30m"


def test_a_long_range_at_fine_intervals_and_an_unknown_granularity_are_refused_naming_them(
    center: Stack,
) -> None:
    long = span(at("00:00", DAY - timedelta(days=40)), at("00:00", DAY), granularity="15m")
    r = center.get("/v1/reports/team/billing", **long)
    assert r.status_code == 422 and "at most 31 days at 15m" in r.json()["detail"]
    r = center.get("/v1/reports/team/billing", **span(at("10:00"), at("12:00"), granularity="2h"))
    assert r.status_code == 422 and r.json()["detail"].startswith("granularity: must be one of")
    r = center.get("/v1/reports/team/nobody", **span(at("10:00"), at("12:00")))
    assert r.status_code == 404


def test_an_agents_report_has_the_agents_columns_and_no_line(center: Stack) -> None:
    r = center.get("/v1/reports/agent/b00", **span(at("10:00"), at("12:00"), granularity="1h"))
    assert r.status_code == 200, r.text
    body = r.json()
    names = [c["name"] for c in body["columns"]]
    assert "presented" in names and "scheduled_agents" in names
    assert not {"offered", "answer_rate_line", "required_agents"} & set(names)
    assert body["lines"] == {"answer_rate": None, "service_level": None}
    # b00 is scheduled 10:00-12:00 and available from 10:00
    assert [row["scheduled_agents"] for row in body["rows"]] == [1.0, 1.0]
    assert [row["staffed_agents"] for row in body["rows"]] == [1.0, 1.0]

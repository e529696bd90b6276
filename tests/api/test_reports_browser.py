"""The reports page and the calls behind a figure in a real browser (Debian's
Chromium through Playwright, as the wallboard's tests), against a real stack
with tokens on: yesterday's half hours of a team with the alert line and its
staffing, a click on the bad interval landing on its calls, and the CSV and
XLSX downloads holding exactly the rows shown. Screenshots go to
test-artifacts/ (docs/reports*.png are copies)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.core.settings import load_settings
from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.support.browser import example_with_tokens, launched, log_in
from tests.support.databases import ARTIFACTS, EXAMPLE_CONFIG, new_database, stack_env
from tests.support.dips import calls
from tests.support.stack import Stack, post_and_wait

pytestmark = pytest.mark.slow

ADMIN = "ck_reports-test-admin"
READ = "ck_reports-test-read-token"
SHANGHAI = ZoneInfo("Asia/Shanghai")
TODAY = datetime.now(SHANGHAI).date()
YESTERDAY = TODAY - timedelta(days=1)
EXAMPLE = load_settings(EXAMPLE_CONFIG)


def at(clock: str, day: date = YESTERDAY) -> datetime:
    return datetime.combine(day, datetime.strptime(clock, "%H:%M").time(), SHANGHAI)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launched()


@pytest.fixture(scope="module")
def center(pg: EmbeddedPostgres, broker: EmbeddedBroker, tmp_path_factory: Any) -> Iterator[Stack]:
    path = example_with_tokens(tmp_path_factory.mktemp("reports"), ADMIN, READ)
    env = stack_env(broker, new_database(pg), "reportsui", CALLKPI_CONFIG=str(path))
    s = Stack(env, token=ADMIN, logs="reportsui-").start()
    schedule = (
        f"agent_id,date,start,end\nb00,{YESTERDAY},09:00,12:00\nb01,{YESTERDAY},10:00,12:00\n"
    )
    r = httpx.post(f"{s.url}/v1/schedules", content=schedule, headers=s.headers)
    assert r.status_code == 201, r.text
    # 10:00-10:30 answers 27 of 30; 10:30-11:00 only 10 of 20: the bad interval
    events = calls("ui1", "billing", at("10:00"), answered=27, abandoned=3,
                   spread=timedelta(minutes=25)) + calls(
        "ui2", "billing", at("10:30"), answered=10, abandoned=10, spread=timedelta(minutes=25))  # fmt: skip
    post_and_wait(s, events, "billing", (at("10:00"), at("11:00")), offered=50)
    yield s
    s.stop()


@pytest.fixture
def page(center: Stack, browser: Any, request: Any, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    yield pg
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def open_yesterday(page: Any, center: Stack) -> Any:
    from playwright.sync_api import expect

    query = f"kind=team&id=billing&from={YESTERDAY}&to={YESTERDAY}&granularity=30m"
    log_in(page, f"{center.url}/reports?{query}", READ)
    rows = page.locator("#table tbody tr")
    expect(rows).to_have_count(48, timeout=15_000)
    return rows


def row_at(page: Any, clock: str) -> Any:
    return page.locator(f'#table tbody tr[data-from="{at(clock).isoformat()}"]')


def cell(row: Any, column: str) -> Any:
    return row.locator(f'td[data-col="{column}"]')


def line_at(clock: str) -> str:
    cls = EXAMPLE.alerts.schedule.class_at(at(clock), SHANGHAI)
    value = EXAMPLE.alerts.rules[0].thresholds.in_force(cls)
    assert value is not None
    return f"{value * 100:.1f}%"


def test_yesterdays_half_hours_show_the_alert_line_and_staffing_and_mark_the_bad_one(
    page: Any, center: Stack
) -> None:
    from playwright.sync_api import expect

    open_yesterday(page, center)
    expect(page.locator("#heading")).to_contain_text(f"账务班组 Billing · {YESTERDAY}")
    good, bad = row_at(page, "10:00"), row_at(page, "10:30")
    expect(cell(good, "answer_rate")).to_have_text("90.0%")
    expect(cell(bad, "answer_rate")).to_have_text("50.0%")
    expect(cell(bad, "answer_rate_line")).to_have_text(line_at("10:30"))
    expect(cell(bad, "answer_rate_status")).to_have_text("below")
    expect(bad).to_have_class("below")
    expect(good).not_to_have_class("below")
    # b00 from 09:00, b01 from 10:00: scheduled 2 at 10:30; the load requires some
    expect(cell(bad, "scheduled_agents")).to_have_text("2.0")
    expect(cell(bad, "required_agents")).not_to_have_text("—")
    for chart in ("calls", "rates", "times", "staffing"):
        expect(page.locator(f"#chart-{chart} canvas")).to_have_count(1)
    # the alert line is a series of the rates chart, the week before another
    legend = page.locator("#chart-rates .u-legend")
    expect(legend).to_contain_text("Answer-rate line")
    expect(legend).to_contain_text("Answer rate, week before")
    page.screenshot(path=str(ARTIFACTS / "reports.png"), full_page=True)


def test_a_click_on_the_bad_intervals_abandons_lands_on_those_calls(
    page: Any, center: Stack
) -> None:
    from playwright.sync_api import expect

    open_yesterday(page, center)
    cell(row_at(page, "10:30"), "abandoned").locator("a").click()
    expect(page).to_have_url(re.compile(r"/reports/calls\?.*outcome=abandoned"))
    rows = page.locator("#table tbody tr")
    expect(rows).to_have_count(10, timeout=10_000)
    assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.outcome)")) == {"abandoned"}
    expect(page.locator("#what")).to_have_text(
        f"abandoned calls, team billing, {YESTERDAY} 10:30–11:00"
    )
    waits = page.locator('td[data-col="wait_seconds"]').all_inner_texts()
    assert waits == ["30 s"] * 10
    with page.expect_download() as info:
        page.click("#csv")
    text = Path(info.value.path()).read_text()
    got = list(csv.DictReader(io.StringIO(text)))
    assert len(got) == 10 and {r["outcome"] for r in got} == {"abandoned"}
    assert sorted(r["call_id"] for r in got) == sorted(
        rows.evaluate_all("rs => rs.map(r => r.dataset.call)")
    )
    page.screenshot(path=str(ARTIFACTS / "reports-calls.png"), full_page=True)


def test_the_csv_and_xlsx_downloads_hold_the_rows_the_table_shows(page: Any, center: Stack) -> None:
    from openpyxl import load_workbook

    rows = open_yesterday(page, center)
    shown = rows.evaluate_all("rs => rs.map(r => r.dataset.from)")
    answer_rates = page.locator('#table tbody td[data-col="answer_rate"]').all_inner_texts()
    headers = page.locator("#table thead th").all_inner_texts()
    with page.expect_download() as info:
        page.click("#csv")
    assert info.value.suggested_filename == f"callkpi-team-billing-{YESTERDAY}-30m.csv"
    got = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    assert [r["from"] for r in got] == shown
    assert [f"{float(r['answer_rate']) * 100:.1f}%" if r["answer_rate"] else "—"
            for r in got] == answer_rates  # fmt: skip
    with page.expect_download() as info:
        page.click("#xlsx")
    assert info.value.suggested_filename.endswith("-30m.xlsx")
    sheet = load_workbook(io.BytesIO(Path(info.value.path()).read_bytes()))["Report"]
    table = list(sheet.iter_rows(values_only=True))
    assert list(table[0]) == headers
    assert len(table) - 1 == len(shown)
    rate = headers.index("Answer rate")
    assert [f"{r[rate] * 100:.1f}%" if r[rate] is not None else "—"
            for r in table[1:]] == answer_rates  # fmt: skip


def test_today_and_a_range_of_days_are_a_click_away_and_days_carry_no_staffing(
    page: Any, center: Stack
) -> None:
    from playwright.sync_api import expect

    open_yesterday(page, center)
    page.click("#today")
    expect(page.locator("#heading")).to_contain_text(str(TODAY))
    expect(page.locator("#table tbody tr").first).to_have_attribute(
        "data-from", at("00:00", TODAY).isoformat()
    )
    page.fill("#day-from", str(YESTERDAY))
    page.fill("#day-to", str(TODAY))
    page.select_option("#granularity", "1d")
    page.click("#show")
    rows = page.locator("#table tbody tr")
    expect(rows).to_have_count(2)
    expect(cell(rows.first, "offered")).to_have_text("50")
    expect(page.locator("#chart-staffing")).to_be_hidden()
    expect(page.locator("#note")).to_contain_text("Staffing is per interval of an hour or less.")
    assert "granularity=1d" in page.url and READ not in page.url


def test_printed_the_report_keeps_charts_and_table_and_drops_the_controls(
    page: Any, center: Stack
) -> None:
    from playwright.sync_api import expect

    open_yesterday(page, center)
    page.emulate_media(media="print")
    expect(page.locator("#pick")).to_be_hidden()
    expect(page.locator("footer")).to_be_hidden()
    expect(page.locator("#chart-rates canvas")).to_be_visible()
    expect(page.locator("#table tbody tr").first).to_be_visible()
    # the table fits the printed page's width (277 mm at 96 px per inch)
    width = page.locator("#table").evaluate("t => t.getBoundingClientRect().width")
    assert width <= 277 / 25.4 * 96, width
    pdf = page.pdf(format="A4", landscape=True)
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000

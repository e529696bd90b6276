"""`callkpi dev --simulate`: the one-command demo, exactly as `make run RUSH=b00`
starts it: live figures, then the previous pay period (filled by the backfill)
closed and its payroll CSV downloaded with scores, as the banner tells the user;
and the rushing agent named by the listening sample, an alert and the
leaderboard."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil

from services.cli.dev import backfill_rate, payroll_banner, payroll_plan, qa_banner
from services.core.settings import load_settings
from services.devstack import free_port
from tests.support.browser import closing_browser
from tests.support.databases import ARTIFACTS, EXAMPLE_CONFIG, ROOT
from tests.support.sse import Feed
from tests.support.stack import wait_until

SHANGHAI = load_settings(EXAMPLE_CONFIG).tz


def test_on_the_first_of_a_month_the_demo_closes_the_month_before_last_and_says_when_the_last_closes() -> (
    None
):
    settings = load_settings(EXAMPLE_CONFIG)
    now = datetime(2026, 12, 1, 0, 30, tzinfo=SHANGHAI)
    plan = payroll_plan(settings, now)
    assert plan.previous is not None and plan.closable is not None
    assert (plan.previous.id, plan.closable.id) == ("2026-11", "2026-10")
    banner = payroll_banner("http://h", plan, settings, backfill=61)
    assert "2026-11 can be closed from 2026-12-04 06:00" in banner
    assert "curl -X POST http://h/v1/periods/2026-10/close" in banner
    assert "2026-11/close" not in banner


def test_once_the_fcr_windows_and_grace_have_passed_the_demo_closes_the_previous_month() -> None:
    settings = load_settings(EXAMPLE_CONFIG)
    plan = payroll_plan(settings, datetime(2026, 12, 4, 6, 0, tzinfo=SHANGHAI))
    assert plan.previous is not None and plan.closable is not None
    assert plan.closable.id == plan.previous.id == "2026-11"
    banner = payroll_banner("http://h", plan, settings, backfill=3)
    assert "can be closed from" not in banner
    assert "curl -X POST http://h/v1/periods/2026-11/close" in banner


def test_with_a_rush_the_console_names_the_sample_of_the_rushed_days_and_the_agents_alerts() -> (
    None
):
    settings = load_settings(EXAMPLE_CONFIG)
    now = datetime(2026, 12, 1, 0, 30, 40, tzinfo=SHANGHAI)
    plain = qa_banner("http://h", settings, now, [])
    assert plain == "  QA sample   http://h/v1/qa/sample?team=billing&period=2026-12\n"
    rushed = qa_banner("http://h", settings, now, ["t03"])
    assert (
        "rushing     t03 for the last 3 days: its sample http://h/v1/qa/sample?team=tech"
        "&from=2026-11-28T00%3A32%3A00%2B08%3A00&to=2026-12-01T00%3A30%3A00%2B08%3A00"
    ) in rushed
    assert "http://h/v1/alerts?kind=agent&id=t03" in rushed


def look_at_the_reports_page(url: str, day: str) -> None:
    """The demo's /reports in Chromium (no token: the example config has none):
    yesterday's half hours of the tech team, a click on the worst one's offered
    calls, and its CSV. The screenshot is docs/reports.png's source."""
    from playwright.sync_api import expect

    with closing_browser() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(f"{url}?kind=team&id=tech&from={day}&to={day}&granularity=30m")
        rows = page.locator("#table tbody tr")
        expect(rows).to_have_count(48, timeout=30_000)
        expect(page.locator("#chart-staffing canvas")).to_have_count(1)
        page.screenshot(path=str(ARTIFACTS / "reports-demo.png"), full_page=False)
        rates = page.locator('#table tbody td[data-col="answer_rate"]').all_inner_texts()
        worst = min(
            range(48), key=lambda i: float(rates[i].rstrip("%")) if rates[i] != "—" else 101
        )
        offered = rows.nth(worst).locator('td[data-col="offered"]')
        n = int(offered.inner_text())
        offered.locator("a").click()
        expect(page.locator("#table tbody tr")).to_have_count(n, timeout=30_000)
        with page.expect_download() as info:
            page.click("#csv")
        assert len(Path(info.value.path()).read_text().splitlines()) == n + 1  # and a header


def the_rushing_agent_is_pointed_at(base: str, banner: list[str]) -> None:
    """`--rush b00`: b00's calls in the history's last 3 days and live at 60% of
    its usual talk. The sample of those days the console names puts it first
    with talk time as the reason (nobody else has that reason), the example's
    `rushed-calls` rule fires for it alone, and the leaderboard marks it."""
    assert any(line.strip().startswith(f"QA sample   {base}/v1/qa/sample?team=billing&period=")
               for line in banner)  # fmt: skip
    rushing = next(line for line in banner if line.strip().startswith("rushing     b00"))
    url = re.search(r"(http://\S+/v1/qa/sample\?\S+)", rushing)
    assert url, rushing
    sample = httpx.get(url[1], timeout=120).json()
    first = sample["sample"][0]
    talk = {r["figure"]: r for r in first["reasons"]}.get("avg_talk_seconds")
    assert first["agent"] == "b00" and talk is not None, sample["sample"][:2]
    assert talk["change"] < -0.2 and talk["score"] < -3.5, talk
    assert first["calls"] and all(c["talk_seconds"] is not None for c in first["calls"])
    others = [s["agent"] for s in sample["sample"][1:]
              if "avg_talk_seconds" in (r["figure"] for r in s["reasons"])]  # fmt: skip
    assert others == []

    def firing() -> list[Any]:
        r = httpx.get(f"{base}/v1/alerts", params={"kind": "agent", "state": "firing"}, timeout=10)
        return list(r.json()["items"]) if r.status_code == 200 else []

    # the rule's `for` is 2 minutes from the first evaluation over the history
    fired = wait_until(firing, timeout=240, interval=2)
    assert [(a["entity_id"], a["field"]) for a in fired] == [("b00", "avg_talk_seconds_change")]
    assert fired[0]["observed_value"] < -0.2
    if not (shutil.which("chromium") or os.environ.get("CALLKPI_CHROMIUM")):
        print("\nChromium is not installed: the leaderboard's marker was not looked at")
        return
    from playwright.sync_api import expect

    with closing_browser() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/wallboard/agents?team=billing")
        expect(page.locator('tr[data-agent="b00"] .qa-flag')).to_contain_text("talk time −")
        expect(page.locator(".qa-flag")).to_have_count(1)
        page.screenshot(path=str(ARTIFACTS / "leaderboard-rush.png"))


def test_a_history_longer_than_a_month_is_simulated_at_a_lower_rate() -> None:
    assert backfill_rate(3) == backfill_rate(31) == 100
    assert backfill_rate(62) == 50


def test_dev_simulate_backfills_the_closable_period_which_closes_into_a_scored_csv(
    tmp_path: Path,
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "dev", "--config", str(EXAMPLE_CONFIG),
         "--port", str(port), "--simulate", "--data-dir", str(tmp_path / "data"),
         "--rush", "b00"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(line.decode() for line in iter(proc.stdout.readline, b"")),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    started = time.monotonic()
    base = f"http://127.0.0.1:{port}"

    def offered() -> int:
        try:
            return int(
                httpx.get(f"{base}/v1/kpis/center/all?window=15m", timeout=2).json()["offered"]
            )
        except (httpx.HTTPError, KeyError, ValueError):
            return 0

    try:
        # the history is posted first, then the live calls: live figures mean the
        # worker has counted the history too (each partition is read in order)
        assert wait_until(lambda: offered() > 0, timeout=240, interval=1), "".join(lines[-20:])
        took = time.monotonic() - started
        assert any(line.startswith("backfill: done") for line in lines), "".join(lines[-20:])
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3, f"expected worker, simulator, broker, postgres ({took:.0f} s)"

        close = next(line.split()[-1] for line in lines if "curl -X POST" in line)
        period = re.search(r"/v1/periods/([^/]+)/close$", close)
        assert period, close
        r = httpx.post(close, timeout=60)
        assert r.status_code == 201, r.text
        download = next(re.search(r"'(.+)'", line) for line in lines if "curl -o" in line)
        assert download
        table = list(csv.DictReader(io.StringIO(httpx.get(download[1], timeout=60).text)))

        # the simulated agents work a planned roster: required against scheduled
        # and staffed agents yesterday and today (yesterday: the backfill's, so a
        # run just after midnight has calls to require agents for), and the
        # schedule's figures in the payroll rows
        today = datetime.now(load_settings(EXAMPLE_CONFIG).tz).replace(hour=0, minute=0, second=0,
                                                                      microsecond=0)  # fmt: skip
        body = httpx.get(f"{base}/v1/staffing/team/billing/intervals", timeout=30, params={
            "from": (today - timedelta(days=1)).isoformat(),
            "to": (today + timedelta(days=1)).isoformat()}).json()  # fmt: skip
        rows = body["intervals"]
        assert len(rows) == 96 and all(r["scheduled_agents"] > 0 for r in rows)
        assert body["schedule_version"] >= 1
        assert any(r["required_agents"] for r in rows if r["offered"])

        # a newcomer's /reports: yesterday and today of every team, with the
        # alert line and staffing, and the calls behind the worst half hour
        reports = next(line.split()[1] for line in lines if line.strip().startswith("reports"))
        assert reports == f"{base}/reports"
        yesterday = (today - timedelta(days=1)).date()
        for team in ("billing", "tech", "sales"):
            days = {"from": str(yesterday), "to": str(today.date() + timedelta(days=1))}
            rep = httpx.get(f"{base}/v1/reports/team/{team}", timeout=60,
                            params={**days, "granularity": "30m"}).json()  # fmt: skip
            rows = [r for r in rep["rows"] if r["offered"]]
            assert len(rep["rows"]) == 96, team
            # yesterday: calls in most half hours, night included (sales is small at night)
            assert sum(1 for r in rep["rows"][:48] if r["offered"]) >= 36, team
            assert all(
                r["answer_rate_line"] in (0.85, 0.90)
                for r in rows
                if r["schedule_class"] != "closed"
            )
            # staffing in every half hour (a small team may have nobody rostered at night)
            assert all(r["scheduled_agents"] is not None for r in rows), team
            assert any(r["scheduled_agents"] for r in rows) and any(
                r["required_agents"] for r in rows
            )
            assert any(r["last_week_offered"] for r in rows), team  # the backfill's week before
            # an interval whose calls have all arrived (not the one in progress)
            ended = [
                r
                for r in rows
                if datetime.fromisoformat(r["to"]) < datetime.now(SHANGHAI) - timedelta(minutes=2)
            ]
            worst = min(ended, key=lambda r: (r["answer_rate"] or 0, r["from"]))
            calls = httpx.get(f"{base}/v1/calls", timeout=30, params={"from": worst["from"],
                              "to": worst["to"], "team": team, "limit": 1000}).json()  # fmt: skip
            assert len(calls["items"]) == worst["offered"], (team, worst["from"])
        if shutil.which("chromium") or os.environ.get("CALLKPI_CHROMIUM"):
            look_at_the_reports_page(reports, str(yesterday))
        else:
            print("\nChromium is not installed: /reports was read through the API only")

        # the console names the wallboard, and its feed moves with the simulator
        board = next(line.split()[1] for line in lines if line.strip().startswith("wallboard"))
        assert httpx.get(board, timeout=10).status_code == 200
        with Feed(f"{base}/v1/stream", {"entity": "center:all"}) as feed:
            first = feed.next("snapshot").data["entities"][0]
            # generous: the worker may still be finalising the month's FCR windows
            moved = feed.next("update", timeout=120, where=lambda f: f.data != first)
        assert moved.data["today"]["offered"] >= first["today"]["offered"]

        the_rushing_agent_is_pointed_at(base, lines)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(10)
    out = "".join(lines)
    assert "figures     http://127.0.0.1" in out
    assert "wallboard   http://127.0.0.1" in out
    assert "callkpi stopped." in out

    roster = load_settings(EXAMPLE_CONFIG).roster("agent")
    assert sorted(row["agent_id"] for row in table) == sorted(roster)
    for row in table:
        assert row["version"] == "1" and row["period"] == period[1]
        assert int(row["answered"]) > 0, row["agent_id"]  # the whole period was simulated
        assert row["scorecard"] in ("customer_service", "sales")
        assert int(row["scheduled_shifts"]) > 0 and 0 < float(row["attendance_rate"]) <= 1
        # every agent scored; a total may fall below 0 (penalties are deducted
        # without a floor: an agent absent four times and complained about twice)
        assert row["score_total"] != ""
    totals = sorted(float(row["score_total"]) for row in table)
    assert totals[len(totals) // 2] > 50, totals  # the median agent scores most items well
    sellers = [row for row in table if row["scorecard"] == "sales"]
    assert sellers and all(float(row["commission"]) > 0 for row in sellers)

    time.sleep(1)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left running: {[c.cmdline()[:3] for c in alive]}"
    # Postgres is daemonised by pg_ctl (not a child); a clean stop removes its pid file
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()

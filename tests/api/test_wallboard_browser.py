"""The wallboard in a real browser: Debian's Chromium driven by Playwright
(headless, kept off the network), against a real stack with tokens on and an
answer-rate rule that fires within seconds. Screenshots go to test-artifacts/.

Skips, saying why, only where Chromium is not installed (`make test` installs
Debian's package where it can: as root with apt)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.support.browser import example_with_tokens, launched
from tests.support.browser import log_in as browser_log_in
from tests.support.databases import ARTIFACTS, new_database, stack_env
from tests.support.dips import calls
from tests.support.stack import Stack

pytestmark = pytest.mark.slow

ADMIN = "ck_wallboard-test-admin"
READ = "ck_wallboard-test-read-token"
SHANGHAI = ZoneInfo("Asia/Shanghai")  # the example config's zone
# what a page may take to show posted events: the bound for a wallboard
WITHIN_MS = 3000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launched()


@pytest.fixture(scope="module")
def board(pg: EmbeddedPostgres, broker: EmbeddedBroker, tmp_path_factory: Any) -> Iterator[Stack]:
    everyday = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    alerts = {
        # peak around the clock, so the test does not depend on when it runs
        "schedule": {"peak": [{"days": everyday, "from": "00:00", "to": "24:00"}]},
        "rules": [
            {"id": "billing-answer-rate", "kind": "team", "ids": ["billing"],
             "thresholds": {"peak": 0.85}, "window": "15m", "min_calls": 10, "for": "3s"},
        ],
        "evaluate_every": "1s",
    }  # fmt: skip
    path = example_with_tokens(tmp_path_factory.mktemp("wallboard"), ADMIN, READ,
                               center_name="Wallboard test center", alerts=alerts)  # fmt: skip
    env = stack_env(broker, new_database(pg), "wallboard", CALLKPI_CONFIG=str(path))
    s = Stack(env, token=ADMIN).start()
    yield s
    s.stop()


@pytest.fixture
def page(board: Stack, browser: Any, request: Any) -> Iterator[Any]:
    # board first: Playwright's sync API keeps an event loop running on this
    # thread, and the stack's setup uses asyncio.run
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    pg = context.new_page()
    yield pg
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    context.close()


def log_in(page: Any, board: Stack, path: str = "/wallboard") -> None:
    browser_log_in(page, f"{board.url}{path}", READ)


def waiting_call(cid: str, queue: str) -> list[dict[str, Any]]:
    return [{"event_id": f"{cid}-o", "type": "call.offered", "call_id": cid, "queue_id": queue,
             "occurred_at": datetime.now(UTC).isoformat()}]  # fmt: skip


def tile(page: Any, key: str) -> Any:
    return page.locator(f'section.tile[data-key="{key}"]')


def test_the_page_asks_for_a_read_token_once_and_keeps_it_out_of_urls_and_logs(
    page: Any, board: Stack
) -> None:
    from playwright.sync_api import expect

    log_in(page, board)
    expect(tile(page, "team:billing")).to_be_visible(timeout=10_000)
    expect(page.locator("#title")).to_have_text("Wallboard test center")
    expect(page.locator("#feed")).to_have_text("live")
    page.reload()  # kept: no second prompt
    expect(tile(page, "team:tech")).to_be_visible(timeout=10_000)
    expect(page.locator("#login")).to_be_hidden()
    assert READ not in page.url
    assert READ not in (ARTIFACTS / "api.log").read_text(errors="replace")


def test_tiles_change_within_3_s_of_posted_events(page: Any, board: Stack) -> None:
    from playwright.sync_api import expect

    log_in(page, board, "/wallboard?team=tech")
    queue = tile(page, "queue:internet")
    in_queue = queue.locator('[data-field="in_queue"] .value')
    expect(in_queue).to_have_text("0", timeout=10_000)
    assert board.post(waiting_call("wb-1", "internet")).status_code == 202
    posted = time.monotonic()
    expect(in_queue).to_have_text("1", timeout=WITHIN_MS)
    shown = time.monotonic() - posted
    expect(queue.locator('[data-field="longest_wait"] .value')).not_to_have_text("—")
    expect(tile(page, "team:tech").locator('[data-field="in_queue"] .value')).to_have_text("1")
    print(f"\nwallboard showed the waiting call {shown:.2f} s after the POST returned")


def test_a_team_under_its_line_turns_red_and_the_firing_alert_shows_in_a_banner(
    page: Any, board: Stack
) -> None:
    from playwright.sync_api import expect

    log_in(page, board)
    billing = tile(page, "team:billing")
    hero = billing.locator('[data-field="answer_rate_15m"]')
    expect(billing).to_be_visible(timeout=10_000)
    expect(page.locator("#banner")).to_be_hidden()
    start = datetime.now(UTC) - timedelta(minutes=4)
    # under the line on fewer calls than the rule needs: amber, no alert
    thin = calls("wb-thin", "billing", start, answered=3, abandoned=3, spread=timedelta(minutes=1))
    assert board.post(thin).status_code == 202
    expect(hero.locator(".value")).to_have_text("50.0%", timeout=WITHIN_MS)
    expect(hero).to_have_class("fig hero thin")
    expect(hero.locator(".line")).to_have_text("line 85.0% (peak) · 6 calls, alerts from 10")
    expect(billing).to_have_class("tile")
    # 12 answered and 8 abandoned more: 15 of 26, 57.7 %, on enough calls: red
    dip = calls("wb-dip", "billing", start, answered=12, abandoned=8, spread=timedelta(minutes=3))
    assert board.post(dip).status_code == 202
    posted = time.monotonic()
    expect(hero.locator(".value")).to_have_text("57.7%", timeout=WITHIN_MS)
    expect(hero).to_have_class("fig hero bad")
    expect(billing).to_have_class("tile breached")
    expect(hero.locator(".line")).to_have_text("line 85.0% (peak)")
    expect(tile(page, "team:tech")).not_to_have_class("tile breached")
    # the half hour's calls need agents: staffed against required, and the schedule's
    staffing = billing.locator('[data-field="staffing"]')
    expect(staffing.locator(".value")).to_have_text(re.compile(r"^\d+\.\d / [1-9]\d*$"))
    expect(staffing.locator(".line").last).to_have_text(re.compile(r"^scheduled \d+\.\d$"))
    # the rule fires after `for: 3s`; the banner names it
    banner = page.locator("#banner")
    expect(banner).to_be_visible(timeout=20_000)
    expect(banner).to_contain_text("Billing (team billing): answer_rate 57.7% (line 85.0%)")
    print(f"\nred and banner {time.monotonic() - posted:.1f} s after the POST (for: 3s)")
    page.screenshot(path=str(ARTIFACTS / "wallboard-alert.png"))


def test_the_leaderboard_shows_agents_state_and_calls(page: Any, board: Stack) -> None:
    from playwright.sync_api import expect

    now = datetime.now(UTC)
    events = [
        {"event_id": "wb-s-b03", "type": "agent.state", "agent_id": "b03", "state": "on_call",
         "occurred_at": (now - timedelta(seconds=30)).isoformat()},
        {"event_id": "wb-c-o", "type": "call.offered", "call_id": "wb-c", "queue_id": "billing",
         "occurred_at": (now - timedelta(seconds=40)).isoformat()},
        {"event_id": "wb-c-a", "type": "call.answered", "call_id": "wb-c", "agent_id": "b03",
         "occurred_at": (now - timedelta(seconds=30)).isoformat()},
    ]  # fmt: skip
    assert board.post(events).status_code == 202
    log_in(page, board, "/wallboard/agents?team=billing")
    row = page.locator('tr[data-agent="b03"]')
    expect(row.locator(".state")).to_have_text("On call", timeout=10_000)
    expect(page.locator("#title")).to_contain_text("Billing")
    assert page.locator("#rows tr").count() == 12  # the team's roster


def test_the_page_shows_stale_when_the_api_stops_and_recovers_when_it_returns(
    page: Any, board: Stack
) -> None:
    from playwright.sync_api import expect

    log_in(page, board)
    feed = page.locator("#feed")
    expect(feed).to_have_text("live", timeout=10_000)
    board.api.kill()
    try:
        expect(feed).to_have_text("STALE", timeout=5_000)
        expect(page.locator("body")).to_have_class("stale")
        page.screenshot(path=str(ARTIFACTS / "wallboard-stale.png"))
    finally:
        board.restart_api(kill=False)
    expect(feed).to_have_text("live", timeout=15_000)
    expect(tile(page, "team:billing")).to_be_visible()


def test_figures_behind_what_was_ingested_show_a_banner_until_the_worker_catches_up(
    page: Any, board: Stack
) -> None:
    from playwright.sync_api import expect

    log_in(page, board)
    expect(tile(page, "team:billing")).to_be_visible(timeout=10_000)
    behind = page.locator("#behind")
    expect(behind).to_be_hidden()
    board.worker.kill()  # events keep coming; nothing counts them
    assert board.post(waiting_call("behind-1", "billing")).status_code == 202
    expect(behind).to_contain_text("Figures are", timeout=30_000)
    expect(behind).to_contain_text("records waiting")
    board.restart_worker()
    expect(behind).to_be_hidden(timeout=30_000)


def after_local_midnight(board_tz: ZoneInfo, seconds: int) -> datetime:
    """Now, once at least `seconds` of the local day have passed (calls posted
    `seconds` back then fall today, at whatever hour the suite runs)."""
    now = datetime.now(board_tz)
    since_midnight = (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds()
    if since_midnight < seconds:
        time.sleep(seconds - since_midnight + 1)
    return datetime.now(UTC)


def test_a_tile_draws_todays_answer_rate_lists_the_oldest_waiting_calls_and_links_to_them(
    page: Any, board: Stack
) -> None:
    from playwright.sync_api import expect

    now = after_local_midnight(SHANGHAI, 120)
    done = calls("wb-tr", "sales", now - timedelta(seconds=90), answered=3, abandoned=1,
                 spread=timedelta(seconds=10))  # fmt: skip
    first, second = "wb-wait-1", "wb-wait-2"
    waiting = [
        {"event_id": f"{cid}-o", "type": "call.offered", "call_id": cid, "queue_id": "sales",
         "occurred_at": (now - timedelta(seconds=ago)).isoformat()}
        for cid, ago in ((second, 20), (first, 50))
    ]  # fmt: skip
    assert board.post(done + waiting).status_code == 202
    log_in(page, board)
    sales = tile(page, "team:sales")
    oldest = sales.locator(".oldest li")
    expect(oldest).to_have_count(2, timeout=10_000)
    assert oldest.evaluate_all("items => items.map(i => i.dataset.call)") == [first, second]
    expect(oldest.first.locator(".since")).to_have_text(re.compile(r"^0:[5-9]\d|^1:\d\d"))

    # the sparkline is the API's answer rate per quarter hour since midnight
    trend = sales.locator(".trend")

    def api_trend() -> list[Any]:
        start = trend.get_attribute("data-from")
        end = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        body = board.get("/v1/kpis/team/sales/intervals", granularity="15m",
                         **{"from": start, "to": end.isoformat()}).json()  # fmt: skip
        return [i["answer_rate"] for i in body["intervals"]]

    deadline = time.monotonic() + 10
    while True:
        shown = json.loads(trend.get_attribute("data-values") or "[]")
        want = api_trend()
        if shown == want or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert shown == want and 0.75 in shown  # 3 answered of 4 this quarter hour
    expect(sales.locator(".spark path")).to_have_count(1)

    # "In queue" links to the calls waiting: both listed there
    sales.locator('[data-field="in_queue"]').click()
    expect(page).to_have_url(re.compile(r"/reports/calls\?.*team=sales.*outcome=in_queue"))
    rows = page.locator("#table tbody tr")
    expect(rows).to_have_count(2, timeout=10_000)
    assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.call)")) == {first, second}


def test_agents_past_their_states_or_reasons_limit_show_red(page: Any, board: Stack) -> None:
    from playwright.sync_api import expect

    now = datetime.now(UTC)
    # the example config: not ready 15m, but lunch 35m and break 15m; wrap-up 2m
    states = [("s01", "not_ready", "lunch", 40), ("s02", "not_ready", "lunch", 20),
              ("s03", "wrap_up", None, 3), ("s04", "on_call", None, 1)]  # fmt: skip
    events = [
        {"event_id": f"wb-lim-{a}", "type": "agent.state", "agent_id": a, "state": st,
         "occurred_at": (now - timedelta(minutes=ago)).isoformat()}
        | ({"reason": reason} if reason else {})
        for a, st, reason, ago in states
    ]  # fmt: skip
    assert board.post(events).status_code == 202
    log_in(page, board, "/wallboard/agents?team=sales")
    cell = {a: page.locator(f'tr[data-agent="{a}"] td').nth(2) for a, *_ in states}
    expect(cell["s01"].locator(".state")).to_have_text("Not ready · lunch", timeout=10_000)
    expect(cell["s01"]).to_have_class("over")
    expect(cell["s01"]).to_have_attribute("title", "over the 35:00 limit for not ready (lunch)")
    expect(cell["s02"]).not_to_have_class("over")  # 20 min of a 35 min lunch
    expect(cell["s03"]).to_have_class("over")  # wrap-up past 2 min
    expect(cell["s04"]).not_to_have_class("over")
    page.screenshot(path=str(ARTIFACTS / "wallboard-agents.png"))

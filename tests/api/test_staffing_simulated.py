"""From the simulator to /v1/staffing through the real pipeline: a rostered day
of the example center (its plan uploaded as the schedule, its events posted to
ingest and counted by the worker) against the reference computed from the same
CSV and the same events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from services.core.schedules import parse_csv
from services.core.settings import load_settings
from services.core.staffing import agent_schedule
from services.devstack import EmbeddedBroker, EmbeddedPostgres
from services.simulator import SimConfig, Simulation, plan_schedule
from tests.support.databases import EXAMPLE_CONFIG, new_database, stack_env
from tests.support.reference import scheduled_per_interval, staffed_per_interval
from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.slow
SETTINGS = load_settings(EXAMPLE_CONFIG)
TZ = SETTINGS.tz
# a whole local day, four days back whatever the hour the suite runs
DAY = datetime.now(TZ).date() - timedelta(days=4)
START = datetime.combine(DAY, datetime.min.time(), TZ)


@pytest.fixture(scope="module")
def simulated(
    pg: EmbeddedPostgres, broker: EmbeddedBroker
) -> Iterator[tuple[Stack, str, list[dict[str, Any]]]]:
    stack = Stack(stack_env(broker, new_database(pg), "staffsim"), logs="staffsim-").start()
    cfg = SimConfig(seed=21, start=START, duration=timedelta(days=1), timezone=SETTINGS.timezone,
                    calls_per_hour=200)  # fmt: skip
    plan = plan_schedule(cfg, list(SETTINGS.teams), DAY - timedelta(days=1), 3, TZ)
    cfg.schedule = parse_csv(plan, set(SETTINGS.staffing.activities), None, TZ).segments
    events = list(Simulation(cfg, list(SETTINGS.teams)).events())
    assert httpx.post(f"{stack.url}/v1/schedules", content=plan).status_code == 201
    for i in range(0, len(events), 2000):
        r = stack.post(events[i : i + 2000])
        assert r.status_code == 202 and r.json()["rejected"] == [], r.text
    offered = sum(e["type"] == "call.offered" for e in events)
    states = sum(e["type"] == "agent.state" for e in events)
    span = {"from": START.isoformat(), "to": (START + timedelta(days=2)).isoformat()}

    def counted() -> bool:
        c = stack.get("/v1/kpis/center/all", **span).json()
        return bool(c["offered"] == offered and c["in_queue"] == 0 and c["logged_in_seconds"] > 0)

    assert wait_until(counted, 120), (offered, states)
    # every state counted: the worker's agent time stops changing
    last: list[float] = []

    def settled() -> bool:
        last.append(stack.get("/v1/kpis/center/all", **span).json()["logged_in_seconds"])
        return len(last) > 2 and last[-1] == last[-2] == last[-3]

    assert wait_until(settled, 60, interval=1)
    yield stack, plan, events
    stack.stop()


@pytest.mark.parametrize("team", ["billing", "tech", "sales"])
def test_scheduled_and_staffed_agents_of_a_simulated_day_equal_the_reference(
    simulated: tuple[Stack, str, list[dict[str, Any]]], team: str
) -> None:
    stack, plan, events = simulated
    r = stack.get(f"/v1/staffing/team/{team}/intervals", **{"from": START.isoformat(),
                  "to": (START + timedelta(days=1)).isoformat(), "granularity": "30m"})  # fmt: skip
    assert r.status_code == 200, r.text
    rows = r.json()["intervals"]
    edges = [START + timedelta(minutes=30 * i) for i in range(49)]
    agents = {a for a in SETTINGS.roster("agent") if SETTINGS.agent_team(a) == team}
    assert [x["scheduled_agents"] for x in rows] == pytest.approx(
        scheduled_per_interval(plan, TZ, edges, agents), abs=1e-9
    )
    assert [x["staffed_agents"] for x in rows] == pytest.approx(
        staffed_per_interval(events, SETTINGS.team_of_agent, team, edges), abs=1e-9
    )
    team_queues = {q for t in SETTINGS.teams if t.id == team for q in t.queues}
    offered = [0] * 48
    for e in events:
        if e["type"] == "call.offered" and e["queue_id"] in team_queues:
            at = datetime.fromisoformat(e["occurred_at"])
            offered[int((at - START).total_seconds() // 1800)] += 1
    assert [x["offered"] for x in rows] == offered
    # a roster planned for the load: every interval with calls has agents on, the
    # fit is neither perfect nor absent
    assert all(x["required_agents"] is not None for x in rows)
    fit = r.json()["schedule_fit"]
    assert fit is not None and 0.3 < fit < 1.0


def test_each_simulated_agents_attendance_and_adherence_equal_those_of_its_own_events(
    simulated: tuple[Stack, str, list[dict[str, Any]]],
) -> None:
    stack, plan, events = simulated
    segs = parse_csv(plan, set(SETTINGS.staffing.activities), None, TZ).segments
    spans: dict[str, list[tuple[int, int, str, str | None]]] = {}
    current: dict[str, tuple[str, int, str | None]] = {}
    for e in events:  # the simulator's events are in time order
        if e["type"] != "agent.state":
            continue
        t = int(datetime.fromisoformat(e["occurred_at"]).timestamp() * 1000) * 1000
        prev = current.get(e["agent_id"])
        if prev is not None and prev[0] != "logged_out" and t > prev[1]:
            spans.setdefault(e["agent_id"], []).append((prev[1], t, prev[0], prev[2]))
        current[e["agent_id"]] = (e["state"], t, e.get("reason"))
    lo = int(START.timestamp()) * 1_000_000
    hi = lo + 86_400_000_000
    cfg = SETTINGS.staffing
    span = {"from": START.isoformat(), "to": (START + timedelta(days=1)).isoformat()}
    absent = 0
    for agent in SETTINGS.roster("agent"):
        got = stack.get(f"/v1/kpis/agent/{agent}", **span).json()["schedule"]
        mine = [g for g in segs if g.agent_id == agent]
        want = agent_schedule(mine, spans.get(agent, []), cfg.activities, lo, hi, hi,
                              cfg.grace_minutes * 60_000_000,
                              cfg.early_login_minutes * 60_000_000).fields()  # fmt: skip
        assert got == pytest.approx(want), agent
        absent += want["absent_shifts"]
    assert absent <= 3  # a few absences a day among 32 agents, not a systematic miss

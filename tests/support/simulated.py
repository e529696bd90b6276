"""The simulated center of the end-to-end tests, under the example config: its
events, how they are posted, and the read API's figures compared with the
reference's."""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta
from typing import Any

from services.core.settings import load_settings
from services.simulator import DAILY_PROFILE, SimConfig, Simulation
from tests.support.databases import EXAMPLE_CONFIG
from tests.support.reference import reference
from tests.support.stack import Stack

SETTINGS = load_settings(EXAMPLE_CONFIG)
TEAM_OF_QUEUE = dict(SETTINGS.team_of_queue)


def expected(events: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """The reference figures under the example config's roster and definitions."""
    return reference(
        events, team_of_queue=TEAM_OF_QUEUE, team_of_agent=dict(SETTINGS.team_of_agent)
    )


def simulated(seed: int, minutes: int, start: datetime) -> list[dict[str, Any]]:
    # the daily profile would give a third of the calls at night: scaled by it,
    # the volume (about 900 calls/h) does not depend on when the suite runs
    local_hour = start.astimezone(SETTINGS.tz).hour
    cfg = SimConfig(
        seed=seed,
        start=start,
        duration=timedelta(minutes=minutes),
        timezone=SETTINGS.timezone,
        calls_per_hour=900 / DAILY_PROFILE[local_hour],
    )
    return list(Simulation(cfg, list(SETTINGS.teams)).events())


def post_all(stack: Stack, events: list[dict[str, Any]], seed: int) -> None:
    rnd = random.Random(seed)
    shuffled = events + rnd.sample(events, len(events) // 10)  # some retried twice
    rnd.shuffle(shuffled)
    for i in range(0, len(shuffled), 1500):
        r = stack.post(shuffled[i : i + 1500])
        assert r.status_code == 202, r.text
        assert r.json()["rejected"] == []


def api_figures(stack: Stack, keys: list[tuple[str, str]], start: str, end: str) -> dict[Any, Any]:
    """The read API's figures of each (kind, id); an agent in one queue
    (agent_queue, "agent\\x1fqueue") from its agent's `?by=queue`."""
    out = {}
    span = {"from": start, "to": end}
    by_queue: dict[str, dict[str, Any]] = {}
    for kind, ident in keys:
        if kind == "agent_queue":
            agent, queue = ident.split("\x1f")
            if agent not in by_queue:
                r = stack.get(f"/v1/kpis/agent/{agent}", by="queue", **span)
                assert r.status_code == 200, r.text
                by_queue[agent] = {row["queue"]: row for row in r.json()["by_queue"]}
            out[(kind, ident)] = by_queue[agent].get(queue, {})
            continue
        r = stack.get(f"/v1/kpis/{kind}/{ident}", **span)
        assert r.status_code == 200, r.text
        out[(kind, ident)] = r.json()
    return out


def mismatches(got: dict[Any, Any], want: dict[Any, Any]) -> list[str]:
    bad = []
    for key, exp in want.items():
        for name, value in exp.items():
            have = got[key].get(name, "(missing)")
            if have != value:  # exact, floats included (see test_core_properties)
                bad.append(f"{key} {name}: api={have} reference={value}")
    return bad


def converge(
    stack: Stack, events: list[dict[str, Any]], lo: str, hi: str, timeout_s: float = 120
) -> tuple[int, float]:
    """Wait until the API's figures over [lo, hi) equal the reference's for
    `events` on every field; returns (fields compared, seconds it took). Fails
    naming the fields that still differ after `timeout_s`."""
    want = expected(events)
    started = time.monotonic()
    bad = mismatches(api_figures(stack, list(want), lo, hi), want)
    while bad and time.monotonic() - started < timeout_s:
        time.sleep(0.5)
        bad = mismatches(api_figures(stack, list(want), lo, hi), want)
    assert bad == [], bad[:20]
    return sum(len(v) for v in want.values()), time.monotonic() - started

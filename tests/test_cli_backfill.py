"""`callkpi simulate --backfill-days`: the history arrives whole through ingest (with
auth on, using --token), and a second run over the same database skips it
rather than count it twice."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.cli.feeds import BACKFILL_GAP, backfill, backfill_sim
from services.core.auth import token_hash
from services.core.settings import load_settings
from services.devstack import EmbeddedBroker, EmbeddedPostgres, free_port
from services.ingest.client import IngestStopped
from services.simulator import SimConfig, Simulation
from tests.support.databases import EXAMPLE_CONFIG, new_database, stack_env
from tests.support.simulated import SETTINGS
from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.slow
TOKEN = "ck_simulator-token-for-tests"


@pytest.fixture(scope="module")
def stack(pg: EmbeddedPostgres, broker: EmbeddedBroker) -> Iterator[Stack]:
    tokens = [{"name": "sim", "sha256": token_hash(TOKEN), "scopes": ["ingest", "read"]}]
    env = stack_env(broker, new_database(pg), "backfill", CALLKPI_AUTH__TOKENS=json.dumps(tokens))
    s = Stack(env, token=TOKEN).start()
    yield s
    s.stop()


def test_backfill_arrives_whole_and_a_second_run_skips_it(stack: Stack) -> None:
    live = datetime.now(UTC).replace(second=0, microsecond=0)
    cmd = [sys.executable, "-m", "services.cli", "simulate", "--url", stack.url,
           "--token", TOKEN, "--start", live.isoformat(), "--duration", "1m", "--speed", "600",
           "--calls-per-hour", "60", "--backfill-days", "1", "--seed", "5"]  # fmt: skip
    first = subprocess.run(cmd, env=stack.env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "backfill: done" in first.stdout

    # the same history, generated again here: every call it offered is counted once
    args = argparse.Namespace(backfill_days=1, seed=5, calls_per_hour=60.0,
                              backfill_calls_per_hour=None, rush=None)  # fmt: skip
    history = backfill_sim(load_settings(EXAMPLE_CONFIG), args, live)
    offered = sum(1 for ev in history.events() if ev["type"] == "call.offered")
    begin = history.cfg.start
    span = {"from": begin.isoformat(), "to": (live - BACKFILL_GAP).isoformat()}
    assert offered > 500

    def counted() -> int:
        return int(stack.get("/v1/kpis/center/all", **span).json()["offered"])

    assert wait_until(lambda: counted() == offered, timeout=60), (counted(), offered)

    second = subprocess.run(cmd, env=stack.env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert f"backfill: skipped, the center already has calls on {begin.date()}" in second.stdout
    assert counted() == offered


def test_a_backfill_that_gives_up_names_the_simulated_time_to_resume_from() -> None:
    start = datetime(2025, 3, 3, tzinfo=UTC)
    cfg = SimConfig(seed=4, start=start, duration=timedelta(hours=2),
                    timezone=SETTINGS.timezone, calls_per_hour=600)  # fmt: skip

    async def run() -> IngestStopped:
        dead = f"http://127.0.0.1:{free_port()}"
        async with httpx.AsyncClient(base_url=dead, timeout=2) as client:
            try:
                await backfill(client, Simulation(cfg, list(SETTINGS.teams)), patience_s=1)
            except IngestStopped as stop:
                return stop
        raise AssertionError("a backfill into a dead API did not stop")

    stop = asyncio.run(run())
    first = next(iter(Simulation(cfg, list(SETTINGS.teams)).events()))["occurred_at"]
    assert (stop.accepted, stop.rejected, stop.resume) == (0, 0, first)
    assert "ingest kept failing for" in str(stop.cause)

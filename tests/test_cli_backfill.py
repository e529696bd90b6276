"""`callkpi simulate --backfill-days`: the history arrives whole through ingest (with
auth on, using --token), and a second run over the same database skips it
rather than count it twice."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from services.cli import BACKFILL_GAP, _backfill_sim
from services.core.auth import token_hash
from services.core.settings import load_settings
from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.conftest import EXAMPLE_CONFIG, new_database, stack_env
from tests.stack import Stack, wait_until

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
                              backfill_calls_per_hour=None)  # fmt: skip
    history = _backfill_sim(load_settings(EXAMPLE_CONFIG), args, live)
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

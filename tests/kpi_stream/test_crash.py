"""SIGKILL the worker in the middle of the stream, twice; after restarts the figures
equal the reference: nothing lost, nothing counted twice."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.support.databases import new_database, processed, stack_env
from tests.support.simulated import converge, post_all, simulated
from tests.support.stack import Stack, wait_until


def test_worker_sigkilled_twice_mid_stream_then_restarted_gives_reference_figures(
    pg: EmbeddedPostgres, broker: EmbeddedBroker
) -> None:
    db = new_database(pg)
    # Small envelopes and batches: many commits, so a kill lands between some of them.
    env = stack_env(broker, db, f"crash{os.getpid()}", CALLKPI_ENVELOPE_MAX_EVENTS="50",
                    CALLKPI_WORKER_TAKE_MAX="4")  # fmt: skip
    stack = Stack(env).start(worker=False)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    events = simulated(23, 150, start)
    post_all(stack, events, seed=5)
    delivered = len(events) + len(events) // 10
    kills = []
    try:
        for share in (0.15, 0.5):
            stack.restart_worker()
            seen = wait_until(
                lambda s=share: processed(db) >= s * delivered, timeout=120, interval=0.01
            )
            stack.worker.kill()  # SIGKILL: no shutdown, no offset commit
            kills.append(processed(db))
            assert seen, "worker made no progress before the kill"
        assert 0 < kills[0] < kills[1] < delivered, f"kills not mid-stream: {kills} of {delivered}"
        stack.restart_worker()
        lo = (start - timedelta(minutes=1)).isoformat()
        hi = (start + timedelta(hours=3)).isoformat()
        converge(stack, events, lo, hi, timeout_s=120)
    finally:
        stack.stop()

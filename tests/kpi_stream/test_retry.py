"""A worker whose Postgres refuses writes for a while loses nothing: the failed
batches stay unacknowledged, are retried, and the figures end equal to the
reference once writes are accepted again."""

from __future__ import annotations

import asyncio
import os
import re
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from services.core.db import asyncpg_dsn
from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.support.databases import new_database, stack_env
from tests.support.simulated import converge, post_all, simulated
from tests.support.stack import Stack, wait_until

# A real Postgres error on every write to the call counters while the switch row
# exists, as a full disk or a revoked grant would give.
REFUSE = """
CREATE TABLE refuse_writes (since timestamptz);
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM refuse_writes) THEN
    RAISE EXCEPTION 'test: kpi_buckets refuses writes';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON kpi_buckets
  FOR EACH ROW EXECUTE FUNCTION refuse();
INSERT INTO refuse_writes VALUES (now());
"""


def sql(db: str, statement: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(db))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def retries(stack: Stack) -> float:
    text = httpx.get(f"http://127.0.0.1:{stack.worker_port}/metrics", timeout=10).text
    found = re.findall(r'^callkpi_worker_batch_retries_total\{stage="events"\} (\S+)$', text, re.M)
    return float(found[0]) if found else 0.0


def test_batches_failing_while_postgres_refuses_writes_are_retried_not_lost(
    pg: EmbeddedPostgres, broker: EmbeddedBroker
) -> None:
    db = new_database(pg)
    sql(db, REFUSE)
    stack = Stack(stack_env(broker, db, f"retry{os.getpid()}")).start()
    try:
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
        events = simulated(31, 40, start)
        post_all(stack, events, seed=3)
        assert wait_until(lambda: retries(stack) >= 1, timeout=60, interval=0.2), (
            "the worker never retried a batch"
        )
        sql(db, "DELETE FROM refuse_writes")
        lo, hi = (
            (start - timedelta(minutes=1)).isoformat(),
            (start + timedelta(hours=2)).isoformat(),
        )
        converge(stack, events, lo, hi, timeout_s=90)
    finally:
        stack.stop()

"""`callkpi worker`: the Faust worker as a small ASGI service.

Faust is created and started inside the lifespan and stopped when it ends, so
importing this module starts nothing. The service itself answers /healthz and
/readyz for orchestrators, and watches the broker: it recreates topics the broker
lost, and repairs what the loss took (services/kpi_stream/reconcile.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Response

from services.core.db import asyncpg_dsn, require_database_url
from services.core.faults import reason
from services.core.kafka import DEPENDENCY_UP, TopicGuard, ensure_topics, holds_record
from services.core.progress import PipelineMonitor
from services.core.settings import Settings
from services.kpi_stream.app import Failing, assigned, create_faust_app, wire
from services.kpi_stream.processor import Processor
from services.kpi_stream.reconcile import check_and_repair

log = logging.getLogger("callkpi.worker")

# The worker keeps hundreds of thousands of call states in its cache and allocates
# millions of short-lived objects per batch; at Python's default thresholds
# (700, 10, 10) the cyclic collector keeps re-scanning that cache, and took ~30% of
# the stage-1 CPU (measured: 26k → 37k events/s of pure computation). Its data is
# acyclic, so reference counting frees nearly everything; a young collection every
# 100,000 allocations and rare full ones bound the garbage cycles can hold.
GC_THRESHOLDS = (100_000, 50, 1_000)

# A batch failing for longer than this makes the worker not ready: one retry
# (a deadlock, a dropped connection) passes well within it; an outage does not.
FAILING_NOT_READY_S = 2.0
READY_PROBE_S = 2.0  # the readiness probe's own query to Postgres


def require_bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        from services.core.settings import ConfigError

        raise ConfigError("kafka_bootstrap: not set (CALLKPI_KAFKA_BOOTSTRAP)")
    return settings.kafka_bootstrap


def create_worker_app(settings: Settings) -> FastAPI:
    state: dict[str, object] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        bootstrap = require_bootstrap(settings)
        await ensure_topics(settings, bootstrap)
        pool = await asyncpg.create_pool(
            asyncpg_dsn(require_database_url(settings)), min_size=2, max_size=4
        )
        faust_app = create_faust_app(settings, bootstrap)
        worker_id = f"{socket.gethostname()}:{os.getpid()}"
        processor = wire(faust_app, settings, pool, worker_id)
        faust_app.finalize()
        previous_gc = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        await faust_app.start()
        gc.freeze()  # what start-up allocated lives as long as the process
        state["faust"] = faust_app
        monitor = PipelineMonitor(settings, bootstrap)
        guard = TopicGuard(settings, bootstrap, on_lost=monitor.reset)
        state["guard"], state["monitor"], state["pool"] = guard, monitor, pool
        watching = asyncio.create_task(_watch(settings, pool, processor, guard, monitor))
        log.info("worker %s started (broker %s)", worker_id, bootstrap)
        try:
            yield
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            await monitor.stop()
            await faust_app.stop()
            await pool.close()
            gc.unfreeze()
            gc.set_threshold(*previous_gc)

    app = FastAPI(title="callkpi worker", lifespan=lifespan)

    @app.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import REGISTRY, generate_latest

        return Response(generate_latest(REGISTRY), media_type="text/plain; version=0.0.4")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(response: Response) -> dict[str, object]:
        """Ready while it can do its job: partitions assigned, the broker and
        Postgres answering, no batch failing, no partition stalled. Otherwise 503
        with `reasons`, each naming the dependency or partition."""
        faust_app = state.get("faust")
        if faust_app is None:
            response.status_code = 503
            return {"ready": False, "partitions": 0, "reasons": ["starting"]}
        reasons = await _not_ready(settings, state)
        count = len(assigned(faust_app))  # type: ignore[arg-type]
        if not count:
            reasons.insert(0, "broker: no partitions assigned (joining the consumer group)")
        if reasons:
            response.status_code = 503
        return {"ready": not reasons, "partitions": count, "reasons": reasons}

    return app


async def _not_ready(settings: Settings, state: Mapping[str, Any]) -> list[str]:
    reasons: list[str] = []
    guard: TopicGuard = state["guard"]
    monitor: PipelineMonitor = state["monitor"]
    pool: asyncpg.Pool = state["pool"]
    if not guard.up:
        reasons.append(str(guard.error))
    elif monitor.error is not None:
        reasons.append(f"{monitor.error} (reading offsets)")
    try:
        # Only an idle connection is probed: with every one busy the worker is
        # talking to Postgres already (and a failure shows as a failing stage),
        # and waiting for one would report a busy worker as unreachable.
        if pool.get_idle_size() > 0:
            async with asyncio.timeout(READY_PROBE_S), pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
            DEPENDENCY_UP.labels("postgres").set(1)
    except Exception as exc:
        DEPENDENCY_UP.labels("postgres").set(0)
        reasons.append(reason(exc, default="postgres", waited_s=READY_PROBE_S))
    for stage, why in sorted(Failing.why.items()):
        seconds = Failing.failing_for(stage)
        if seconds >= FAILING_NOT_READY_S:
            reasons.append(f"{stage} stage: batches failing for {seconds:.0f} s ({why})")
    mine = {("events" if tp.topic == settings.events_topic else "facts", tp.partition)
            for tp in assigned(state["faust"])}  # fmt: skip
    for p in monitor.stalled(settings.worker_stall_seconds, mine):
        reasons.append(
            f"stalled: {p.stage} partition {p.partition}: {p.backlog:,} records waiting, "
            f"no committed progress for {p.still_s:.0f} s (worker_stall_seconds="
            f"{settings.worker_stall_seconds:g})"
        )
    return reasons


async def _watch(settings: Settings, pool: asyncpg.Pool, processor: Processor,
                 guard: TopicGuard, monitor: PipelineMonitor) -> None:  # fmt: skip
    """Every pipeline_poll_seconds: topics there (recreated if the broker lost
    them), offsets polled (lag, stalls), and lost records repaired."""
    topic_of = {"events": settings.events_topic, "facts": settings.fcr_topic}

    async def ends() -> dict[tuple[str, int], int] | None:
        await monitor.poll()
        if monitor.error is not None:
            return None
        return {(topic_of[stage], part): end for (stage, part), end in monitor.ends().items()}

    # Under Tansu a caught-up partition looks short at every poll (its ListOffsets
    # under-reports): a record found once is not fetched again while the workers
    # stay at it; one entry per partition. A broker that comes back empty is seen
    # without a fetch (an empty log: check_and_repair).
    found: dict[tuple[str, int], int] = {}

    async def holds(topic: str, partition: int, offset: int) -> bool | None:
        if found.get((topic, partition)) == offset:
            return True
        held = await holds_record(require_bootstrap(settings), topic, partition, offset)
        if held:
            found[(topic, partition)] = offset
        return held

    while True:
        try:
            await guard.check()
            await check_and_repair(pool, settings, processor.send_facts, ends, holds)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("pipeline watch: %s; checking again", reason(exc))
        await asyncio.sleep(settings.pipeline_poll_seconds)

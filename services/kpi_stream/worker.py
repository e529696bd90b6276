"""`callkpi worker`: the Faust worker as a small ASGI service.

Faust is created and started inside the lifespan and stopped when it ends, so
importing this module starts nothing. The service itself answers /healthz and
/readyz for orchestrators.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Response

from services.core.db import asyncpg_dsn, require_database_url
from services.core.kafka import ensure_topics
from services.core.settings import Settings
from services.kpi_stream.app import assigned, create_faust_app, wire

log = logging.getLogger("callkpi.worker")

# The worker keeps hundreds of thousands of call states in its cache and allocates
# millions of short-lived objects per batch; at Python's default thresholds
# (700, 10, 10) the cyclic collector keeps re-scanning that cache, and took ~30% of
# the stage-1 CPU (measured: 26k → 37k events/s of pure computation). Its data is
# acyclic, so reference counting frees nearly everything; a young collection every
# 100,000 allocations and rare full ones bound the garbage cycles can hold.
GC_THRESHOLDS = (100_000, 50, 1_000)


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
        wire(faust_app, settings, pool, worker_id)
        faust_app.finalize()
        previous_gc = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        await faust_app.start()
        gc.freeze()  # what start-up allocated lives as long as the process
        state["faust"] = faust_app
        log.info("worker %s started (broker %s)", worker_id, bootstrap)
        try:
            yield
        finally:
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
        faust_app = state.get("faust")
        count = len(assigned(faust_app)) if faust_app is not None else 0  # type: ignore[arg-type]
        if not count:
            response.status_code = 503
        return {"ready": bool(count), "partitions": count}

    return app

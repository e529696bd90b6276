"""The HTTP service: read API, ingest, /metrics and health, composed per role.

`callkpi api` serves reads, `callkpi ingest` serves ingest, `callkpi dev` both.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from services.api import alerts, kpis, metrics, periods, quarantine, stream, wallboard
from services.api.deps import ConnDep, require
from services.core.db import make_engine
from services.core.settings import Settings
from services.ingest.app import create_ingest_router, producer_lifespan

log = logging.getLogger("callkpi.api")


def create_app(settings: Settings, *, read: bool = True, ingest: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.settings = settings
            if not settings.auth.enabled:
                log.warning(
                    "no API tokens configured: every endpoint is open to anyone who can reach "
                    "it; configure auth.tokens before exposing the service (docs/payroll.md#access)"
                )
            app.state.engine = make_engine(settings)
            stack.push_async_callback(app.state.engine.dispose)
            if ingest:
                from services.kpi_stream.worker import require_bootstrap

                bootstrap = require_bootstrap(settings)
                await stack.enter_async_context(producer_lifespan(app, settings, bootstrap))
            if read:
                app.state.hub = stream.Hub(settings, app.state.engine)
                await app.state.hub.start()
                stack.push_async_callback(app.state.hub.stop)
            if read and settings.alerts.rules:
                from services.alerting.service import AlertService

                service = AlertService(settings, app.state.engine, settings.kafka_bootstrap)
                await service.start()
                stack.push_async_callback(service.stop)
            yield

    app = FastAPI(
        title="callkpi",
        version="0.1.0",
        description="Call-center KPIs from CTI events. Definitions: docs/metrics.md.",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"] if p not in ("query", "path", "body"))
            problems.append(f"{loc}: {err['msg']}")
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    # Scopes per router (docs/payroll.md#access); closing, restating and manual
    # items need admin on top of payroll (services/api/periods.py).
    if read:
        app.include_router(kpis.router, dependencies=[require("read")])
        app.include_router(alerts.router, dependencies=[require("read")])
        app.include_router(stream.router, dependencies=[require("read")])
        # the pages hold no figures: they ask for a token and read /v1/stream
        app.include_router(wallboard.router)
        app.include_router(periods.router, dependencies=[require("payroll")])
        app.include_router(quarantine.router, dependencies=[require("admin")])
    if ingest:
        app.include_router(create_ingest_router(settings), dependencies=[require("ingest")])
    app.include_router(metrics.router, dependencies=[require("read")])

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz(conn: ConnDep) -> dict[str, Any]:
        """Ready when Postgres answers; `quarantined`: events the worker set aside
        and nobody replayed yet, per stage (docs/operations.md#quarantine)."""
        from services.api.queries import quarantine_waiting

        waiting = await quarantine_waiting(conn)
        return {"ready": True, "quarantined": {k: v["events"] for k, v in waiting.items()}}

    return app

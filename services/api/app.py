"""The HTTP service: read API, ingest, /metrics and health, composed per role.

`callkpi api` serves reads, `callkpi ingest` serves ingest, `callkpi dev` both.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from services.api import (
    alerts,
    calls,
    kpis,
    metrics,
    pages,
    periods,
    qa,
    quarantine,
    reports,
    staffing,
    stream,
)
from services.api.cache_hits import CacheHits
from services.api.deps import no_control_characters, require
from services.api.http_limits import BodyDeadline
from services.api.pipeline import PipelineStatus
from services.api.read_cache import SNAPSHOT_SQL, ReadCache
from services.core.db import make_engine
from services.core.faults import is_unreachable, reason
from services.core.kafka import DEPENDENCY_UP
from services.core.settings import Settings
from services.ingest.app import create_ingest_router, producer_lifespan

log = logging.getLogger("callkpi.api")

READY_PROBE_S = 2.0  # /readyz's own query to Postgres
# Clients that got a 503 because a dependency is away retry after this: Postgres
# and the broker come back within seconds of a restart.
RETRY_AFTER_S = 2


ERROR_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["detail"],
        "properties": {"detail": {"type": "string", "description": "what is wrong, and where"}},
    },
    "IngestResult": {
        "type": "object",
        "required": ["accepted", "rejected"],
        "properties": {
            "accepted": {"type": "integer", "minimum": 0},
            "rejected": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "error"],
                    "properties": {
                        "index": {"type": ["integer", "null"],
                                  "description": "index in the request; null: all of it"},
                        "line": {"type": "integer", "description": "NDJSON: its line"},
                        "error": {"type": "string"},
                    },
                },
            },
            "error": {"type": "string"},
        },
    },
}  # fmt: skip


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
            # its own connection: requests that miss hold one of the pool's while
            # they wait for the snapshot, and under load they could hold them all
            snapshots = make_engine(settings, pool_size=1, max_overflow=0)
            stack.push_async_callback(snapshots.dispose)

            async def snapshot() -> str:
                async with snapshots.connect() as conn:
                    return str((await conn.exec_driver_sql(SNAPSHOT_SQL)).scalar_one())

            app.state.read_cache = ReadCache(settings.read_cache_seconds, snapshot=snapshot)
            stack.push_async_callback(app.state.engine.dispose)
            app.state.producer = None
            app.state.pipeline = None
            if ingest:
                from services.kpi_stream.worker import require_bootstrap

                bootstrap = require_bootstrap(settings)
                await stack.enter_async_context(producer_lifespan(app, settings, bootstrap))
            if read and settings.kafka_bootstrap:
                app.state.pipeline = PipelineStatus(settings, settings.kafka_bootstrap)
                app.state.pipeline.start()
                stack.push_async_callback(app.state.pipeline.stop)
            if read:
                app.state.hub = stream.Hub(settings, app.state.engine, app.state.pipeline)
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
        dependencies=[Depends(no_control_characters)],
        telemetry=_telemetry(),
    )

    @app.exception_handler(DBAPIError)
    async def _database_refused(request: Request, exc: DBAPIError) -> JSONResponse:
        # A value the database cannot hold (a number past bigint, a date out of its
        # range) is the request's fault: 422 with Postgres' reason, not a 500.
        if isinstance(exc.orig, asyncpg.DataError) or "DataError" in type(exc.orig).__name__:
            reason = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
            log.info("refused %s %s: %s", request.method, request.url.path, reason)
            return JSONResponse(
                {"detail": f"a parameter is outside what the database holds: {reason}"}, 422
            )
        if is_unreachable(exc):
            return _unavailable(request, exc)
        raise exc

    @app.exception_handler(OSError)
    @app.exception_handler(SQLAlchemyError)
    @app.exception_handler(asyncpg.PostgresConnectionError)
    @app.exception_handler(asyncpg.InterfaceError)
    async def _dependency_away(request: Request, exc: Exception) -> JSONResponse:
        # Postgres (or the broker) cannot be reached: 503 saying which, not a 500
        # with "Internal Server Error"; clients and load balancers retry.
        if is_unreachable(exc):
            return _unavailable(request, exc)
        raise exc

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
        return JSONResponse({"detail": f"a parameter is out of range: {exc}"}, 422)

    def openapi() -> dict[str, Any]:
        """FastAPI's document, with the error bodies this API sends: every 422 is
        `{"detail": "<what is wrong and where>"}` (the handler below), and ingest
        answers with its own result object."""
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)  # fmt: skip
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        comps.pop("HTTPValidationError", None)
        comps.pop("ValidationError", None)
        comps.update(ERROR_SCHEMAS)
        for path, ops in schema.get("paths", {}).items():
            for op in ops.values():
                responses = op.get("responses", {})
                ingest_result = path == "/v1/events"
                for status, response in responses.items():
                    if status in ("401", "403"):
                        body = "Problem"
                    elif ingest_result and status in ("202", "413", "422", "503"):
                        body = "IngestResult"
                    elif status[0] in "45":
                        body = "Problem"
                    else:
                        continue
                    response["content"] = {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}
                    }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyDeadline, seconds=settings.http_body_timeout_seconds)
    if read:
        app.add_middleware(CacheHits)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"] if p not in ("query", "path", "body"))
            problems.append(f"{loc}: {err['msg']}")
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    # Scopes per router (docs/payroll.md#access); closing, restating and manual
    # items need admin on top of payroll (services/api/periods.py).
    # Every answer an operation can give is in the OpenAPI document (its bodies
    # are set in openapi() above): the auth answers when tokens are on, and each
    # router's own.
    auth: dict[int | str, dict[str, Any]] = (
        {401: {"description": "no token, or an unknown one"},
         403: {"description": "the token lacks the scope"}}
        if settings.auth.enabled else {}
    )  # fmt: skip
    Responses = dict[int | str, dict[str, Any]]
    unknown: Responses = {404: {"description": "no such entity, alert or period"}}
    if read:
        app.include_router(kpis.router, dependencies=[require("read")],
                           responses={**auth, **unknown})  # fmt: skip
        app.include_router(alerts.router, dependencies=[require("read")],
                           responses={**auth, **unknown})  # fmt: skip
        # reads need read; a schedule upload needs admin too (it feeds payroll)
        app.include_router(calls.router, dependencies=[require("read")],
                           responses={**auth, **unknown})  # fmt: skip
        app.include_router(reports.router, dependencies=[require("read")],
                           responses={**auth, **unknown})  # fmt: skip
        app.include_router(qa.router, dependencies=[require("read")], responses=auth)
        big: Responses = {413: {"description": "upload too large"}}
        app.include_router(staffing.router, dependencies=[require("read")],
                           responses={**auth, **unknown, **big})  # fmt: skip
        full: Responses = {503: {"description": "too many feeds"}}
        app.include_router(stream.router, dependencies=[require("read")],
                           responses={**auth, **unknown, **full})  # fmt: skip
        # the pages hold no figures: they ask for a token and read the API with it
        app.include_router(pages.router)
        app.include_router(periods.router, dependencies=[require("payroll")], responses={
            **auth, **unknown, 409: {"description": "refused now: `detail` says why"},
            413: {"description": "upload too large"}})  # fmt: skip
        no_broker: Responses = {503: {"description": "no broker to replay to"}}
        app.include_router(quarantine.router, dependencies=[require("admin")],
                           responses={**auth, **no_broker})  # fmt: skip
    if ingest:
        app.include_router(create_ingest_router(settings), dependencies=[require("ingest")],
                           responses=auth)  # fmt: skip
    app.include_router(metrics.router, dependencies=[require("read")], responses=auth)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    not_ready: Responses = {503: {"description": "a dependency is away: `reasons` names it"}}

    @app.get("/readyz", tags=["operations"], responses=not_ready)
    async def readyz(request: Request) -> JSONResponse:
        """Ready when Postgres answers and, for ingest, the broker does; otherwise
        503 with `reasons` naming the dependency. `quarantined`: events the worker
        set aside and nobody replayed yet, per stage; `pipeline`: how far behind
        the workers are (docs/operations.md#health)."""
        from services.readmodel.queries import quarantine_waiting

        reasons: list[str] = []
        body: dict[str, Any] = {}
        try:
            async with asyncio.timeout(READY_PROBE_S), app.state.engine.connect() as conn:
                waiting = await quarantine_waiting(conn)
            body["quarantined"] = {k: v["events"] for k, v in waiting.items()}
            DEPENDENCY_UP.labels("postgres").set(1)
        except Exception as exc:
            DEPENDENCY_UP.labels("postgres").set(0)
            reasons.append(reason(exc, default="postgres", waited_s=READY_PROBE_S))
        producer = getattr(app.state, "producer", None)
        if producer is not None and not producer.guard.up:
            reasons.append(f"{producer.guard.error} (ingest cannot accept events)")
        pipeline: PipelineStatus | None = getattr(app.state, "pipeline", None)
        if pipeline is not None:
            body["pipeline"] = pipeline.summary()
        return JSONResponse({"ready": not reasons, "reasons": reasons, **body},
                            status_code=503 if reasons else 200)  # fmt: skip

    return app


def _telemetry() -> TelemetryConfig:
    """FastAPI's native OpenTelemetry asks the global providers on every request
    whether one is configured, reading the environment each time: 8% of the
    process's CPU per request in `bench.reads`. Where nothing configures
    OpenTelemetry (no OTEL_* or FASTAPI_OTEL_* variable), it is off; where
    something does (`opentelemetry-instrument`, an exporter's variables), it keeps
    FastAPI's defaults."""
    if any(name.startswith(("OTEL_", "FASTAPI_OTEL_")) for name in os.environ):
        return {}
    return {"tracing": False, "metrics": False, "logs": False}


def _unavailable(request: Request, exc: BaseException) -> JSONResponse:
    why = reason(exc)
    log.warning("%s %s: 503, %s", request.method, request.url.path, why)
    return JSONResponse(
        {"detail": f"{why.split(':', 1)[0]} unavailable, retry shortly ({why})"},
        503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )

"""`GET /metrics`: KPI gauges computed at scrape time from the same counters and
the same functions as the read API, plus pipeline counters.

With Postgres away the scrape still answers 200 with what this process knows
without it (process and pipeline gauges, `callkpi_dependency_up`): Prometheus
keeps the series that say what is wrong exactly when they are needed."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerting.health import alert_families
from services.api.deps import EngineDep, SettingsDep
from services.api.pipeline import PipelineStatus
from services.api.tiles import STAFFING_WINDOW
from services.core.faults import is_unreachable, reason
from services.core.kafka import DEPENDENCY_UP
from services.core.settings import Settings
from services.core.timewin import trailing, window_bounds
from services.readmodel import queries, staffing
from services.readmodel.figures import Figures

log = logging.getLogger("callkpi.api")

router = APIRouter(tags=["operations"])

# A scrape waits this long for Postgres before answering without its figures
# (Prometheus' default scrape timeout is 10 s).
DB_SCRAPE_S = 5.0

GAUGE_WINDOWS = ("15m", "1h", "today")
# metric name -> field of call_metrics
GAUGES = {
    "callkpi_answer_rate": ("answer_rate", "Answer rate (接通率), fraction 0-1"),
    "callkpi_service_level": ("service_level", "Service level, fraction 0-1"),
    "callkpi_asa_seconds": ("asa_seconds", "Average speed of answer, seconds"),
    "callkpi_aht_seconds": ("aht_seconds", "Average handle time, seconds"),
    "callkpi_fcr_rate_provisional": ("fcr_rate_provisional", "Provisional first-call resolution"),
    "callkpi_calls_in_queue": ("in_queue", "Calls offered in the window still waiting"),
}
LABELS = ("kind", "id", "window")


class _Snapshot(Collector):
    """Holds one scrape's samples; rebuilt on every request."""

    def __init__(self) -> None:
        self.families: list[GaugeMetricFamily | CounterMetricFamily] = []

    def collect(self):  # type: ignore[no-untyped-def]
        yield from self.families


@router.get(
    "/metrics",
    include_in_schema=True,
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request, engine: EngineDep, settings: SettingsDep) -> Response:
    now = datetime.now(UTC)
    snap = _Snapshot()
    pipeline: PipelineStatus | None = getattr(request.app.state, "pipeline", None)
    try:
        async with asyncio.timeout(DB_SCRAPE_S), engine.connect() as conn:
            snap.families.extend(await _figure_families(conn, settings, now, pipeline is None))
        DEPENDENCY_UP.labels("postgres").set(1)
    except Exception as exc:
        if not (isinstance(exc, TimeoutError) or is_unreachable(exc)):
            raise
        DEPENDENCY_UP.labels("postgres").set(0)
        log.warning(
            "/metrics without figures: %s",
            reason(exc, default="postgres", waited_s=DB_SCRAPE_S),
        )
    if pipeline is not None:
        snap.families.extend(pipeline.families())
    registry = CollectorRegistry()
    registry.register(snap)
    body = generate_latest(REGISTRY) + generate_latest(registry)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


async def _figure_families(
    conn: AsyncConnection, settings: Settings, now: datetime, with_lag: bool
) -> list[GaugeMetricFamily | CounterMetricFamily]:
    """Everything read from Postgres: the KPI gauges, alerts, processed events,
    the quarantine; and, without a broker to ask (`with_lag`), the lag the
    workers recorded."""
    gauges = {
        name: GaugeMetricFamily(name, help_, labels=LABELS) for name, (_, help_) in GAUGES.items()
    }
    calls = GaugeMetricFamily(
        "callkpi_answer_rate_calls",
        "Calls the answer rate is computed over (answered + abandoned - short abandons "
        "+ timed out): the volume behind the rate, for min-volume guards",
        labels=LABELS,
    )
    kinds = ["center", "team", "queue"] + (["agent"] if settings.metrics_include_agents else [])
    # stored counters only, without the open part of agents' current states:
    # every API replica exports the same value for the same committed figures
    figures = Figures(conn, settings, now, reasons=False)
    for window in GAUGE_WINDOWS:
        span = window_bounds(window, now, settings.tz)
        for kind in kinds:
            for r in await figures.entities(kind, span, open_time=False):
                # agents have their own shape (no service level, ASA or queue):
                # export the gauges whose field they have
                values = r.metrics()
                for name, (field, _) in GAUGES.items():
                    value = values.get(field)
                    if value is not None:
                        gauges[name].add_metric([kind, r.id, window], float(value))
                if kind != "agent":
                    calls.add_metric([kind, r.id, window], float(r.calls))
    stats = await queries.pipeline_stats(conn)
    families: list[GaugeMetricFamily | CounterMetricFamily] = [*gauges.values(), calls]
    families.extend(await _staffing_families(figures, settings, now))
    families.extend(await alert_families(conn, settings, now))
    processed = CounterMetricFamily(
        "callkpi_events_processed", "Events processed by the workers (all workers, from Postgres)"
    )
    processed.add_metric([], float(stats["processed"]))
    families.append(processed)
    if with_lag:
        lag = GaugeMetricFamily(
            "callkpi_processing_lag_seconds",
            "Ingest to figures committed, newest batch of any live worker (this API has no "
            "broker to measure the backlog at)",
        )
        lag.add_metric([], stats["lag_us"] / 1e6)
        families.append(lag)
    families.extend(await _quarantine_families(conn, now))
    return families


STAFFING_GAUGES = {
    "callkpi_required_agents": ("required_agents", "Agents the last 30 minutes' load requires "
                                "for the service-level goal (Erlang A or C, docs/staffing.md)"),
    "callkpi_staffed_agents": ("staffed_agents", "Agents available, on call or in wrap-up, "
                               "on average over the last 30 minutes"),
    "callkpi_scheduled_agents": ("scheduled_agents", "Agents scheduled on the phones, on "
                                 "average over the last 30 minutes"),
}  # fmt: skip


async def _staffing_families(
    figures: Figures, settings: Settings, now: datetime
) -> list[GaugeMetricFamily]:
    """Required, staffed and scheduled agents of the center and each team."""
    out = {
        n: GaugeMetricFamily(n, h, labels=["kind", "id"]) for n, (_, h) in STAFFING_GAUGES.items()
    }
    span = trailing(STAFFING_WINDOW, now)
    for kind in ("center", "team"):
        for ident in await figures.ids(kind, span, open_time=False):
            values = (await staffing.current(figures, kind, ident, span)).json()
            for name, (field, _) in STAFFING_GAUGES.items():
                if values[field] is not None:
                    out[name].add_metric([kind, ident], float(values[field]))
    return list(out.values())


async def _quarantine_families(conn: AsyncConnection, now: datetime) -> list[GaugeMetricFamily]:
    """Events set aside and waiting for a replay, per stage, and how long the oldest
    has waited (0 and absent when none): deploy/prometheus/rules.yml alerts on it."""
    waiting = await queries.quarantine_waiting(conn)
    count = GaugeMetricFamily(
        "callkpi_quarantined_events",
        "Events the worker set aside (processing them fails for good) and nobody replayed",
        labels=["stage"],
    )
    age = GaugeMetricFamily(
        "callkpi_quarantine_oldest_age_seconds",
        "Seconds since the oldest event still waiting in the quarantine was set aside",
        labels=["stage"],
    )
    for stage in ("events", "facts"):
        w = waiting.get(stage)
        count.add_metric([stage], float(w["events"]) if w else 0.0)
        if w:
            age.add_metric([stage], max(0.0, (now - w["oldest"]).total_seconds()))
    return [count, age]

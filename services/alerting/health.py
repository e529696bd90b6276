"""Alerting in /metrics: thresholds in force, open alerts, outbox and webhooks.

Read from Postgres at scrape time, so every API process shows the same figures
whichever of them evaluates or delivers.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerting.evaluator import configured_entities
from services.alerting.sinks import url_label
from services.core.db import alert_transitions, alerts, webhook_deliveries
from services.core.settings import Settings


async def alert_families(
    conn: AsyncConnection, settings: Settings, now: datetime
) -> list[GaugeMetricFamily]:
    cls = settings.alerts.schedule.class_at(now, settings.tz)
    answer = GaugeMetricFamily(
        "callkpi_answer_rate_threshold",
        "Answer-rate threshold in force now (peak/off-peak schedule); absent when none is",
        labels=("kind", "id"),
    )
    generic = GaugeMetricFamily(
        "callkpi_alert_threshold",
        "Threshold in force now for each alert rule and entity",
        labels=("rule", "field", "kind", "id", "schedule_class"),
    )
    seen: set[tuple[str, str]] = set()
    for rule in settings.alerts.rules:
        threshold = rule.thresholds.in_force(cls)
        if threshold is None:
            continue
        for ident in configured_entities(settings, rule):
            generic.add_metric([rule.id, rule.field, rule.kind, ident, cls], threshold)
            # one series per entity: with two answer-rate rules on one entity, the
            # first rule in the config gives the gauge
            if rule.field == "answer_rate" and (rule.kind, ident) not in seen:
                seen.add((rule.kind, ident))
                answer.add_metric([rule.kind, ident], threshold)

    active = GaugeMetricFamily(
        "callkpi_alert_active",
        "1 for each open alert, by rule, entity and state (pending or firing)",
        labels=("rule", "kind", "id", "state"),
    )
    rows = await conn.execute(
        sa.select(alerts.c.rule_id, alerts.c.kind, alerts.c.entity_id, alerts.c.state).where(
            alerts.c.state.in_(("pending", "firing"))
        )
    )
    for r in rows:
        active.add_metric([r.rule_id, r.kind, r.entity_id, r.state], 1.0)

    unpublished = GaugeMetricFamily(
        "callkpi_alert_transitions_unpublished",
        "Alert transitions not yet on the alerts topic (grows while Kafka is unreachable)",
    )
    t = alert_transitions
    unpublished.add_metric(
        [],
        float(await conn.scalar(sa.select(sa.func.count()).where(t.c.published_at.is_(None))) or 0),
    )
    return [answer, generic, active, unpublished, *await _webhook_families(conn)]


async def _webhook_families(conn: AsyncConnection) -> list[GaugeMetricFamily]:
    labels = ("rule", "webhook")
    up = GaugeMetricFamily(
        "callkpi_webhook_up",
        "0 when the latest delivery attempt to this webhook failed, else 1",
        labels=labels,
    )
    waiting = GaugeMetricFamily(
        "callkpi_webhook_undelivered",
        "Deliveries to this webhook still being retried",
        labels=labels,
    )
    dead = GaugeMetricFamily(
        "callkpi_webhook_dead_deliveries",
        "Deliveries given up after alerts.webhook_give_up_after",
        labels=labels,
    )
    oldest = GaugeMetricFamily(
        "callkpi_webhook_oldest_undelivered_seconds",
        "Age of the oldest delivery still being retried (0 when none)",
        labels=labels,
    )
    d = webhook_deliveries
    latest = (
        sa.select(
            d.c.rule_id,
            d.c.url,
            d.c.delivered_at.is_not(None).label("ok"),
            sa.func.row_number()
            .over(partition_by=(d.c.rule_id, d.c.url), order_by=d.c.last_attempt_at.desc())
            .label("n"),
        )
        .where(d.c.last_attempt_at.is_not(None))
        .subquery()
    )
    last_ok = {
        (r.rule_id, r.url): bool(r.ok)
        for r in await conn.execute(sa.select(latest).where(latest.c.n == 1))
    }
    pending = sa.and_(d.c.delivered_at.is_(None), d.c.dead.is_(False))
    summary = await conn.execute(
        sa.select(
            d.c.rule_id,
            d.c.url,
            sa.func.count().filter(pending).label("waiting"),
            sa.func.count().filter(d.c.dead).label("dead"),
            sa.func.coalesce(
                sa.func.extract(
                    "epoch", sa.func.now() - sa.func.min(d.c.created_at).filter(pending)
                ),
                0,
            ).label("oldest"),
        ).group_by(d.c.rule_id, d.c.url)
    )
    for r in summary:
        key = [r.rule_id, url_label(r.url)]
        up.add_metric(key, 1.0 if last_ok.get((r.rule_id, r.url), True) else 0.0)
        waiting.add_metric(key, float(r.waiting))
        dead.add_metric(key, float(r.dead))
        oldest.add_metric(key, float(r.oldest))
    return [up, waiting, dead, oldest]

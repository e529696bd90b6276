"""Evaluates every alert rule against the counters, and stores the transitions.

One evaluation is one transaction that holds an advisory lock: evaluators in
several API processes take turns, and each sees the state the previous one left
(the unique index on open alerts is the second guard). The figure comes from the
same counters and the same functions as the read API, over the rule's trailing
window of minute buckets, so an alert's observed value is what
`GET /v1/kpis/{kind}/{id}?window=…` showed at that moment.

Each transition is written with the message it publishes (the outbox): the Kafka
publisher and the webhook deliverer (services/alerting/sinks.py) send it from
there, so a crash between the decision and the notification loses nothing, and
no sink can hold up evaluation.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.alerting.machine import Observation, Open, Step, steps
from services.core.alert_rules import (
    DEVIATION_FIELDS,
    STAFFING_FIELDS,
    AlertRule,
    ScheduleClass,
)
from services.core.db import LOCK_ALERTS, alert_transitions, alerts, webhook_deliveries
from services.core.kpi import agent_time, zero_counters
from services.core.qa_figures import CHANGE_FIELDS
from services.core.settings import Settings
from services.core.timewin import iso, trailing
from services.readmodel import staffing
from services.readmodel.deviations import change_readings
from services.readmodel.figures import Figures, Span

log = logging.getLogger("callkpi.alerts")

SCHEMA_ID = "callkpi.alert-transition.v1"
# Fields that include agent time: they need the open state of each agent up to
# now, as the read API adds it.
_TIME_FIELDS = frozenset(agent_time(zero_counters()))


def configured_entities(settings: Settings, rule: AlertRule) -> list[str]:
    """The entities a rule names or, without ids, the roster's of its kind."""
    if rule.ids and rule.kind != "center":
        return list(rule.ids)
    return settings.roster(rule.kind)


def watches(rule: AlertRule, kind: str, entity_id: str) -> bool:
    """Whether `rule` watches this entity (what a wallboard tile shows the line
    of): its kind, and one of the entities it names, or any when it names none."""
    if rule.kind != kind:
        return False
    return not rule.ids or kind == "center" or entity_id in rule.ids


def rule_json(rule: AlertRule) -> dict[str, Any]:
    """The rule as it was when the alert opened (the config may change later).
    Webhook URLs are left out: they can carry credentials."""
    return {
        "id": rule.id,
        "field": rule.field,
        "kind": rule.kind,
        "direction": rule.direction,
        "thresholds": {"peak": rule.thresholds.peak, "off_peak": rule.thresholds.off_peak},
        "window_seconds": int(rule.window.total_seconds()),
        "min_calls": rule.min_calls,
        "for_seconds": int(rule.hold.total_seconds()),
        "clear_margin": rule.clear_margin,
    }


def _ts(value: datetime | None, settings: Settings) -> str | None:
    return None if value is None else iso(value, settings.tz)


def alert_json(row: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """An alert as the API, the topic and the webhooks show it."""
    return {
        "id": row["id"],
        "state": row["state"],
        "rule": row["rule"],
        "kind": row["kind"],
        "entity_id": row["entity_id"],
        "field": row["field"],
        "threshold": row["threshold"],
        "schedule_class": row["schedule_class"],
        "observed_value": row["observed_value"],
        "calls_in_window": row["calls_in_window"],
        "pending_since": _ts(row["pending_since"], settings),
        "started_at": _ts(row["fired_at"], settings),
        "resolved_at": _ts(row["resolved_at"], settings),
        "resolution": row["resolution"],
        "evaluated_at": _ts(row["evaluated_at"], settings),
    }


@dataclass
class Evaluation:
    at: datetime
    schedule_class: ScheduleClass
    checked: int = 0  # (rule, entity) pairs evaluated
    transitions: list[dict[str, Any]] = field(default_factory=list)


class Evaluator:
    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.engine = engine
        # A deviation rule reads its window and `qa.baseline_weeks` copies of it,
        # days of every agent's buckets: once per window end (a minute), not at
        # every evaluation (10 s). A minute's lag is nothing to a figure over days.
        self._deviations: dict[str, tuple[datetime, dict[str, tuple[float | None, int]]]] = {}

    async def evaluate(self, now: datetime | None = None) -> Evaluation | None:
        """Evaluate every rule at `now` (default: the clock). None when another
        evaluator holds the lock: it is doing this very work."""
        now = (now or datetime.now(UTC)).astimezone(UTC)
        async with self.engine.begin() as conn:
            got = await conn.scalar(
                sa.text("SELECT pg_try_advisory_xact_lock(:k, 0)"), {"k": LOCK_ALERTS}
            )
            if not got:
                return None
            return await self._evaluate(conn, now)

    async def _evaluate(self, conn: AsyncConnection, now: datetime) -> Evaluation:
        cfg = self.settings.alerts
        cls = cfg.schedule.class_at(now, self.settings.tz)
        result = Evaluation(now, cls)
        rows = await conn.execute(
            sa.select(alerts).where(alerts.c.state.in_(("pending", "firing")))
        )
        open_alerts = {(r.rule_id, r.kind, r.entity_id): dict(r._mapping) for r in rows}
        figures = Figures(conn, self.settings, now, reasons=False)
        for rule in cfg.rules:
            threshold = rule.thresholds.in_force(cls)
            still_open = [e for (r, k, e) in open_alerts if r == rule.id and k == rule.kind]
            async for entity, value, calls in self._observe(conn, figures, rule, still_open):
                obs = Observation(now, cls, threshold, value, calls)
                row = open_alerts.pop((rule.id, rule.kind, entity), None)
                await self._apply(conn, rule, entity, row, obs, result)
                result.checked += 1
        # Open alerts no rule watches any more (the config changed): close them
        # rather than leave them firing forever.
        for row in open_alerts.values():
            gone = Step(
                "cancelled" if row["state"] == "pending" else "resolved",
                "rule no longer configured for this entity",
            )
            await self._write(conn, None, row, gone, None, result)
        return result

    async def _observe(
        self, conn: AsyncConnection, figures: Figures, rule: AlertRule, still_open: list[str]
    ) -> AsyncIterator[tuple[str, float | None, int]]:
        """Each entity the rule watches, with its figure and calls over the window."""
        if rule.field not in DEVIATION_FIELDS:
            with_data = await figures.with_data(rule.kind, rule_span(rule, figures.now))
            for entity in watched_entities(self.settings, rule, with_data, still_open):
                yield entity, *await rule_value(figures, rule, entity)
            return
        # a deviation rule reads every agent at once (each is judged within its team)
        end = rule_span(rule, figures.now)[1]
        cached = self._deviations.get(rule.id)
        if cached is None or cached[0] != end:
            cached = (end, await deviation_readings(conn, self.settings, rule, figures.now))
            self._deviations[rule.id] = cached
        readings = cached[1]
        for entity in watched_entities(self.settings, rule, readings, still_open):
            yield entity, *readings.get(entity, (None, 0))

    async def _apply(
        self,
        conn: AsyncConnection,
        rule: AlertRule,
        entity: str,
        row: dict[str, Any] | None,
        obs: Observation,
        result: Evaluation,
    ) -> None:
        current = None if row is None else Open(row["state"], row["pending_since"])
        todo = steps(rule, current, obs)
        if not todo:
            if row is not None:
                await conn.execute(
                    alerts.update().where(alerts.c.id == row["id"]).values(**_observed(obs))
                )
            return
        if row is None:
            row = {
                "rule_id": rule.id,
                "field": rule.field,
                "kind": rule.kind,
                "entity_id": entity,
                "state": "ok",
                "rule": rule_json(rule),
                "pending_since": obs.at,
                "fired_at": None,
                "resolved_at": None,
                "resolution": None,
                **_observed(obs),
            }
        for step in todo:
            row = await self._write(conn, rule, row, step, obs, result)

    async def _write(
        self,
        conn: AsyncConnection,
        rule: AlertRule | None,
        row: dict[str, Any],
        step: Step,
        obs: Observation | None,
        result: Evaluation,
    ) -> dict[str, Any]:
        """Store one transition: the alert row, the transition with its message,
        and a webhook delivery per URL for the ones people are told about."""
        at = result.at
        before = row["state"]
        new = dict(row, state=step.to)
        if obs is not None:
            new.update(_observed(obs))
        else:
            new["evaluated_at"] = at
        if step.to == "firing":
            new["fired_at"] = at
        if step.to in ("resolved", "cancelled"):
            new["resolved_at"] = at
            new["resolution"] = step.reason
        values = {k: v for k, v in new.items() if k != "id"}
        if "id" in row:
            await conn.execute(alerts.update().where(alerts.c.id == row["id"]).values(**values))
        else:
            new["id"] = await conn.scalar(alerts.insert().values(**values).returning(alerts.c.id))
        body = {
            "schema": SCHEMA_ID,
            "key": str(uuid.uuid4()),
            "from": before,
            "to": step.to,
            "at": iso(at, self.settings.tz),
            "reason": step.reason,
            "alert": alert_json(new, self.settings),
        }
        tid = await conn.scalar(
            alert_transitions.insert()
            .values(
                key=body["key"],
                alert_id=new["id"],
                from_state=before,
                to_state=step.to,
                at=at,
                body=body,
            )
            .returning(alert_transitions.c.id)
        )
        urls = rule.webhooks if rule is not None and step.to in ("firing", "resolved") else []
        if urls:
            await conn.execute(
                webhook_deliveries.insert().values(
                    created_at=sa.func.now(), next_attempt_at=sa.func.now()
                ),
                [{"transition_id": tid, "url": url, "rule_id": new["rule_id"]} for url in urls],
            )
        log.info(
            "alert %s %s %s/%s: %s → %s (%s)",
            new["id"],
            new["rule_id"],
            new["kind"],
            new["entity_id"],
            before,
            step.to,
            step.reason,
        )
        result.transitions.append(body)
        return new


def _observed(obs: Observation) -> dict[str, Any]:
    return {
        "threshold": obs.threshold,
        "schedule_class": obs.schedule_class,
        "observed_value": obs.value,
        "calls_in_window": obs.calls,
        "evaluated_at": obs.at,
    }


def rule_span(rule: AlertRule, now: datetime) -> Span:
    return trailing(rule.window, now)


def watched_entities(
    settings: Settings, rule: AlertRule, with_data: Iterable[str], still_open: Iterable[str] = ()
) -> list[str]:
    """A rule's entities: those it names, or the roster's and any with data in
    its window (and any with an alert still open)."""
    roster = configured_entities(settings, rule)
    if rule.kind == "center" or rule.ids:
        return roster
    return sorted(set(roster) | set(with_data) | set(still_open))


async def rule_value(figures: Figures, rule: AlertRule, entity: str) -> tuple[float | None, int]:
    """The rule's field for one entity over its window, and the calls behind it."""
    span = rule_span(rule, figures.now)
    reading = await figures.entity(rule.kind, entity, span, open_time=rule.field in _TIME_FIELDS)
    if rule.field in STAFFING_FIELDS:
        value = (await staffing.current(figures, rule.kind, entity, span)).ratio
        return value, reading.calls
    value = reading.metrics()[rule.field]
    return (None if value is None else float(value)), reading.calls


async def deviation_readings(
    conn: AsyncConnection, settings: Settings, rule: AlertRule, now: datetime
) -> dict[str, tuple[float | None, int]]:
    """A deviation rule's observation of every agent it watches over its window:
    the change from the agent's baseline (the same hours of the `qa`
    settings' weeks before) where the team finds it unusual, and its calls."""
    start, end = rule_span(rule, now)
    agents = configured_entities(settings, rule)
    return await change_readings(conn, settings, CHANGE_FIELDS[rule.field], agents, start, end,
                                 rule.min_calls)  # fmt: skip

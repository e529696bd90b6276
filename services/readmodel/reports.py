"""A report: one entity's figures per interval with what they are judged
against, the alert line in force over each interval, the agents required,
scheduled and staffed, and the same interval a week before. The reports page
draws it and the CSV and XLSX downloads are its rows, column for column
(docs/reports.md#reports)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from services.core.alert_rules import AlertRule, ScheduleClass
from services.core.timewin import iso, local_shift
from services.readmodel import staffing
from services.readmodel.figures import Figures, Reading

Unit = Literal["time", "text", "count", "rate", "seconds", "agents"]
CALL_KINDS = frozenset({"center", "team", "queue"})
ALL_KINDS = CALL_KINDS | {"agent"}
# Staffing is a number of agents per interval: over a day or longer it is not
# one number (the load of 10:00 is not the load of 03:00), so it stops at 1h.
STAFFING_GRANULARITIES = ("15m", "30m", "1h")
# "the same weekday of the previous week": for months there is no such thing
COMPARED_GRANULARITIES = ("15m", "30m", "1h", "1d", "1w")
# the figures an alert rule's line is drawn against, when one watches them
LINE_FIELDS = ("answer_rate", "service_level")


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    label: str
    unit: Unit
    kinds: frozenset[str] = ALL_KINDS


COLUMNS: tuple[Column, ...] = (
    Column("from", "From", "time"),
    Column("to", "To", "time"),
    Column("schedule_class", "Hours", "text", CALL_KINDS),
    Column("offered", "Offered", "count", CALL_KINDS),
    Column("presented", "Presented", "count", frozenset({"agent"})),
    Column("answered", "Answered", "count"),
    Column("abandoned", "Abandoned", "count", CALL_KINDS),
    Column("short_abandoned", "Short abandons", "count", CALL_KINDS),
    Column("timed_out", "Timed out", "count", CALL_KINDS),
    Column("answer_rate", "Answer rate", "rate"),
    Column("answer_rate_line", "Answer rate line", "rate", CALL_KINDS),
    Column("answer_rate_status", "Answer rate vs line", "text", CALL_KINDS),
    Column("service_level", "Service level", "rate", CALL_KINDS),
    Column("service_level_line", "Service level line", "rate", CALL_KINDS),
    Column("service_level_status", "Service level vs line", "text", CALL_KINDS),
    Column("asa_seconds", "ASA", "seconds", CALL_KINDS),
    Column("aht_seconds", "AHT", "seconds"),
    Column("fcr_rate_provisional", "FCR (provisional)", "rate"),
    Column("csat", "CSAT", "rate"),
    Column("occupancy", "Occupancy", "rate", frozenset({"center", "team", "agent"})),
    Column("required_agents", "Required agents", "agents", CALL_KINDS),
    Column(
        "scheduled_agents", "Scheduled agents", "agents", frozenset({"center", "team", "agent"})
    ),
    Column("staffed_agents", "Staffed agents", "agents", frozenset({"center", "team", "agent"})),
    Column("last_week_offered", "Offered, week before", "count", CALL_KINDS),
    Column("last_week_answered", "Answered, week before", "count"),
    Column("last_week_answer_rate", "Answer rate, week before", "rate"),
    Column("last_week_service_level", "Service level, week before", "rate", CALL_KINDS),
    Column("last_week_asa_seconds", "ASA, week before", "seconds", CALL_KINDS),
    Column("last_week_aht_seconds", "AHT, week before", "seconds"),
)
COMPARED = ("offered", "answered", "answer_rate", "service_level", "asa_seconds", "aht_seconds")
STAFFING_COLUMNS = ("required_agents", "scheduled_agents", "staffed_agents")


def columns_for(kind: str) -> list[Column]:
    return [c for c in COLUMNS if kind in c.kinds]


def status(
    rule: AlertRule | None, line: float | None, value: float | None, calls: int
) -> str | None:
    """How a figure stands against its line over one interval, as the wallboard
    colours it: `below` (past the line on at least the rule's min_calls: what
    would alert), `thin` (past it on fewer calls), `ok`; None without a line or
    a value."""
    if rule is None or line is None or value is None:
        return None
    if not rule.breached(value, line):
        return "ok"
    return "below" if calls >= rule.min_calls else "thin"


def _line(rule: AlertRule | None, classes: set[ScheduleClass]) -> float | None:
    """The rule's threshold over an interval, when one schedule class holds for
    all of it (an interval half peak, half off-peak has no one line)."""
    if rule is None or len(classes) != 1:
        return None
    (cls,) = classes
    return rule.thresholds.in_force(cls)


async def report(
    figures: Figures,
    kind: str,
    entity_id: str,
    edges: list[datetime],
    granularity: str,
    sl: int | None,
) -> dict[str, Any]:
    s = figures.settings
    tz = s.tz
    readings = await figures.intervals(kind, entity_id, edges)
    staff: list[dict[str, Any]] | None = None
    if granularity in STAFFING_GRANULARITIES:
        st = await staffing.intervals(
            figures, kind, entity_id, edges, readings=readings, forecast=False
        )
        staff = st["intervals"]
    before: list[Reading] | None = None
    if granularity in COMPARED_GRANULARITIES:
        before = await figures.intervals(kind, entity_id, [local_shift(e, -7, tz) for e in edges])
    rules = {f: s.alerts.rule_for(kind, entity_id, f) for f in LINE_FIELDS}
    names = [c.name for c in columns_for(kind)]
    rows: list[dict[str, Any]] = []
    for i, reading in enumerate(readings):
        m = reading.metrics(sl)
        classes = s.alerts.schedule.classes_between(edges[i], edges[i + 1], tz)
        row: dict[str, Any] = {
            "from": iso(edges[i], tz),
            "to": iso(edges[i + 1], tz),
            "schedule_class": next(iter(classes)) if len(classes) == 1 else "mixed",
        }
        for name in names:
            if name in m:
                row[name] = m[name]
        for f, rule in rules.items():
            line = _line(rule, classes)
            row[f"{f}_line"] = line
            row[f"{f}_status"] = status(rule, line, m.get(f), reading.calls)
        for name in STAFFING_COLUMNS:
            row[name] = staff[i].get(name) if staff is not None else None
        prev = before[i].metrics(sl) if before is not None else {}
        for name in COMPARED:
            row[f"last_week_{name}"] = prev.get(name)
        rows.append({n: row.get(n) for n in names})
    return {
        "columns": [{"name": c.name, "label": c.label, "unit": c.unit} for c in columns_for(kind)],
        "lines": {
            f: None
            if rule is None
            else {
                "rule": rule.id,
                "direction": rule.direction,
                "min_calls": rule.min_calls,
                "peak": rule.thresholds.peak,
                "off_peak": rule.thresholds.off_peak,
            }
            for f, rule in rules.items()
        },
        "staffing": granularity in STAFFING_GRANULARITIES,
        "compared": granularity in COMPARED_GRANULARITIES,
        "rows": rows,
    }

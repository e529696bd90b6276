"""Staffing figures over intervals, and agents' schedule figures over a span:
the stored counters (through `Figures`, so open time counts as everywhere), the
schedule in force and the state segments, put through services/core/staffing.py.
docs/staffing.md says what each figure is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from services.core.kpi import handle_us
from services.core.schedules import Segment
from services.core.staffing import (
    AgentSchedule,
    Requirement,
    agent_schedule,
    patience_seconds,
    productive_us,
    requirement,
    schedule_fit,
    scheduled_agents,
    wape,
    weighted_forecast,
)
from services.core.staffing_rules import Goal
from services.core.timewin import epoch_us, iso, local_shift
from services.readmodel import queries, schedules
from services.readmodel.figures import Figures, Reading

US = 1_000_000
STAFFED_KINDS = ("center", "team", "agent")  # kinds with agents (queues have none)
REQUIRED_KINDS = ("center", "team", "queue")  # kinds with calls of their own


def _agents_of(figures: Figures, kind: str, entity_id: str, agents: set[str]) -> set[str]:
    s = figures.settings
    if kind == "center":
        return agents
    if kind == "team":
        return {a for a in agents if s.agent_team(a) == entity_id}
    if kind == "agent":
        return {entity_id} & agents
    return set()


async def _segments(
    figures: Figures,
    edges: Sequence[datetime],
    as_of: int | None = None,
    agents: list[str] | None = None,
) -> list[Segment]:
    """The schedule in force over the edges' span, of `agents` (None: every
    agent), read once per Figures: a wallboard's tiles share one read."""
    key = ("schedule", edges[0], edges[-1], as_of, None if agents is None else tuple(agents))
    if key not in figures.memo:
        tz = figures.settings.tz
        first = edges[0].astimezone(tz).date() - timedelta(days=1)  # a night shift's day
        last = edges[-1].astimezone(tz).date()
        # whole shifts of those days (attendance needs each shift's own start)
        figures.memo[key] = await schedules.in_force(
            figures.conn, None, None, first, last, agents, as_of
        )
    segs: list[Segment] = figures.memo[key]
    return segs


async def _scheduled(
    figures: Figures, kind: str, entity_id: str, edges: Sequence[datetime]
) -> list[float]:
    """The entity's agents scheduled on the phones per interval [edges[i], edges[i+1])."""
    segs = await _segments(figures, edges, agents=[entity_id] if kind == "agent" else None)
    mine = _agents_of(figures, kind, entity_id, {g.agent_id for g in segs})
    productive = {n for n, a in figures.settings.staffing.activities.items() if a.productive}
    return scheduled_agents(
        [g for g in segs if g.agent_id in mine], [epoch_us(t) for t in edges], productive
    )


def _requirement(
    figures: Figures, goal: Goal, offered: int, seconds: float, aht: float | None,
    patience: float | None,
) -> Requirement | None:  # fmt: skip
    cfg = figures.settings.staffing
    return requirement(offered, seconds, aht, goal, patience, cfg.model, cfg.max_occupancy)


@dataclass(frozen=True, slots=True)
class History:
    """What the days before a range say of an entity: patience and AHT."""

    start: datetime
    end: datetime
    patience_s: float | None
    aht_s: float | None


# History changes slowly (a day's calls move a 28-day patience little) and costs
# a sum over weeks of minute rows: what the wallboard, /metrics and the alert
# evaluator ask every few seconds is read again every HISTORY_TTL of log time.
HISTORY_TTL = timedelta(minutes=10)
_HISTORY_CACHE: dict[tuple[str, str, str, datetime], History] = {}


async def recent_history(figures: Figures, kind: str, entity_id: str) -> History:
    """`history` up to now, read again every HISTORY_TTL."""
    step = HISTORY_TTL.total_seconds()
    now = figures.now
    slot = datetime.fromtimestamp(now.timestamp() // step * step, UTC)
    key = (str(figures.conn.engine.url), kind, entity_id, slot)
    if key in _HISTORY_CACHE:
        return _HISTORY_CACHE[key]
    hist = await history(figures, kind, entity_id, slot)
    # an empty history is not kept: right after a start or an import it is a
    # history the worker has not counted yet, not one without calls
    if hist.aht_s is not None:
        if len(_HISTORY_CACHE) > 10_000:
            _HISTORY_CACHE.clear()
        _HISTORY_CACHE[key] = hist
    return hist


async def history(figures: Figures, kind: str, entity_id: str, end: datetime) -> History:
    days = figures.settings.staffing.history_days
    stop = min(end, figures.now)
    start = stop - timedelta(days=days)
    r = await figures.entity(kind, entity_id, (start, stop), open_time=False)
    c = r.counters
    aht = r.metrics()["aht_seconds"]
    return History(start, stop, patience_seconds(c["abandoned"], c["wait_all_us"]), aht)


def _req_fields(req: Requirement | None, prefix: str = "") -> dict[str, Any]:
    chosen = req.chosen if req is not None else None
    return {
        f"{prefix}required_agents": chosen.agents if chosen is not None else None,
        f"{prefix}required_agents_erlang_c": (
            req.erlang_c.agents if req is not None and req.erlang_c is not None else None
        ),
        f"{prefix}required_agents_erlang_a": (
            req.erlang_a.agents if req is not None and req.erlang_a is not None else None
        ),
    }


def _prediction(req: Requirement | None) -> dict[str, Any]:
    p = req.chosen if req is not None else None
    return {
        "predicted_service_level": p.service_level if p is not None else None,
        "predicted_asa_seconds": p.asa_seconds if p is not None else None,
        "predicted_occupancy": p.occupancy if p is not None else None,
        "predicted_abandon_rate": p.abandon_rate if p is not None else None,
    }


async def _forecast(
    figures: Figures, kind: str, entity_id: str, edges: list[datetime]
) -> list[tuple[list[tuple[float, float] | None], list[tuple[float, float] | None]]]:
    """Per interval, (offered, AHT) history k + 1 weeks back for k < forecast_weeks:
    ((calls, 1), (handle seconds, handled)) or None before the data begins."""
    cfg = figures.settings.staffing
    begins = await queries.first_bucket(figures.conn)
    n = len(edges) - 1
    out: list[tuple[list[tuple[float, float] | None], list[tuple[float, float] | None]]] = [
        ([], []) for _ in range(n)
    ]
    for k in range(1, cfg.forecast_weeks + 1):
        shifted = [local_shift(e, -7 * k, figures.settings.tz) for e in edges]
        # a fall-back night repeats a wall-clock hour: keep edges strictly rising
        keep = sorted(set(shifted))
        readings = await figures.intervals(kind, entity_id, keep) if len(keep) > 1 else []
        at = {t: i for i, t in enumerate(keep)}
        for i in range(n):
            a, b = shifted[i], shifted[i + 1]
            j = at[a]
            if begins is None or a < begins or b <= a or j + 1 >= len(keep) or keep[j + 1] != b:
                out[i][0].append(None)
                out[i][1].append(None)
                continue
            c = readings[j].counters
            out[i][0].append((float(c["offered"]), 1.0))
            out[i][1].append((handle_us(c) / US, float(c["handled"])))
    return out


async def intervals(
    figures: Figures,
    kind: str,
    entity_id: str,
    edges: list[datetime],
    *,
    readings: list[Reading] | None = None,
    forecast: bool = True,
) -> dict[str, Any]:
    """The staffing of one entity per interval [edges[i], edges[i+1]).
    `readings`: the entity's figures over these edges, when the caller has them;
    `forecast=False`: no forecast (four weeks of history read less)."""
    s = figures.settings
    cfg = s.staffing
    team = s.queue_team(entity_id) if kind == "queue" else None
    goal: Goal = cfg.goal_for(kind, entity_id, team)
    if readings is None:
        readings = await figures.intervals(kind, entity_id, edges)
    hist = await history(figures, kind, entity_id, edges[-1])
    patience = hist.patience_s if cfg.model == "erlang_a" else None
    edges_us = [epoch_us(t) for t in edges]
    lengths = [(edges_us[i + 1] - edges_us[i]) / US for i in range(len(edges) - 1)]

    scheduled: list[float | None] = [None] * len(readings)
    if kind in STAFFED_KINDS:
        scheduled = list(await _scheduled(figures, kind, entity_id, edges))
    forecasts = (
        await _forecast(figures, kind, entity_id, edges)
        if forecast and kind in REQUIRED_KINDS
        else []
    )
    weights = cfg.forecast_weights[: cfg.forecast_weeks]
    rows: list[dict[str, Any]] = []
    now_us = epoch_us(figures.now)
    for i, r in enumerate(readings):
        m = r.metrics(goal.seconds)
        c = r.counters
        row: dict[str, Any] = {
            "from": iso(edges[i], s.tz),
            "to": iso(edges[i + 1], s.tz),
            "offered": c["offered"],
            "aht_seconds": m["aht_seconds"],
            "service_level": m.get("service_level"),
            "answer_rate": m.get("answer_rate"),
        }
        req: Requirement | None = None
        if kind in REQUIRED_KINDS:
            aht = m["aht_seconds"] if m["aht_seconds"] is not None else hist.aht_s
            req = _requirement(figures, goal, c["offered"], lengths[i], aht, patience)
        row |= _req_fields(req) | _prediction(req)
        staffed = logged = None
        if kind in STAFFED_KINDS and edges_us[i] < now_us:
            # the interval in progress: averaged over its part up to now
            elapsed = (min(edges_us[i + 1], now_us) - edges_us[i]) / US
            staffed = productive_us(c) / US / elapsed
            logged = c["logged_in_us"] / US / elapsed
        required = row["required_agents"]
        row |= {
            "scheduled_agents": scheduled[i],
            "staffed_agents": staffed,
            "logged_in_agents": logged,
            "schedule_fit": schedule_fit([(scheduled[i], required)]),
        }
        if forecasts:
            offered_h, aht_h = forecasts[i]
            f_offered = weighted_forecast(offered_h, weights)
            f_aht = weighted_forecast(aht_h, weights)
            f_aht = f_aht if f_aht is not None else hist.aht_s
            f_req = (
                _requirement(figures, goal, round(f_offered), lengths[i], f_aht, patience)
                if f_offered is not None
                else None
            )
            row |= {
                "forecast_offered": f_offered,
                "forecast_aht_seconds": f_aht if f_offered is not None else None,
                "forecast_required_agents": f_req.chosen.agents
                if f_req is not None and f_req.chosen is not None
                else None,
            }
        else:
            row |= {"forecast_offered": None, "forecast_aht_seconds": None,
                    "forecast_required_agents": None}  # fmt: skip
        rows.append(row)
    return {
        "goal": {"target": goal.target, "seconds": goal.seconds},
        "model": cfg.model,
        "patience_seconds": hist.patience_s,
        "history": {
            "from": iso(hist.start, s.tz),
            "to": iso(hist.end, s.tz),
            "aht_seconds": hist.aht_s,
        },
        "schedule_fit": schedule_fit([(r["scheduled_agents"], r["required_agents"]) for r in rows]),
        "days": _days(rows, edges, figures),
        "intervals": rows,
    }


def _days(
    rows: list[dict[str, Any]], edges: list[datetime], figures: Figures
) -> list[dict[str, Any]]:
    """Per local day of the range: its schedule fit and, for the intervals that
    have ended, the forecast's WAPE."""
    tz = figures.settings.tz
    by_day: dict[date, list[int]] = {}
    for i in range(len(rows)):
        by_day.setdefault(edges[i].astimezone(tz).date(), []).append(i)
    out = []
    for day, idx in by_day.items():
        past = [i for i in idx if edges[i + 1] <= figures.now]
        out.append(
            {
                "day": day.isoformat(),
                "offered": sum(rows[i]["offered"] for i in idx),
                "forecast_offered": (
                    sum(rows[i]["forecast_offered"] for i in idx)
                    if all(rows[i]["forecast_offered"] is not None for i in idx)
                    else None
                ),
                "schedule_fit": schedule_fit(
                    [(rows[i]["scheduled_agents"], rows[i]["required_agents"]) for i in idx]
                ),
                "forecast_wape": wape(
                    [(float(rows[i]["offered"]), rows[i]["forecast_offered"]) for i in past]
                ),
            }
        )
    return out


@dataclass(frozen=True, slots=True)
class Current:
    """An entity's staffing over a recent window (the wallboard, /metrics and the
    alert field staffing_ratio): agents the window's load requires, and agents
    staffed and scheduled on average over it."""

    required: int | None
    staffed: float | None
    scheduled: float | None

    @property
    def ratio(self) -> float | None:
        """staffed / required; None when nothing is required (or unknown)."""
        if not self.required or self.staffed is None:
            return None
        return self.staffed / self.required

    def json(self) -> dict[str, Any]:
        return {
            "required_agents": self.required,
            "staffed_agents": self.staffed,
            "scheduled_agents": self.scheduled,
            "staffing_ratio": self.ratio,
        }


async def current(
    figures: Figures, kind: str, entity_id: str, span: tuple[datetime, datetime]
) -> Current:
    s = figures.settings
    cfg = s.staffing
    seconds = (span[1] - span[0]).total_seconds()
    r = await figures.entity(kind, entity_id, span)
    c = r.counters
    required = staffed = scheduled = None
    if kind in REQUIRED_KINDS:
        hist = await recent_history(figures, kind, entity_id)
        aht = r.metrics()["aht_seconds"]
        team = s.queue_team(entity_id) if kind == "queue" else None
        goal = cfg.goal_for(kind, entity_id, team)
        patience = hist.patience_s if cfg.model == "erlang_a" else None
        req = _requirement(figures, goal, c["offered"], seconds,
                           aht if aht is not None else hist.aht_s, patience)  # fmt: skip
        required = req.chosen.agents if req is not None and req.chosen is not None else None
    if kind in STAFFED_KINDS:
        staffed = productive_us(c) / US / seconds
        scheduled = (await _scheduled(figures, kind, entity_id, list(span)))[0]
    return Current(required, staffed, scheduled)


async def agent_schedules(
    figures: Figures,
    agents: list[str] | None,
    span: tuple[datetime, datetime],
    *,
    as_of: int | None = None,
    open_time: bool = True,
) -> dict[str, AgentSchedule]:
    """Each agent's adherence, conformance and attendance over [span) (agents:
    None for every agent with a schedule in it). Agents without a schedule in the
    span get none."""
    s = figures.settings
    cfg = s.staffing
    start_us, end_us = epoch_us(span[0]), epoch_us(span[1])
    segs = await _segments(figures, list(span), as_of, agents)
    by_agent: dict[str, list[Segment]] = {}
    for g in segs:
        if agents is None or g.agent_id in agents:
            by_agent.setdefault(g.agent_id, []).append(g)
    if not by_agent:
        return {}
    early_us = cfg.early_login_minutes * 60 * US
    # from `early` before the span: a login before a shift that starts with it
    states = await queries.state_spans(figures.conn, start_us - early_us, end_us, sorted(by_agent))
    now_us = epoch_us(figures.now)
    if open_time:
        for agent, state, reason, since in (await figures.live()).agents:
            if agent in by_agent and state != "logged_out":
                stop = min(now_us, since + s.kpi.max_state_us)
                if stop > since:
                    states.setdefault(agent, []).append((since, stop, state, reason))
    return {
        agent: agent_schedule(
            mine,
            states.get(agent, []),
            cfg.activities,
            start_us,
            end_us,
            now_us,
            cfg.grace_minutes * 60 * US,
            early_us,
        )
        for agent, mine in by_agent.items()
    }

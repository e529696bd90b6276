"""The one way to get figures: `Figures` reads, over one connection at one
instant, the stored counters of an entity (or of every entity of a kind) over a
span, adds the open part of each agent's current state, and hands back a
`Reading` whose `metrics()` are the catalogue's (services/core/kpi.py).

The read API, its intervals, `/metrics`, the alert evaluator, the wallboard
tiles and payroll close all come through here, so what each kind means is
decided once:
- which entities a list holds: the roster's, those with data in the span, with
  open time the agents that have a state now, and whatever the caller adds
  (payroll: agents with manual items);
- an entity without data reads as zeros;
- open time (the current state up to now, which the minute buckets never hold)
  is added to centers, teams and agents, never to queues, which have no agents;
- not-ready time per reason comes with every reading of an agent, team or
  center, unless the caller says it shows none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.kpi import DEFAULT_BASES, Bases, counted_outcomes, metrics_for, zero_counters
from services.core.settings import Settings
from services.readmodel import live, queries

Span = tuple[datetime, datetime]
Counters = dict[str, int]


@dataclass(frozen=True, slots=True)
class Reading:
    """One entity's counters over one span, and the figures they give."""

    kind: str
    id: str
    counters: Counters
    reasons: Counters  # not-ready microseconds per reason
    bases: Bases = DEFAULT_BASES  # the settings' answer-rate and service-level misses

    def metrics(self, sl_seconds: int | None = None) -> dict[str, Any]:
        return metrics_for(self.kind, self.counters, self.reasons, sl_seconds, self.bases)

    @property
    def calls(self) -> int:
        """The calls the answer rate is computed over (min-volume guards)."""
        return counted_outcomes(self.counters, self.bases.answer_rate)


def entity_extra(settings: Settings, kind: str, entity_id: str) -> dict[str, Any]:
    """What the roster says of an entity: a queue's or agent's team, a team's name."""
    if kind == "queue":
        return {"team": settings.queue_team(entity_id)}
    if kind == "agent":
        return {"team": settings.agent_team(entity_id)}
    if kind == "team":
        return {"name": settings.team_names.get(entity_id, "")}
    return {}


def display_name(settings: Settings, kind: str, entity_id: str) -> str:
    """What a page titles an entity: the center's name, a team's roster name, or
    the id itself."""
    if kind == "center":
        return settings.center_name
    if kind == "team":
        return settings.team_names.get(entity_id) or entity_id
    return entity_id


class Figures:
    """Figures as of `now`. `grouped`: many entities will be read (a list, the
    evaluator, the wallboard), so each (kind, span) is one grouped query shared
    by all of them; otherwise each reading asks for its one entity's rows.
    `reasons=False`: the caller shows no not-ready breakdown (`/metrics`, the
    evaluator, the wallboard), so its query is not run and the breakdown holds
    only the open time's."""

    def __init__(
        self,
        conn: AsyncConnection,
        settings: Settings,
        now: datetime,
        *,
        grouped: bool = True,
        reasons: bool = True,
    ) -> None:
        self.conn = conn
        self.settings = settings
        self.now = now
        self.grouped = grouped
        self.with_reasons = reasons
        self._counters: dict[tuple[str, Span], dict[str, Counters]] = {}
        self._reasons: dict[tuple[str, Span], dict[str, Counters]] = {}
        self._live: live.Live | None = None
        # what other read-model modules compute once per Figures (one instant):
        # the schedule in force over a span, for every tile of a wallboard read
        self.memo: dict[Any, Any] = {}

    async def live(self) -> live.Live:
        """What is true now: agents by state, calls waiting."""
        if self._live is None:
            self._live = await live.load(self.conn, self.settings, self.now)
        return self._live

    # --- which entities ------------------------------------------------------
    async def known(self, kind: str, entity_id: str) -> bool:
        """In the roster or in the data (anything else is a typo)."""
        if entity_id in self.settings.roster(kind):
            return True
        return await queries.entity_exists(self.conn, kind, entity_id)

    async def with_data(self, kind: str, span: Span) -> set[str]:
        """Entities of `kind` with stored counters in [span)."""
        return set(await self._by_entity(kind, span))

    async def ids(
        self, kind: str, span: Span, *, open_time: bool = True, extra: Iterable[str] = ()
    ) -> list[str]:
        """The entities a list of `kind` over `span` holds (the module's rules)."""
        ids = set(self.settings.roster(kind)) | await self.with_data(kind, span) | set(extra)
        if open_time and kind == "agent":
            ids |= {a[0] for a in (await self.live()).agents}
        return sorted(ids)

    # --- readings ------------------------------------------------------------
    async def entity(
        self, kind: str, entity_id: str, span: Span, *, open_time: bool = True
    ) -> Reading:
        """One entity over [span); with `open_time`, each of its agents' current
        state counts up to now (as every read API figure does)."""
        if self.grouped:
            counters = dict((await self._by_entity(kind, span)).get(entity_id) or zero_counters())
            reasons = dict((await self._reasons_by_entity(kind, span)).get(entity_id, {}))
        else:
            counters = await queries.window_counters(self.conn, kind, entity_id, *span)
            reasons = (
                {}
                if kind == "queue" or not self.with_reasons
                else (
                    await queries.reason_counters_by_entity(self.conn, kind, *span, entity_id)
                ).get(entity_id, {})
            )
        if open_time:
            (await self.live()).add_open_time(kind, entity_id, counters, reasons, *span)
        return Reading(kind, entity_id, counters, reasons, self.settings.kpi.bases)

    async def entities(
        self, kind: str, span: Span, *, open_time: bool = True, extra: Iterable[str] = ()
    ) -> list[Reading]:
        """Every entity of `kind` a list holds (`ids`), in id order."""
        ids = await self.ids(kind, span, open_time=open_time, extra=extra)
        return [await self.entity(kind, i, span, open_time=open_time) for i in ids]

    async def by_queue(self, agent_id: str, span: Span) -> list[Reading]:
        """The agent's figures in each queue whose calls it was presented in [span),
        in queue id order (kind agent_queue, id the queue)."""
        queues = set(self.settings.roster("queue"))
        queues |= set(await queries.call_entities(self.conn, "queue", *span))
        rows = await queries.agent_queue_counters(self.conn, agent_id, sorted(queues), *span)
        bases = self.settings.kpi.bases
        return [Reading("agent_queue", q, rows[q], {}, bases) for q in sorted(rows)]

    async def intervals(self, kind: str, entity_id: str, edges: list[datetime]) -> list[Reading]:
        """One entity per interval [edges[i], edges[i+1]), open time included."""
        rows = await queries.interval_counters(self.conn, kind, entity_id, edges)
        reasons = (
            [{} for _ in rows]
            if kind == "queue" or not self.with_reasons
            else await queries.interval_reasons(self.conn, kind, entity_id, edges)
        )
        now = await self.live()
        for i, row in enumerate(rows):
            now.add_open_time(kind, entity_id, row, reasons[i], edges[i], edges[i + 1])
        bases = self.settings.kpi.bases
        return [Reading(kind, entity_id, rows[i], reasons[i], bases) for i in range(len(rows))]

    # --- grouped reads, shared by every reading of one (kind, span) ---------
    async def _by_entity(self, kind: str, span: Span) -> dict[str, Counters]:
        key = (kind, span)
        if key not in self._counters:
            self._counters[key] = await queries.window_counters_by_entity(self.conn, kind, *span)
        return self._counters[key]

    async def _reasons_by_entity(self, kind: str, span: Span) -> dict[str, Counters]:
        if kind == "queue" or not self.with_reasons:
            return {}
        key = (kind, span)
        if key not in self._reasons:
            self._reasons[key] = await queries.reason_counters_by_entity(self.conn, kind, *span)
        return self._reasons[key]

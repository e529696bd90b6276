"""Figures of many entities at one instant, read once and shared: the alert
evaluator and the wallboard feed both ask for several fields of several entities
over a few windows, and each (kind, window) is one grouped query, not one per
entity. The values are the read API's: same queries, same `metrics_for`, the
same open agent states added up to now."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import live, queries
from services.core.kpi import metrics_for, zero_counters
from services.core.settings import Settings

Span = tuple[datetime, datetime]


class Figures:
    def __init__(self, conn: AsyncConnection, settings: Settings, now: datetime) -> None:
        self.conn = conn
        self.settings = settings
        self.now = now
        self._counters: dict[tuple[str, Span], dict[str, dict[str, int]]] = {}
        self._reasons: dict[tuple[str, Span], dict[str, dict[str, int]]] = {}
        self._live: live.Live | None = None

    async def by_entity(self, kind: str, span: Span) -> dict[str, dict[str, int]]:
        """Stored counters per entity of `kind` over [span) (entities with data only)."""
        key = (kind, span)
        if key not in self._counters:
            self._counters[key] = await queries.window_counters_by_entity(self.conn, kind, *span)
        return self._counters[key]

    async def live(self) -> live.Live:
        if self._live is None:
            self._live = await live.load(self.conn, self.settings, self.now)
        return self._live

    async def counters(
        self, kind: str, entity: str, span: Span, *, open_time: bool = True
    ) -> tuple[dict[str, int], dict[str, int]]:
        """(counters, not-ready reasons) of one entity; with `open_time`, each
        agent's current state is counted up to now, as the read API does."""
        counters = dict((await self.by_entity(kind, span)).get(entity) or zero_counters())
        reasons: dict[str, int] = {}
        if open_time and kind != "queue":
            key = (kind, span)
            if key not in self._reasons:
                self._reasons[key] = await queries.reason_counters_by_entity(self.conn, kind, *span)
            reasons = dict(self._reasons[key].get(entity, {}))
            (await self.live()).add_open_time(kind, entity, counters, reasons, *span)
        return counters, reasons

    async def metrics(
        self, kind: str, entity: str, span: Span, *, open_time: bool = True
    ) -> dict[str, Any]:
        counters, reasons = await self.counters(kind, entity, span, open_time=open_time)
        return metrics_for(kind, counters, reasons)

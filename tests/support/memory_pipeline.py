"""Drives the worker's pure core (services/kpi_stream/core.py) without Kafka or
Postgres, so property tests can run thousands of deliveries a second. The
Postgres driver is checked against the same reference in test_processor.py."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from services.core.agents import StateEvent
from services.core.calls import MINUTE_US, Counters, DeltaKey
from services.core.events import normalize
from services.core.kpi import metrics_for, sum_counters
from services.core.settings import Settings
from services.kpi_stream.core import (
    CallState,
    FcrRow,
    apply_facts,
    assemble,
    group_events,
    merge_into,
    track_agents,
)

KEY = b"test-key"


def rollup(agent: str, settings: Settings) -> tuple[tuple[str, str], ...]:
    return (("agent", agent), ("team", settings.agent_team(agent)), ("center", "all"))


def minutes(start: int, end: int) -> Iterator[tuple[int, int]]:
    """(minute bucket, µs of [start, end) in it), as the worker's SQL splits a
    segment (generate_series over minutes) and as reads overlap the agents' own."""
    b = start - start % MINUTE_US
    while b < end:
        yield b, min(end, b + MINUTE_US) - max(start, b)
        b += MINUTE_US


class MemoryPipeline:
    def __init__(self, settings: Settings, rnd: random.Random | None = None) -> None:
        self.settings = settings
        self.rnd = rnd or random.Random(0)
        self.calls: dict[str, CallState] = {}
        self.customers: dict[str, dict[str, FcrRow]] = {}
        self.buckets: dict[DeltaKey, Counters] = {}
        self.timelines: dict[str, list[StateEvent]] = {}
        self.reasons: dict[tuple[str, str, int, str], int] = {}
        self.watermark = 0
        self.facts: list[dict[str, Any]] = []  # the fcr topic
        self.fact_offset = 0
        self.window_us = settings.kpi.fcr_window_us

    def feed(self, raw_events: list[dict[str, Any]]) -> None:
        events = [normalize(e, KEY) for e in raw_events]
        by_call, by_agent = group_events(events)
        result = assemble(by_call, {c: self.calls.get(c) for c in by_call}, self.settings)
        self.calls.update(result.changed)
        merge_into(self.buckets, result.deltas)
        agents = track_agents(by_agent, {a: self.timelines.get(a) for a in by_agent}, self.settings)
        self.timelines.update(agents.changed)
        # the segments' time by minute, for the agent, its team and the center, as
        # the worker's statement and the reads count it (services/kpi_stream/processor.py)
        for agent, start, end, state, reason, sign in agents.segments:
            for bucket, us in minutes(start, end):
                counters = {"logged_in_us": us * sign, f"{state}_us": us * sign}
                for entity in rollup(agent, self.settings):
                    merge_into(self.buckets, {(*entity, bucket): counters})
                    if reason is not None:
                        key = (*entity, bucket, reason)
                        self.reasons[key] = self.reasons.get(key, 0) + us * sign
        for ts in (result.max_ts, agents.max_ts):
            if ts is not None:
                self.watermark = max(self.watermark, ts)
        self.facts.extend(result.facts)
        if self.rnd.random() < 0.5:
            self.consume_facts()

    def consume_facts(self) -> None:
        """Stage 2 reads the fact topic in order; sometimes it re-reads an earlier
        stretch, as it does after a crash before its offsets were committed."""
        start = self.fact_offset
        if start and self.rnd.random() < 0.3:
            start = self.rnd.randrange(0, start)
        batch = self.facts[start:]
        self.fact_offset = len(self.facts)
        self._apply(batch, ())

    def sweep(self) -> None:
        self._apply((), list(self.customers))

    def _apply(self, facts: Any, touched: Any) -> None:
        result = apply_facts(facts, self.customers, self.watermark, self.window_us, touched)
        for row in result.changed.values():
            self.customers.setdefault(row.fact["customer"], {})[row.fact["call_id"]] = row
        merge_into(self.buckets, result.deltas)

    def finish(self) -> None:
        self.consume_facts()
        self.sweep()

    def figures(
        self, by_bucket: bool = False, sl_seconds: int | None = None
    ) -> dict[tuple[Any, ...], dict[str, Any]]:
        grouped: dict[tuple[Any, ...], list[Counters]] = {}
        for (kind, ident, bucket), counters in self.buckets.items():
            key = (kind, ident, bucket) if by_bucket else (kind, ident)
            grouped.setdefault(key, []).append(counters)
        reasons: dict[tuple[Any, ...], dict[str, int]] = {}
        for (kind, ident, bucket, reason), us in self.reasons.items():
            key = (kind, ident, bucket) if by_bucket else (kind, ident)
            slot = reasons.setdefault(key, {})
            slot[reason] = slot.get(reason, 0) + us
        out = {}
        for key, rows in grouped.items():
            totals = sum_counters(rows)
            if any(totals.values()):
                out[key] = metrics_for(
                    key[0], totals, reasons.get(key), sl_seconds, self.settings.kpi.bases
                )
        return out

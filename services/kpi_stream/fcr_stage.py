"""Stage 2, first-call resolution: each customer's calls, stored per call in
fcr_calls, decide each other's outcome within the FCR window; the watermark (the
newest event time of stage 1) says when a window has closed. Facts arrive on the
customer's partition, so one worker holds all of a customer's calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg
import orjson

from services.core.calls import Contribution
from services.core.db import LOCK_FCR
from services.core.envelope import Envelope
from services.core.settings import Settings
from services.kpi_stream import store
from services.kpi_stream.cache import Lru, split_cached
from services.kpi_stream.core import FcrRow, apply_facts

# Customers kept whole in the FCR cache have at most this many calls: the cache
# serves the many customers with a few calls each; one with thousands is loaded
# by window from Postgres, which bounds what one key costs in memory and time.
FCR_CACHE_MAX_CALLS = 64


# Customers finalised per sweep transaction. The sweep is CPU work on the event
# loop: after a long gap in event time (an import, a replay) tens of thousands of
# candidates become final at once, and one big chunk stalled call assembly for
# ~5 s (freshness p99 5.3 s in the bench); chunks of 500 take ~0.1 s each.
SWEEP_CHUNK = 500


def _focus(
    probes: Mapping[str, list[int]],
    customers: Mapping[str, Mapping[str, FcrRow]],
    partial: Mapping[str, tuple[int, int]],
    facts: Iterable[Mapping[str, Any]],
) -> dict[str, tuple[int, int]]:
    """The span of each customer's change, for apply_facts: the offered times of
    the batch's facts and, for its calls already stored, where they were (a late
    event can move a call's offered time); the same as FCR_WINDOW_LOAD's for a
    customer loaded in part. With it a customer held whole costs a batch the
    calls around its change, not all of its calls (up to FCR_CACHE_MAX_CALLS each
    for every call of a regular caller: the FCR stage took a third of a month's
    re-count)."""
    out = {c: (min(times), max(times)) for c, times in probes.items() if c not in partial}
    for f in facts:
        customer = f["customer"]
        span = out.get(customer)
        row = customers.get(customer, {}).get(f["call_id"]) if span is not None else None
        if span is not None and row is not None:
            t = row.fact["offered_at"]
            out[customer] = (min(span[0], t), max(span[1], t))
    out.update(partial)
    return out


class FcrStage:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.window_us = settings.kpi.fcr_window_us
        self._customers = Lru(settings.call_cache_size // 4)

    def forget(self) -> None:
        """Drop cached customers: after a rebalance another worker may have written them."""
        self._customers.clear()

    # A customer's calls are loaded only within one FCR window of the calls a batch
    # changes (and of where those calls were before): that is all their outcomes
    # depend on. A customer with thousands of calls (a switchboard, a number that
    # should have been withheld) costs each batch its window, not its history,
    # which was quadratic over an import. Customers whose every call was loaded,
    # and who have few, stay in the cache whole.
    async def process_facts(self, envelopes: Sequence[Envelope]) -> int:
        facts = [f for env in envelopes for f in env.items]
        parts = sorted({env.partition for env in envelopes})
        probes: dict[str, list[int]] = {}
        for f in facts:
            probes.setdefault(f["customer"], []).append(f["offered_at"])
        async with self.pool.acquire() as conn, conn.transaction():
            await store.lock_partitions(conn, LOCK_FCR, parts)
            watermark = await store.current_watermark(conn)
            customers, spans = await self._load_customers(
                conn, probes, [f["call_id"] for f in facts]
            )
            focus = _focus(probes, customers, spans, facts)
            result = apply_facts(facts, customers, watermark, self.window_us, spans=focus)
            # a customer's facts arrive on its partition: no need to hash again
            part_of = {f["customer"]: env.partition for env in envelopes for f in env.items}
            await self._write_fcr(conn, result.changed, part_of)
            await store.write_fcr_deltas(conn, result.deltas)
            await store.write_offsets(conn, self.settings.fcr_topic, envelopes)
        self._cache_fcr(customers, spans, result.changed)
        return len(facts)

    async def sweep(self, partitions: Iterable[int], limit: int = SWEEP_CHUNK) -> int:
        """Finalise FCR candidates whose window the watermark has passed, for at most
        `limit` customers (call again while it returns `limit`)."""
        parts = sorted(set(partitions))
        if not parts:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            await store.lock_partitions(conn, LOCK_FCR, parts)
            watermark = await store.current_watermark(conn)
            rows = await conn.fetch(
                "SELECT customer, part, min(offered_us) AS lo, max(offered_us) AS hi "
                "FROM fcr_calls WHERE pending AND part = ANY($1::int[]) AND offered_us < $2 "
                "GROUP BY customer, part LIMIT $3",
                parts,
                watermark - self.window_us,
                limit,
            )
            if not rows:
                return 0
            probes = {r["customer"]: [int(r["lo"]), int(r["hi"])] for r in rows}
            customers, spans = await self._load_customers(conn, probes, [])
            focus = _focus(probes, customers, spans, ())
            result = apply_facts((), customers, watermark, self.window_us, touched=probes,
                                 spans=focus)  # fmt: skip
            await self._write_fcr(conn, result.changed, {r["customer"]: r["part"] for r in rows})
            await store.write_fcr_deltas(conn, result.deltas)
        self._cache_fcr(customers, spans, result.changed)
        return len(rows)

    async def _load_customers(
        self, conn: asyncpg.Connection, probes: Mapping[str, list[int]], call_ids: list[str]
    ) -> tuple[dict[str, dict[str, FcrRow]], dict[str, tuple[int, int]]]:
        """The calls of each customer in `probes` (customer -> offered times) within
        one window of those times and of where `call_ids` were stored before; and
        the span (lo, hi) of each customer not loaded whole (see apply_facts)."""
        out: dict[str, dict[str, FcrRow]]
        out, missing = split_cached(probes, self._customers)
        spans: dict[str, tuple[int, int]] = {}
        if not missing:
            return out, spans
        names = [c for c in missing for _ in probes[c]]
        times = [t for c in missing for t in probes[c]]
        rows = await conn.fetch(store.FCR_WINDOW_LOAD, names, times, call_ids, self.window_us)
        for r in rows:
            customer = r["customer"]
            rows_of = out.setdefault(customer, {})
            if r["call_id"] is not None:
                rows_of[r["call_id"]] = FcrRow(
                    orjson.loads(r["fact"]), Contribution.from_json(store.loads_json(r["contrib"]))
                )
            if len(rows_of) < r["total"]:
                spans[customer] = (int(r["lo"]), int(r["hi"]))
            else:
                spans.pop(customer, None)
        for customer in missing:
            out.setdefault(customer, {})
        return out, spans

    def _cache_fcr(
        self,
        customers: dict[str, dict[str, FcrRow]],
        spans: Mapping[str, tuple[int, int]],
        changed: Mapping[str, FcrRow],
    ) -> None:
        for row in changed.values():
            customers.setdefault(row.fact["customer"], {})[row.fact["call_id"]] = row
        for name, rows in customers.items():
            if name in spans or len(rows) > FCR_CACHE_MAX_CALLS:
                self._customers.pop(name, None)  # loaded in part, or too many to keep
            else:
                self._customers.put(name, rows)

    async def _write_fcr(
        self, conn: asyncpg.Connection, changed: Mapping[str, FcrRow], part_of: Mapping[str, int]
    ) -> None:
        """Upsert changed FCR rows; `part_of`: each changed row's customer's partition."""
        if changed:
            await conn.execute(store.FCR_UPSERT, store.fcr_rows(changed, part_of))

"""Agent time read back from Postgres, split by wall time across minutes, hours,
local days and daylight-saving changes: for the agent (its stored segments'
overlap with the range, summed at read) and for its team and the center (minute
rows that the worker's statement splits the segments into)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.db import asyncpg_dsn, sqlalchemy_url
from services.core.envelope import Envelope
from services.core.events import normalize
from services.core.settings import Settings, Team
from services.core.timewin import interval_edges
from services.kpi_stream.processor import Processor
from services.readmodel import queries
from tests.support.processor_rig import clock

MIN = 60_000_000
# states held longer than a day count whole (the default cap is 12 h)
SETTINGS = Settings(
    teams=[Team(id="t1", queues=["q1"], agents=["a1"])],
    kpi={"max_state_hours": 48},
    hash_key="test",
)
ENTITIES = (("agent", "a1"), ("team", "t1"), ("center", "all"))


def state(eid: str, t: datetime, name: str, reason: str | None = None) -> dict[str, Any]:
    ev = {"event_id": eid, "occurred_at": t.isoformat(), "type": "agent.state",
          "agent_id": "a1", "state": name}  # fmt: skip
    return ev | ({"reason": reason} if reason else {})


def store(db_url: str, *batches: list[dict[str, Any]]) -> None:
    """Each batch through the worker's processor, as one committed batch."""

    async def no_facts(_: Any) -> None:
        return None

    async def run() -> None:
        pool = await asyncpg.create_pool(asyncpg_dsn(db_url), min_size=1, max_size=2)
        try:
            proc = Processor(SETTINGS, pool, no_facts, "test", clock=clock)
            for batch in batches:
                events = [normalize(e, b"test") for e in batch]
                await proc.process_events([Envelope(0, 0, events)])
        finally:
            await pool.close()

    asyncio.run(run())


def per_interval(
    db_url: str, edges: list[datetime]
) -> dict[tuple[str, str], tuple[list[dict[str, int]], list[dict[str, int]]]]:
    """(counters, not-ready reasons) per interval, for each of ENTITIES."""

    async def run() -> Any:
        engine = create_async_engine(sqlalchemy_url(db_url))
        try:
            async with engine.connect() as conn:
                return {
                    (kind, ident): (
                        await queries.interval_counters(conn, kind, ident, edges),
                        await queries.interval_reasons(conn, kind, ident, edges),
                    )
                    for kind, ident in ENTITIES
                }
        finally:
            await engine.dispose()

    return asyncio.run(run())


def everywhere(values: list[int]) -> dict[tuple[str, str], list[int]]:
    """The same figures for the agent, its team and the center (it is alone)."""
    return {entity: values for entity in ENTITIES}


def column(db_url: str, edges: list[datetime], name: str) -> dict[tuple[str, str], list[int]]:
    return {
        e: [c[name] for c in counters] for e, (counters, _r) in per_interval(db_url, edges).items()
    }


def test_a_state_held_from_0950_to_1010_puts_ten_minutes_in_each_hour(db_url: str) -> None:
    d = datetime(2026, 11, 20, 9, 50, 30, tzinfo=UTC)
    store(db_url, [state("1", d, "available"), state("2", d + timedelta(minutes=20), "on_call")])
    hours = [datetime(2026, 11, 20, h, tzinfo=UTC) for h in (9, 10, 11)]
    expected = [int(9.5 * MIN), int(10.5 * MIN)]
    for name in ("available_us", "logged_in_us"):
        assert column(db_url, hours, name) == everywhere(expected)
    # the first minute holds only its 30 seconds, for the agent and its team
    first = [d.replace(second=0), d.replace(second=0) + timedelta(minutes=1)]
    assert column(db_url, first, "available_us") == everywhere([30_000_000])


def test_a_state_across_local_midnight_is_split_between_the_two_days(db_url: str) -> None:
    tz = ZoneInfo("Asia/Shanghai")
    start = datetime(2026, 11, 20, 23, 30, tzinfo=tz)
    store(db_url, [state("1", start, "available"),
                   state("2", start + timedelta(hours=1), "logged_out")])  # fmt: skip
    days = interval_edges(
        datetime(2026, 11, 20, tzinfo=tz), datetime(2026, 11, 22, tzinfo=tz), "1d", tz
    )
    assert column(db_url, days, "logged_in_us") == everywhere([30 * MIN, 30 * MIN])


def test_daylight_saving_days_hold_23_and_25_hours_of_a_state_held_all_day(db_url: str) -> None:
    tz = ZoneInfo("America/New_York")
    spring, autumn = datetime(2026, 3, 8, tzinfo=tz), datetime(2026, 11, 1, tzinfo=tz)
    for i, day in enumerate((spring, autumn)):
        nxt = datetime(day.year, day.month, day.day + 1, tzinfo=tz)
        store(db_url, [state(f"{i}a", day - timedelta(hours=1), "not_ready", "sick"),
                       state(f"{i}b", nxt + timedelta(hours=1), "logged_out")])  # fmt: skip
    for day, hours in ((spring, 23), (autumn, 25)):
        nxt = datetime(day.year, day.month, day.day + 1, tzinfo=tz)
        whole = per_interval(db_url, interval_edges(day, nxt, "1d", tz))
        for entity in ENTITIES:
            counters, reasons = whole[entity]
            assert [c["not_ready_us"] for c in counters] == [hours * 60 * MIN], entity
            assert reasons == [{"sick": hours * 60 * MIN}], entity
        # the hour intervals of that day: 23 or 25 of them, each a full hour
        hourly = column(db_url, interval_edges(day, nxt, "1h", tz), "not_ready_us")
        assert hourly == everywhere([60 * MIN] * hours)


def test_a_window_hours_after_a_long_state_began_finds_its_time(db_url: str) -> None:
    # stored cut at whole hours, so a read looks back one hour, not max_state_hours
    t0 = datetime(2026, 11, 20, 6, 0, 20, tzinfo=UTC)
    store(db_url, [state("1", t0, "wrap_up"), state("2", t0 + timedelta(hours=8), "logged_out")])
    window = [datetime(2026, 11, 20, 13, 0, tzinfo=UTC), datetime(2026, 11, 20, 13, 15, tzinfo=UTC)]
    assert column(db_url, window, "wrap_up_us") == everywhere([15 * MIN])

    async def every_agent() -> dict[str, dict[str, int]]:
        engine = create_async_engine(sqlalchemy_url(db_url))
        try:
            async with engine.connect() as conn:
                return await queries.window_counters_by_entity(conn, "agent", *window)
        finally:
            await engine.dispose()

    assert asyncio.run(every_agent())["a1"]["wrap_up_us"] == 15 * MIN


def test_a_late_state_event_moves_time_for_the_agent_and_its_team(db_url: str) -> None:
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    store(
        db_url,
        [state("1", t0, "available"), state("3", t0 + timedelta(hours=1), "logged_out")],
        [state("2", t0 + timedelta(minutes=20), "not_ready", "lunch")],  # late
    )
    hour = [t0, t0 + timedelta(hours=1)]
    got = per_interval(db_url, hour)
    for entity in ENTITIES:
        counters, reasons = got[entity]
        assert counters[0]["available_us"] == 20 * MIN, entity
        assert counters[0]["not_ready_us"] == 40 * MIN, entity
        assert counters[0]["logged_in_us"] == 60 * MIN, entity
        assert reasons == [{"lunch": 40 * MIN}], entity

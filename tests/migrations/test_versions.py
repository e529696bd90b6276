"""Migrations that move figures keep them: up, down and up again, on a real Postgres."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from alembic import command

from services.core.db import asyncpg_dsn
from services.migrations import alembic_config

MINUTE = "2026-11-02 09:00:00+00"


def _sql(url: str, *statements: str) -> list[list[Any]]:
    async def run() -> list[list[Any]]:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            return [[tuple(r) for r in await conn.fetch(s)] for s in statements]
        finally:
            await conn.close()

    return asyncio.run(run())


def _time_rows(url: str) -> list[Any]:
    return _sql(
        url,
        "SELECT kind, entity_id, logged_in_us, on_call_us FROM kpi_time_buckets ORDER BY 1, 2",
    )[0]


def test_agent_time_rows_appended_after_0009_collapse_to_one_per_minute_on_downgrade(
    db_url: str,
) -> None:
    cfg = alembic_config(db_url)
    _sql(
        db_url,
        "INSERT INTO kpi_time_buckets (kind, entity_id, bucket, logged_in_us, on_call_us) "
        f"VALUES ('agent', 'a1', '{MINUTE}', 40, 30), ('agent', 'a1', '{MINUTE}', 20, 5), "
        f"('agent', 'a2', '{MINUTE}', 7, 0), ('team', 't1', '{MINUTE}', 67, 35)",
    )
    command.downgrade(cfg, "0008")
    assert _time_rows(db_url) == [
        ("agent", "a1", 60, 35),
        ("agent", "a2", 7, 0),
        ("team", "t1", 67, 35),
    ]
    command.upgrade(cfg, "head")
    # appending again is allowed, a second team row for the minute is not
    _sql(
        db_url,
        "INSERT INTO kpi_time_buckets (kind, entity_id, bucket, logged_in_us) "
        f"VALUES ('agent', 'a2', '{MINUTE}', 3)",
    )
    with pytest.raises(asyncpg.UniqueViolationError):
        _sql(
            db_url,
            "INSERT INTO kpi_time_buckets (kind, entity_id, bucket, logged_in_us) "
            f"VALUES ('team', 't1', '{MINUTE}', 3)",
        )
    assert len(_time_rows(db_url)) == 4


def test_fcr_counters_move_to_their_own_table_and_back(db_url: str) -> None:
    cfg = alembic_config(db_url)
    command.downgrade(cfg, "0007")
    _sql(
        db_url,
        "INSERT INTO kpi_buckets (kind, entity_id, bucket, offered, fcr_candidates, fcr_final, "
        f"fcr_resolved) VALUES ('center', 'all', '{MINUTE}', 9, 4, 2, 1), "
        f"('queue', 'q1', '{MINUTE}', 5, 0, 0, 0)",
    )
    command.upgrade(cfg, "0008")
    moved = _sql(
        db_url,
        "SELECT kind, entity_id, fcr_candidates, fcr_final, fcr_resolved, fcr_failed "
        "FROM kpi_fcr_buckets ORDER BY 1",
        "SELECT kind, offered FROM kpi_buckets ORDER BY 1",
    )
    assert moved == [[("center", "all", 4, 2, 1, 0)], [("center", 9), ("queue", 5)]]
    command.downgrade(cfg, "0007")
    back = _sql(
        db_url,
        "SELECT kind, offered, fcr_candidates, fcr_final, fcr_resolved FROM kpi_buckets ORDER BY 1",
    )[0]
    assert back == [("center", 9, 4, 2, 1), ("queue", 5, 0, 0, 0)]


def test_agent_segments_become_agent_minute_rows_on_downgrade_and_come_back_empty(
    db_url: str,
) -> None:
    cfg = alembic_config(db_url)
    t = 1_793_610_000_000_000  # 2026-11-02 09:00:00 UTC, in µs
    s = 1_000_000
    _sql(
        db_url,
        "INSERT INTO agent_segments (agent_id, start_us, end_us, state, reason, sign) VALUES "
        f"('a1', {t + 30 * s}, {t + 120 * s}, 'available', NULL, 1), "
        f"('a1', {t + 120 * s}, {t + 180 * s}, 'not_ready', 'lunch', 1), "
        # a segment a late event replaced: added, then taken away
        f"('a1', {t + 120 * s}, {t + 150 * s}, 'on_call', NULL, 1), "
        f"('a1', {t + 120 * s}, {t + 150 * s}, 'on_call', NULL, -1)",
    )
    command.downgrade(cfg, "0009")
    minutes = _sql(
        db_url,
        "SELECT extract(epoch FROM bucket)::bigint, logged_in_us, available_us, on_call_us, "
        "not_ready_us FROM kpi_time_buckets WHERE kind = 'agent' AND entity_id = 'a1' ORDER BY 1",
        "SELECT extract(epoch FROM bucket)::bigint, reason, not_ready_us FROM kpi_reason_buckets",
    )
    m = t // s
    assert minutes == [
        [
            (m, 30 * s, 30 * s, 0, 0),
            (m + 60, 60 * s, 60 * s, 0, 0),
            (m + 120, 60 * s, 0, 0, 60 * s),
        ],
        [(m + 120, "lunch", 60 * s)],
    ]
    command.upgrade(cfg, "head")
    assert _sql(db_url, "SELECT count(*) FROM agent_segments") == [[(0,)]]

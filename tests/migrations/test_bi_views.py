"""The BI views (migration 0018) answer the read-only role, which can read
nothing else and write nothing at all."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from services.core.db import asyncpg_dsn

VIEWS = (
    "call_minutes", "fcr_minutes", "team_time_minutes", "not_ready_minutes", "agent_states",
    "alerts", "payroll_versions", "payroll_agents", "schedule_uploads", "schedule",
)  # fmt: skip


async def _as(url: str, user: str, *statements: str) -> list[Any]:
    """Each statement's rows, or the error it raised, connected as `user`."""
    conn = await asyncpg.connect(asyncpg_dsn(url), user=user)
    out: list[Any] = []
    try:
        for sql in statements:
            try:
                out.append(await conn.fetch(sql))
            except asyncpg.PostgresError as exc:
                out.append(exc)
    finally:
        await conn.close()
    return out


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def bi_user(db_url: str) -> str:
    """A login of the read-only role, as an operator would make one for Metabase."""
    name = f"bi_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(db_url, f"CREATE ROLE {name} LOGIN IN ROLE callkpi_readonly"))
    return name


def test_every_view_answers_the_read_only_role(db_url: str, bi_user: str) -> None:
    asyncio.run(_admin(
        db_url,
        "INSERT INTO kpi_buckets (kind, entity_id, bucket, offered, answered) "
        "VALUES ('queue', 'billing', '2026-11-02 09:00+00', 3, 2)",
        "INSERT INTO agent_segments (agent_id, start_us, end_us, state, reason, sign) VALUES "
        "('a1', 0, 60000000, 'available', NULL, 1), ('a1', 0, 60000000, 'available', NULL, -1),"
        "('a1', 0, 30000000, 'available', NULL, 1), ('a1', 30000000, 60000000, 'on_call', NULL, 1)",
    ))  # fmt: skip
    results = asyncio.run(_as(db_url, bi_user, *(f"SELECT * FROM bi.{v}" for v in VIEWS)))
    assert [type(r).__name__ for r in results] == ["list"] * len(VIEWS)
    calls = dict(zip(VIEWS, results, strict=True))["call_minutes"]
    assert [(r["entity_id"], r["offered"], r["answered"]) for r in calls] == [("billing", 3, 2)]
    # the replaced segment cancels out: its two halves stand
    states = dict(zip(VIEWS, results, strict=True))["agent_states"]
    assert sorted(r["state"] for r in states) == ["available", "on_call"]


def test_the_read_only_role_reads_no_table_and_writes_nothing(db_url: str, bi_user: str) -> None:
    results = asyncio.run(_as(
        db_url, bi_user,
        "SELECT * FROM kpi_buckets",
        "SELECT events FROM calls",
        "INSERT INTO bi.call_minutes (kind, entity_id, bucket) VALUES ('queue', 'x', now())",
        "DELETE FROM bi.alerts",
        "UPDATE kpi_buckets SET offered = 0",
        "CREATE TABLE bi.mine (x int)",
        "CREATE TABLE public.mine (x int)",
    ))  # fmt: skip
    for r in results:
        assert isinstance(r, asyncpg.PostgresError), r
        assert isinstance(
            r, asyncpg.InsufficientPrivilegeError | asyncpg.FeatureNotSupportedError
        ), r

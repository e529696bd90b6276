"""Databases and settings for the stack the tests run: each test that needs
isolation gets its own database, cloned from a migrated template (~50 ms)."""

from __future__ import annotations

import asyncio
import itertools
import os
from pathlib import Path

import asyncpg

from services.core.db import asyncpg_dsn
from services.devstack import EmbeddedBroker, EmbeddedPostgres

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
EXAMPLE_CONFIG = ROOT / "deploy" / "config" / "callkpi.example.yaml"
TEMPLATE = "callkpi"

_counter = itertools.count()


def unique(prefix: str) -> str:
    """A name no other test of this run (or of a parallel run) has."""
    return f"{prefix}{os.getpid()}x{next(_counter)}"


async def execute(server: EmbeddedPostgres, sql: str) -> None:
    conn = await asyncpg.connect(
        host="127.0.0.1", port=server.port, user="postgres", database="postgres"
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def new_database(server: EmbeddedPostgres) -> str:
    """A fresh, migrated database; returns its URL."""
    name = unique("t")
    asyncio.run(execute(server, f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}'))
    return server.url(name)


def stack_env(broker: EmbeddedBroker, db: str, prefix: str, **extra: str) -> dict[str, str]:
    """The environment of the services a test starts (tests/support/stack.py)."""
    return {
        "CALLKPI_CONFIG": str(EXAMPLE_CONFIG),
        "CALLKPI_KAFKA_BOOTSTRAP": broker.bootstrap,
        "CALLKPI_DATABASE_URL": db,
        "CALLKPI_TOPIC_PREFIX": prefix,
        "CALLKPI_HASH_KEY": "test-hash-key",
        "CALLKPI_PARTITIONS": "4",
        "CALLKPI_FCR_SWEEP_SECONDS": "1",
        **extra,
    }


def processed(db: str) -> int:
    """Events the workers say they processed (worker_stats, all workers)."""

    async def q() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(db))
        try:
            return int(
                await conn.fetchval("SELECT coalesce(sum(events_processed), 0) FROM worker_stats")
            )
        finally:
            await conn.close()

    return asyncio.run(q())

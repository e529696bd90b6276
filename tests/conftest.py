"""Session fixtures: one real PostgreSQL and one real Kafka-protocol broker (Tansu)
for the whole run; each test that needs isolation gets its own database (cloned
from a migrated template, ~50 ms) and its own topic prefix."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import settings as hsettings

from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.stack import Stack

hsettings.register_profile("default", deadline=None, print_blob=True)
hsettings.load_profile("default")

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg() -> Iterator[EmbeddedPostgres]:
    root = Path(tempfile.mkdtemp(prefix="callkpi-test-pg-"))
    server = EmbeddedPostgres(root / "data", durable=False)
    server.start()
    from services.migrations import upgrade

    upgrade(server.url("callkpi"))
    asyncio.run(_exec(server, "ALTER DATABASE callkpi WITH is_template = true"))
    yield server
    server.destroy()
    shutil.rmtree(root, ignore_errors=True)


async def _exec(server: EmbeddedPostgres, sql: str) -> None:
    conn = await asyncpg.connect(
        host="127.0.0.1", port=server.port, user="postgres", database="postgres"
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def new_database(server: EmbeddedPostgres) -> str:
    name = f"t{os.getpid()}_{next(_counter)}"
    asyncio.run(_exec(server, f'CREATE DATABASE "{name}" TEMPLATE callkpi'))
    return server.url(name)


@pytest.fixture
def db_url(pg: EmbeddedPostgres) -> str:
    """A fresh, migrated database for this test."""
    return new_database(pg)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    ARTIFACTS.mkdir(exist_ok=True)
    b = EmbeddedBroker(log_path=ARTIFACTS / "broker.log")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def topic_prefix() -> str:
    return f"t{os.getpid()}x{next(_counter)}"


EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "config" / "callkpi.example.yaml"


def stack_env(broker: EmbeddedBroker, db: str, prefix: str, **extra: str) -> dict[str, str]:
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


@pytest.fixture(scope="session")
def stack(pg: EmbeddedPostgres, broker: EmbeddedBroker) -> Iterator[Stack]:
    """API (with ingest) and worker processes shared by the end-to-end tests.
    Tests keep out of each other's way by time range and entity ids."""
    env = stack_env(
        broker,
        new_database(pg),
        f"s{os.getpid()}",
        CALLKPI_MAX_BODY_BYTES="300000",
        CALLKPI_MAX_BATCH_EVENTS="2000",
    )
    s = Stack(env).start()
    yield s
    s.stop()

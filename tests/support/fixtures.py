"""Session fixtures: one real PostgreSQL and one real Kafka-protocol broker (Tansu)
for the whole run, a fresh database and topic prefix per test that asks, and one
shared stack of real service processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.devstack import EmbeddedBroker, EmbeddedPostgres
from tests.support.databases import (
    ARTIFACTS,
    TEMPLATE,
    execute,
    new_database,
    stack_env,
    unique,
)
from tests.support.stack import Stack


@pytest.fixture(autouse=True)
def _config_path_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_settings(path) sets CALLKPI_CONFIG for the whole process (so the CLI's
    children read the same file): each test gets back what was there before it,
    or a later test that builds Settings reads an earlier test's broken file."""
    value = os.environ.get("CALLKPI_CONFIG")
    if value is None:
        monkeypatch.delenv("CALLKPI_CONFIG", raising=False)
    else:
        monkeypatch.setenv("CALLKPI_CONFIG", value)


@pytest.fixture(scope="session")
def pg() -> Iterator[EmbeddedPostgres]:
    root = Path(tempfile.mkdtemp(prefix="callkpi-test-pg-"))
    server = EmbeddedPostgres(root / "data", durable=False)
    server.start()
    from services.migrations import upgrade

    upgrade(server.url(TEMPLATE))
    asyncio.run(execute(server, f"ALTER DATABASE {TEMPLATE} WITH is_template = true"))
    yield server
    server.destroy()
    shutil.rmtree(root, ignore_errors=True)


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
    return unique("t")


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

"""`metrics_include_agents` exports agent gauges from the same counters as the API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.core.db import asyncpg_dsn
from services.core.settings import Settings, Team


def test_agent_gauges_appear_only_when_enabled_and_equal_the_api(db_url: str) -> None:
    bucket = datetime.now(UTC).replace(second=0, microsecond=0)

    async def seed() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            await conn.execute(
                "INSERT INTO kpi_buckets (kind, entity_id, bucket, presented, answered, handled, "
                "talk_us) VALUES ('agent', 'a7', $1, 4, 3, 2, 300000000)",
                bucket,
            )
        finally:
            await conn.close()

    asyncio.run(seed())
    for enabled in (False, True):
        settings = Settings(database_url=db_url, metrics_include_agents=enabled,
                            teams=[Team(id="t", agents=["a7"])])  # fmt: skip
        with TestClient(create_app(settings, read=True, ingest=False)) as client:
            text = client.get("/metrics").text
            api = client.get("/v1/kpis/agent/a7", params={"window": "15m"}).json()
        series = 'callkpi_answer_rate{id="a7",kind="agent",window="15m"}'
        if not enabled:
            assert series not in text
            continue
        samples = dict(
            line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("callkpi_")
        )
        assert float(samples[series]) == api["answer_rate"] == 0.75
        assert float(samples['callkpi_aht_seconds{id="a7",kind="agent",window="15m"}']) == 150.0
        assert 'callkpi_service_level{id="a7"' not in text  # agents have no service level

"""Reading the alerts table in the evaluator's tests."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from services.alerting.evaluator import Evaluator


async def all_alerts(ev: Evaluator) -> list[dict[str, Any]]:
    """Every alert row, oldest first."""
    async with ev.engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT * FROM alerts ORDER BY id"))
        return [dict(r._mapping) for r in rows]

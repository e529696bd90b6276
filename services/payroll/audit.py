"""The audit log: who closed, restated, uploaded manual items for, or read the
payroll figures of a period, and when. Append-only from the service's side."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.db import audit_log


async def record(
    conn: AsyncConnection,
    *,
    at: datetime,
    actor: str,
    action: str,
    period: str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        audit_log.insert().values(
            at=at, actor=actor, action=action, period=period, detail=detail or {}
        )
    )

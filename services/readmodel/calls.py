"""Calls as records for the drill-down (GET /v1/calls): the `calls` rows of a
range (their events and the counters the worker applied), keyset-paged by
(arrival, call id), with their FCR rows. Kept as long as call state is,
`call_state_retention_days` (docs/reports.md#call-detail)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.call_detail import call_record, matches
from services.core.calls import Contribution
from services.core.settings import UNASSIGNED_TEAM, Settings

_PAGE_SQL = """
SELECT c.call_id, c.events, c.contrib, f.contrib AS fcr,
       (extract(epoch FROM c.offered_at) * 1000000)::bigint AS offered_us
FROM calls c LEFT JOIN fcr_calls f ON f.call_id = c.call_id
WHERE c.offered_at >= timestamptz 'epoch' + :s * interval '1 microsecond'
  AND c.offered_at < timestamptz 'epoch' + :e * interval '1 microsecond'
  AND (c.offered_at, c.call_id)
      > (timestamptz 'epoch' + :after_us * interval '1 microsecond', :after_id)
  {queues}
ORDER BY c.offered_at, c.call_id
LIMIT :n
"""


@dataclass(frozen=True, slots=True)
class Filters:
    queues: list[str] | None = None  # None: every queue
    agent: str | None = None
    outcome: str | None = None
    min_wait: float | None = None
    fcr: str | None = None
    suspicious: str | None = None  # qa_calls.SUSPICIOUS


def _loads(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


async def scan(
    conn: AsyncConnection,
    settings: Settings,
    start_us: int,
    end_us: int,
    filters: Filters,
    after: tuple[int, str] | None = None,
    chunk: int = 1000,
) -> AsyncIterator[tuple[tuple[int, str], dict[str, Any]]]:
    """Every call of [start, end) after `after`, that the filters keep, in order:
    (its position for a cursor, its record). Reads `chunk` rows at a time."""
    queues = "AND c.queue_id = ANY(:queues)" if filters.queues is not None else ""
    sql = sa.text(_PAGE_SQL.format(queues=queues))
    pos = after if after is not None else (start_us - 1, "")
    short_s = settings.qa.short_call_seconds
    while True:
        rows = (
            await conn.execute(
                sql,
                {
                    "s": start_us,
                    "e": end_us,
                    "after_us": pos[0],
                    "after_id": pos[1],
                    "n": chunk,
                    "queues": filters.queues,
                },
            )
        ).all()
        for r in rows:
            pos = (int(r.offered_us), r.call_id)
            rec = call_record(
                r.call_id,
                _loads(r.events),
                Contribution.from_json(_loads(r.contrib)),
                Contribution.from_json(_loads(r.fcr)),
                settings.team_of_queue,
                UNASSIGNED_TEAM,
            )
            if rec is not None and matches(
                rec, agent=filters.agent, outcome=filters.outcome, min_wait=filters.min_wait,
                fcr=filters.fcr, suspicious=filters.suspicious, short_seconds=short_s,
            ):  # fmt: skip
                yield pos, rec
        if len(rows) < chunk:
            return

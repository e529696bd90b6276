"""Schedules in the store: each upload is a version (migration 0016 says why);
the schedule in force for an agent-day is the latest upload's that speaks for
it, or, read `as_of` a version, the latest up to it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.configfile import digest
from services.core.db import schedule_days, schedule_segments, schedule_uploads
from services.core.schedules import ParsedSchedule, Segment

# a statement carries at most 32,767 parameters: 6 per segment row
_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class Upload:
    version: int
    uploaded_at: datetime
    uploaded_by: str
    first_day: date
    last_day: date
    agent_days: int
    segments: int
    checksum: str
    note: str | None

    def json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "uploaded_at": self.uploaded_at.isoformat(),
            "uploaded_by": self.uploaded_by,
            "from_day": self.first_day.isoformat(),
            "to_day": self.last_day.isoformat(),
            "agent_days": self.agent_days,
            "segments": self.segments,
            "checksum": self.checksum,
            "note": self.note,
        }


def checksum(parsed: ParsedSchedule) -> str:
    return "sha256:" + digest(
        {
            "days": sorted([a, d.isoformat()] for a, d in parsed.days),
            "segments": [
                [s.agent_id, s.day.isoformat(), s.start_us, s.end_us, s.activity]
                for s in parsed.segments
            ],
        }
    )


async def store(
    conn: AsyncConnection, parsed: ParsedSchedule, *, by: str, now: datetime, note: str | None
) -> Upload:
    """A new version holding the upload's agent-days and segments. Call inside a
    transaction."""
    days = sorted(parsed.days, key=lambda k: (k[1], k[0]))
    row = (
        await conn.execute(
            sa.insert(schedule_uploads)
            .values(
                uploaded_at=now,
                uploaded_by=by,
                first_day=days[0][1],
                last_day=days[-1][1],
                agent_days=len(days),
                segments=len(parsed.segments),
                checksum=checksum(parsed),
                note=note,
            )
            .returning(*schedule_uploads.c)
        )
    ).one()
    version = int(row.version)
    for i in range(0, len(days), _CHUNK):
        await conn.execute(
            sa.insert(schedule_days),
            [{"agent_id": a, "day": d, "version": version} for a, d in days[i : i + _CHUNK]],
        )
    segs = parsed.segments
    for i in range(0, len(segs), _CHUNK):
        await conn.execute(
            sa.insert(schedule_segments),
            [{"version": version, "agent_id": s.agent_id, "day": s.day, "start_us": s.start_us,
              "end_us": s.end_us, "activity": s.activity} for s in segs[i : i + _CHUNK]],
        )  # fmt: skip
    return Upload(**row._mapping)


async def uploads(conn: AsyncConnection, limit: int = 100) -> list[Upload]:
    rows = await conn.execute(
        sa.select(*schedule_uploads.c).order_by(schedule_uploads.c.version.desc()).limit(limit)
    )
    return [Upload(**r._mapping) for r in rows]


async def latest_version(conn: AsyncConnection) -> int | None:
    v = await conn.scalar(sa.select(sa.func.max(schedule_uploads.c.version)))
    return None if v is None else int(v)


_IN_FORCE = """
WITH force AS (
  SELECT DISTINCT ON (agent_id, day) agent_id, day, version
  FROM schedule_days
  WHERE day BETWEEN :d0 AND :d1 AND version <= :as_of {agents}
  ORDER BY agent_id, day, version DESC
)
SELECT s.agent_id, s.day, s.start_us, s.end_us, s.activity
FROM force f
JOIN schedule_segments s ON s.agent_id = f.agent_id AND s.day = f.day AND s.version = f.version
WHERE s.end_us > :s AND s.start_us < :e
ORDER BY s.agent_id, s.start_us
"""


async def in_force(
    conn: AsyncConnection,
    start_us: int | None,
    end_us: int | None,
    first_day: date,
    last_day: date,
    agents: list[str] | None = None,
    as_of: int | None = None,
) -> list[Segment]:
    """The segments in force that overlap [start, end), of shifts of the local
    days first_day..last_day (the caller widens them by a day: a night shift
    belongs to the day it starts), of `agents` (None: all). With start and end
    None, every segment of those days: a shift's first start and last end are
    its own, not those of the part that falls in a range."""
    where = "AND agent_id = ANY(:agents)" if agents is not None else ""
    rows = await conn.execute(
        sa.text(_IN_FORCE.format(agents=where)),
        {
            "d0": first_day,
            "d1": last_day,
            "as_of": as_of if as_of is not None else 2**62,
            "agents": agents,
            "s": -(2**62) if start_us is None else start_us,
            "e": 2**62 if end_us is None else end_us,
        },
    )
    return [Segment(r.agent_id, r.day, int(r.start_us), int(r.end_us), r.activity) for r in rows]


async def touched_after(
    conn: AsyncConnection, first_day: date, last_day: date, version: int
) -> list[Upload]:
    """Uploads after `version` that speak for a day in first_day..last_day."""
    rows = await conn.execute(
        sa.select(*schedule_uploads.c)
        .where(
            schedule_uploads.c.version > version,
            schedule_uploads.c.first_day <= last_day,
            schedule_uploads.c.last_day >= first_day,
        )
        .order_by(schedule_uploads.c.version)
    )
    return [Upload(**r._mapping) for r in rows]

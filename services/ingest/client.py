"""Posting events to ingest, for the commands that feed it (simulate, replay,
asterisk import/follow)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

log = logging.getLogger("callkpi.client")

MAX_BACKOFF_S = 5.0


class IngestError(Exception):
    """Ingest refused the request for good (not a transient failure)."""


async def post_events(
    client: Any, events: list[dict[str, Any]], attempts: int | None = 12
) -> tuple[int, list[dict[str, Any]]]:
    """POST as NDJSON, retrying 503 and connection errors with backoff (event ids
    make a retry harmless); `attempts=None` retries for ever (a follower must not
    lose lines while ingest is down). Returns (accepted, rejected)."""
    if not events:
        return 0, []
    body = b"\n".join(orjson.dumps(e) for e in events)
    delay = 0.25
    attempt = 0
    while attempts is None or attempt < attempts:
        attempt += 1
        try:
            r = await client.post(
                "/v1/events", content=body, headers={"content-type": "application/x-ndjson"}
            )
        except Exception as exc:
            log.warning("ingest unreachable (%s); retrying in %.1fs", exc, delay)
        else:
            if r.status_code in (202, 422):
                data = r.json()
                return int(data.get("accepted", 0)), list(data.get("rejected", []))
            if r.status_code != 503:
                raise IngestError(f"ingest answered {r.status_code}: {r.text[:500]}")
            log.warning("ingest unavailable (503); retrying in %.1fs", delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_BACKOFF_S)
    raise IngestError("ingest kept failing; giving up (re-run: event ids make it safe)")

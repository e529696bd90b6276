"""New figures, as the workers announce them: each commit sends a Postgres
NOTIFY on `callkpi_figures` (services/kpi_stream/store.py). The alert evaluator
and the wallboard hub wait on it instead of polling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from services.core.db import FIGURES_CHANNEL, asyncpg_dsn, require_database_url
from services.core.faults import reason
from services.core.settings import ConfigError, Settings

log = logging.getLogger("callkpi.notifications")

# Postgres down: the listen is tried again this often (the callers read on
# their timers meanwhile), and the warning is said once per outage.
RETRY_S = 10.0


class FiguresListener:
    """`changed` is set when a worker has committed figures. `listen()` (re)opens
    the connection when it is closed (Postgres restarted): call it before each
    wait; without it the caller's own timer still runs."""

    def __init__(self, settings: Settings, who: str) -> None:
        self.settings = settings
        self.who = who  # named in the warning: who falls back to its timer
        self.changed = asyncio.Event()
        self._conn: Any = None
        self._retry_at = 0.0
        self._failing = False

    async def listen(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at:
            return
        try:
            conn = await asyncpg.connect(asyncpg_dsn(require_database_url(self.settings)))
            await conn.add_listener(FIGURES_CHANNEL, lambda *_: self.changed.set())
        except (OSError, asyncpg.PostgresError, ConfigError) as exc:
            self._retry_at = loop.time() + RETRY_S
            if not self._failing:
                log.warning("%s: cannot listen for new figures (%s); on the timer only",
                            self.who, reason(exc, default="postgres"))  # fmt: skip
            self._failing = True
            return
        self._conn = conn
        if self._failing:
            log.info("%s: listening for new figures again", self.who)
        self._failing = False

    async def wait(self, seconds: float) -> bool:
        """Until figures change or `seconds` pass; True if they changed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, seconds)):
                await self.changed.wait()
        return self.changed.is_set()

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()

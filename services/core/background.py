"""A loop that runs beside a service from its lifespan: started, then cancelled and
awaited on stop, so nothing it does outlives the process's shutdown."""

from __future__ import annotations

import asyncio
import contextlib


class Background:
    """Subclasses define `_run`; `start` and `stop` are called from a lifespan."""

    task_name = "background"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

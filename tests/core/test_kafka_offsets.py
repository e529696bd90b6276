"""What the broker says of its logs' ends, against the real Kafka-protocol broker
of the tests: Tansu's ListOffsets under-reports a partition's end after a
multi-record batch, so a loss is confirmed by fetching the record itself."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.core.kafka import holds_record
from services.devstack import EmbeddedBroker


async def five_records_in_one_batch(boot: str, topic: str) -> tuple[list[int], int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=boot)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=boot, linger_ms=50)  # one batch
    await producer.start()
    try:
        sent = [await producer.send(topic, b"r%d" % i, partition=0) for i in range(5)]
        offsets = [(await f).offset for f in sent]
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=boot)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        end = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    return offsets, end


def test_the_records_a_partition_holds_are_found_whatever_its_listed_end_says(
    broker: EmbeddedBroker,
) -> None:
    topic = f"offsets-{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[list[int], int, list[bool | None]]:
        offsets, end = await five_records_in_one_batch(broker.bootstrap, topic)
        held = [await holds_record(broker.bootstrap, topic, 0, o) for o in (0, 4, 5, 50)]
        return offsets, end, held

    offsets, end, held = asyncio.run(scenario())
    assert offsets == [0, 1, 2, 3, 4]
    # Tansu: the last batch's base offset + 1 (Apache Kafka says 5); if it is ever
    # fixed, the check below still holds and this line says so
    assert end in (1, 5), end
    assert held == [True, True, False, False]

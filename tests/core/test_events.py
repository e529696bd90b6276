from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.events import (
    EventError,
    murmur2_fast,
    normalize,
    parse_timestamp_us,
    partition_for,
)


def test_same_instant_in_different_offsets_gives_the_same_microseconds() -> None:
    a = parse_timestamp_us("2026-11-20T09:00:00.000001+08:00")
    b = parse_timestamp_us("2026-11-20T01:00:00.000001Z")
    assert a == b and a % 1_000_000 == 1


def test_naive_timestamp_is_rejected_with_the_field_named() -> None:
    with pytest.raises(EventError, match="occurred_at"):
        normalize({"event_id": "1", "type": "call.answered", "occurred_at": "2026-11-20T09:00:00",
                   "call_id": "c", "agent_id": "a"}, b"k")  # fmt: skip


def test_missing_type_specific_field_is_named() -> None:
    with pytest.raises(EventError, match="agent_id"):
        normalize({"event_id": "1", "type": "call.answered", "occurred_at": "2026-11-20T09:00:00Z",
                   "call_id": "c"}, b"k")  # fmt: skip


def test_customer_id_is_replaced_by_a_keyed_hash_and_extras_are_kept() -> None:
    ev = normalize({"event_id": "1", "type": "call.offered", "occurred_at": "2026-11-20T09:00:00Z",
                    "call_id": "c", "queue_id": "q", "customer_id": "+861380000", "x": 1}, b"k")  # fmt: skip
    other = normalize({**ev, "customer_id": "+861380000"}, b"other-key")
    assert ev["customer_id"] != "+861380000" and len(ev["customer_id"]) == 64
    assert ev["customer_id"] != other["customer_id"] and ev["x"] == 1


def test_partitioning_matches_kafkas_default_murmur2() -> None:
    # Values from Kafka's Java DefaultPartitioner (Utils.murmur2), 4 partitions.
    from aiokafka.partitioner import murmur2

    assert partition_for("call-1", 4) == (murmur2(b"call-1") & 0x7FFFFFFF) % 4
    assert len({partition_for(f"c{i}", 8) for i in range(200)}) == 8


@given(st.binary(max_size=64))
def test_fast_murmur2_equals_aiokafkas_on_any_bytes(data: bytes) -> None:
    from aiokafka.partitioner import murmur2

    assert murmur2_fast(data) == murmur2(data)

"""Envelopes always fit a Kafka record, whatever the batch and its keys."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.envelope import ItemTooLarge, pack
from services.core.settings import RECORD_ALLOWANCE_BYTES

LIMIT = 64 * 1024


@given(
    sizes=st.lists(st.integers(1, LIMIT - RECORD_ALLOWANCE_BYTES - 100), max_size=60),
    max_items=st.integers(1, 50),
)
def test_packed_envelopes_fit_the_record_limit_and_keep_every_item_in_order(
    sizes: list[int], max_items: int
) -> None:
    items = [orjson.dumps({"i": i, "pad": "x" * n}) for i, n in enumerate(sizes)]
    records = list(pack("events", items, 1_700_000_000_000_000, LIMIT, max_items))
    assert all(len(r) <= LIMIT - RECORD_ALLOWANCE_BYTES for r in records)
    decoded = [orjson.loads(r) for r in records]
    assert all(len(d["events"]) <= max_items for d in decoded)
    assert [e["i"] for d in decoded for e in d["events"]] == list(range(len(sizes)))


def test_a_hot_key_of_20000_facts_becomes_several_records() -> None:
    facts = [orjson.dumps({"call_id": f"c{i}", "customer": "0" * 64}) for i in range(20_000)]
    records = list(pack("facts", facts, 0, 1024 * 1024, 100_000))
    assert len(records) >= 2
    assert max(len(r) for r in records) <= 1024 * 1024 - RECORD_ALLOWANCE_BYTES


def test_an_item_no_record_can_hold_is_named_with_its_size() -> None:
    with pytest.raises(ItemTooLarge, match="70,010 bytes"):
        list(pack("events", [b"x" * 70_010], 0, LIMIT, 10))

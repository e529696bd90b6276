"""Envelopes: many items (events, FCR facts) in one Kafka record.

One Kafka record per few hundred items is what lets a Python worker reach tens of
thousands of events/s (Faust's per-record cost is paid once per envelope). Every
envelope is packed to fit the producers' `max_request_size`
(Settings.kafka_max_request_bytes), whatever the batch and however its keys are
distributed: a record over it is refused by the producer, and a batch that builds
one would be retried for ever (a month of calls from withheld number "0" did it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from services.core.events import DEFAULT_RULES, DOOR_VERSION, DoorRules, EventError, normalize
from services.core.settings import RECORD_ALLOWANCE_BYTES


@dataclass(frozen=True, slots=True)
class Envelope:
    partition: int
    ingested_us: int
    items: list[dict[str, Any]]
    offset: int = -1  # of its Kafka record; -1 where not read from Kafka
    # Where each item stands in its record, when the envelope holds only some of
    # them (screened, or bisected: services/kpi_stream/quarantine.py); () = all.
    index: tuple[int, ...] = ()

    # False: its events were not checked by this version of the door (see
    # events.DOOR_VERSION); the worker checks each before counting it.
    checked: bool = True

    def origin(self, i: int) -> int:
        """The index in the Kafka record of this envelope's item i."""
        return self.index[i] if self.index else i


class ItemTooLarge(ValueError):
    """One item that could not fit a record on its own."""


def encode_item(item: Mapping[str, Any]) -> bytes:
    """An item's JSON. Raises ValueError (orjson's) past its nesting limit of 254."""
    return orjson.dumps(item)


def pack(
    field: str,
    encoded: Sequence[bytes],
    at_us: int,
    max_request_bytes: int,
    max_items: int,
    door: int | None = None,
) -> Iterator[bytes]:
    """Envelopes of the encoded items, in order: at most `max_items` each and each
    small enough to be one record under `max_request_bytes`. `door`: the version
    of the checks the items passed (ingest's events)."""
    room = max_request_bytes - RECORD_ALLOWANCE_BYTES
    mark = b"" if door is None else b'"door":%d,' % door
    head = b'{"v":1,"at":%d,%s"%s":[' % (at_us, mark, field.encode())
    chunk: list[bytes] = []
    size = len(head) + 2
    for item in encoded:
        if len(head) + 2 + len(item) > room:
            raise ItemTooLarge(
                f"one {field[:-1]} is {len(item):,} bytes: no record of "
                f"kafka_max_request_bytes={max_request_bytes} can hold it"
            )
        if chunk and (len(chunk) >= max_items or size + 1 + len(item) > room):
            yield head + b",".join(chunk) + b"]}"
            chunk, size = [], len(head) + 2
        size += len(item) + (1 if chunk else 0)
        chunk.append(item)
    if chunk:
        yield head + b",".join(chunk) + b"]}"


def encode_envelope(field: str, items: Sequence[Mapping[str, Any]], at_us: int) -> bytes:
    """One envelope of all `items` (tests and tools; producers use `pack`)."""
    return orjson.dumps({"v": 1, "at": at_us, field: list(items)})


def decode_envelope(partition: int, raw: bytes, field: str, offset: int = -1) -> Envelope:
    """An envelope the worker itself wrote (FCR facts)."""
    data = orjson.loads(raw)
    return Envelope(partition, int(data.get("at", 0)), list(data[field]), offset)


class BadRecord(ValueError):
    """A record on the events topic that is neither an envelope nor a valid event."""


def decode_events_record(
    partition: int,
    raw: bytes | None,
    hash_key: bytes,
    rules: DoorRules = DEFAULT_RULES,
    now_us: int | None = None,
    offset: int = -1,
) -> Envelope:
    """Our ingest writes envelopes of normalised events. Other producers may write
    plain canonical events (one per record, keyed by call_id); those are validated
    and normalised here exactly as ingest would (with the worker's clock as `now_us`).
    Anything else is a BadRecord."""
    try:
        data = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise BadRecord(f"not JSON: {exc}") from None
    if isinstance(data, dict) and data.get("v") == 1 and isinstance(data.get("events"), list):
        events = data["events"]
        # exact type checks: cheap enough for every event of every envelope
        if not all(type(ev) is dict and type(ev.get("ts")) is int for ev in events):
            raise BadRecord("envelope holds an event that is not normalised (no integer ts)")
        checked = data.get("door") == DOOR_VERSION
        return Envelope(partition, int(data.get("at") or 0), events, offset, checked=checked)
    try:
        return Envelope(partition, 0, [normalize(data, hash_key, rules, now_us)], offset)
    except EventError as exc:
        raise BadRecord(f"invalid event: {exc}") from None

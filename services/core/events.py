"""Canonical CTI events: validation against schemas/cti-event.v1.schema.json and
normalisation into the form that travels through Kafka.

The JSON Schema file is the single source of the contract. It is compiled once per
event type (the `then` branch of its `allOf`), so one event is checked against the
envelope and its own type only, rather than walking eleven `if` clauses.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastjsonschema

from services.core.timewin import epoch_us

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "cti-event.v1.schema.json"

CALL_EVENT_TYPES = frozenset(
    {
        "call.offered",
        "call.ringing",
        "call.answered",
        "call.hold",
        "call.resumed",
        "call.transferred",
        "call.ended",
        "call.wrapup_ended",
        "call.disposition",
        "survey.completed",
    }
)
AGENT_EVENT_TYPES = frozenset({"agent.state"})

Event = dict[str, Any]


class EventError(ValueError):
    """Why an event is invalid; the message names the field."""


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    import orjson

    data: dict[str, Any] = orjson.loads(SCHEMA_PATH.read_bytes())
    return data


@lru_cache(maxsize=1)
def _validators() -> tuple[Any, dict[str, Any]]:
    schema = _schema()
    envelope = {k: v for k, v in schema.items() if k != "allOf"}
    per_type: dict[str, Any] = {}
    for clause in schema["allOf"]:
        type_name = clause["if"]["properties"]["type"]["const"]
        per_type[type_name] = fastjsonschema.compile(
            {"$schema": schema["$schema"], "type": "object", **clause["then"]}
        )
    return fastjsonschema.compile(envelope), per_type


def _explain(exc: fastjsonschema.JsonSchemaValueException, event: Any) -> str:
    msg = str(exc.message)
    if exc.name == "data.occurred_at" and "pattern" in msg:
        msg = (
            "data.occurred_at must be an RFC 3339 timestamp with a UTC offset, "
            f"e.g. 2026-11-22T09:30:00+08:00; got {event.get('occurred_at')!r}"
        )
    if msg.startswith("data."):
        msg = msg[len("data.") :]
    elif msg.startswith("data "):
        msg = "event " + msg[len("data ") :]
    if isinstance(event, dict) and isinstance(event.get("type"), str):
        return f"{event['type']}: {msg}"
    return msg


def parse_timestamp_us(value: str) -> int:
    """RFC 3339 with offset → integer microseconds since the epoch (exact arithmetic)."""
    try:
        dt = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError as exc:
        raise EventError(f"occurred_at: not an RFC 3339 timestamp: {value!r}") from exc
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise EventError(f"occurred_at: timestamp has no UTC offset: {value!r}")
    return epoch_us(dt)


def hash_customer(customer_id: str, key: bytes) -> str:
    """Keyed hash so that raw phone numbers never reach Kafka or Postgres."""
    return hmac.new(key, customer_id.encode("utf-8"), hashlib.sha256).hexdigest()


def validate_event(event: Any) -> None:
    envelope, per_type = _validators()
    try:
        envelope(event)
        per_type[event["type"]](event)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise EventError(_explain(exc, event)) from None


def normalize(event: Any, hash_key: bytes) -> Event:
    """Validate one event and return the form the worker consumes.

    Adds ``ts`` (µs since epoch, UTC) and replaces ``customer_id`` by its keyed hash.
    Unknown extra fields are kept.
    """
    validate_event(event)
    out = dict(event)
    out["ts"] = parse_timestamp_us(event["occurred_at"])
    customer = out.get("customer_id")
    if customer is not None:
        out["customer_id"] = hash_customer(customer, hash_key)
    return out


def routing_key(event: Event) -> str:
    """All events of one call share a partition; agent events go by agent."""
    if event["type"] in AGENT_EVENT_TYPES:
        return "agent:" + str(event["agent_id"])
    return str(event["call_id"])


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2_fast(data: bytes) -> int:
    """Kafka's murmur2 (as in its Java DefaultPartitioner), written for CPython:
    about 4x faster than aiokafka's byte-by-byte version, same results (tested)."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:end]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@lru_cache(maxsize=65_536)
def partition_for(key: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), so any Kafka producer keyed by call_id
    lands on the same partition as our ingest does. Cached: a call's events arrive
    close together."""
    return (murmur2_fast(key.encode("utf-8")) & 0x7FFFFFFF) % partitions

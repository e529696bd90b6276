"""Canonical CTI events: validation against schemas/cti-event.v1.schema.json and
normalisation into the form that travels through Kafka.

The JSON Schema file is the single source of the contract. It is compiled once per
event type (the envelope with the `then` branch of its `allOf`), so one event is
checked against its own type only, rather than walking every `if` clause.

Two validators read it. jsonschema-rs (compiled, about 0.8 µs an event against
4 µs) decides; fastjsonschema, only for an event the first refuses, words the
error (the messages ingest has always given, which _explain rewrites). Schema
validation was two thirds of the door's time, the door most of ingest's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema_rs

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
        "call.callback",
        "call.ivr_abandoned",
        "call.disposition",
        "survey.completed",
    }
)
AGENT_EVENT_TYPES = frozenset({"agent.state"})

Event = dict[str, Any]


class EventError(ValueError):
    """Why an event is invalid; the message names the field."""


# How PBXs and carriers write a caller id they do not have: withheld by the caller
# (CLIR), not delivered by the network, or not a number at all. Matched whole,
# ignoring case and surrounding blanks. A real bank's month had more than half of
# its calls logged as "0": chained into one "customer", every one of them was the
# repeat of the one before, and one key held 17,000 calls.
WITHHELD_CALLER_IDS: tuple[str, ...] = (
    r"[0+\-\s]*",  # "", "0", "00000", "+0", "-": no digits but zeros
    r"(sip:)?anonymous(@.*)?",  # SIP (RFC 3323): anonymous@anonymous.invalid
    r"<?unknown>?( caller)?",  # Asterisk writes "<unknown>" and "unknown"
    r"restricted|private( number)?|unavailable|withheld|blocked|hidden",
    r"no caller ?id|not available|out of area|none|null|n/?a",
    r"[op]",  # Bellcore/CLASS caller-id codes: O = out of area, P = private
)


def withheld_matcher(patterns: Sequence[str]) -> re.Pattern[str]:
    """One pattern that matches a whole caller id that is not a customer."""
    return re.compile("|".join(f"(?:{p})" for p in patterns) or r"(?!)", re.IGNORECASE)


# Ingest's clock against the events': an event stamped further ahead than this is a
# wrong clock or a typo (year 9999), not a call. One such event used to move the
# FCR watermark to 9999 and finalise every pending outcome at once.
DEFAULT_MAX_FUTURE_US = 3600 * 1_000_000
# The largest event ingest accepts, encoded: one event must always fit a Kafka
# record with room to spare, whatever else shares its envelope.
DEFAULT_MAX_EVENT_BYTES = 64 * 1024


@dataclass(frozen=True)
class DoorRules:
    """What is refused at the door beyond the JSON Schema (Settings.door_rules)."""

    withheld: re.Pattern[str] = field(default_factory=lambda: withheld_matcher(WITHHELD_CALLER_IDS))
    max_future_us: int = DEFAULT_MAX_FUTURE_US
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES

    def is_withheld(self, caller: str) -> bool:
        return self.withheld.fullmatch(caller.strip()) is not None


DEFAULT_RULES = DoorRules()

# Envelopes ingest writes say which door checked their events ("door": this). The
# worker checks the events of any other record itself (recheck): records of other
# producers, and those an older ingest wrote before a check existed. Bump it when
# the door refuses something new.
DOOR_VERSION = 3  # 2: agent and queue ids without "." or ".." path segments; 3: no
# string ends in a newline (the pattern's `$` matched before it)

# What no string of the contract holds (the JSON Schema's pattern says the same).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


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


@lru_cache(maxsize=1)
def _deciders() -> dict[str, Any]:
    """Per event type, a compiled validator of the envelope and the type's branch."""
    schema = _schema()
    envelope = {k: v for k, v in schema.items() if k not in ("allOf", "$id")}
    out: dict[str, Any] = {}
    for clause in schema["allOf"]:
        type_name = clause["if"]["properties"]["type"]["const"]
        branch = {"type": "object", **clause["then"]}
        out[type_name] = jsonschema_rs.validator_for(
            {"$schema": schema["$schema"], "allOf": [envelope, branch]}, validate_formats=True
        )
    return out


def _explain(exc: fastjsonschema.JsonSchemaValueException, event: Any) -> str:
    msg = str(exc.message)
    control = CONTROL_CHARACTERS.search(exc.value) if isinstance(exc.value, str) else None
    if exc.rule == "pattern" and control is not None:
        msg = (
            f"{exc.name} must not contain control characters (U+0000-U+001F, U+007F); "
            f"found U+{ord(control.group()):04X} at position {control.start()}"
        )
    elif exc.name == "data.occurred_at" and "pattern" in msg:
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


def _refuse(event: Any, decide: Any) -> None:
    """Raise EventError saying why `event` is invalid: fastjsonschema's message, or,
    for what only jsonschema-rs refuses (its `$` ends a pattern at the very end,
    Python's before a final newline: "a\\n" holds a control character),
    jsonschema-rs's own."""
    envelope, per_type = _validators()
    try:
        envelope(event)
        per_type[event["type"]](event)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise EventError(_explain(exc, event)) from None
    if decide is None:  # unreachable: the envelope refuses an unknown type
        raise EventError(f"event type {event.get('type')!r} is not in the schema")
    error = next(iter(decide.iter_errors(event)))
    where = ".".join(str(p) for p in error.instance_path) or "event"
    raise EventError(f"{event['type']}: {where}: {error.message}")


# Cached: the events of one call, one queue_log line or one agent's shift share
# their instants, and parsing was a tenth of ingest's time. Errors are not cached
# (lru_cache keeps only returned values), so each bad stamp is reported.
@lru_cache(maxsize=8192)
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


# Agent and queue ids are read back as a URL path (/v1/kpis/agent/SIP/1001): a path
# segment "." or ".." is removed by every HTTP client before the request is sent
# (RFC 3986, 5.2.4), so an id holding one could be counted but never read.
ENTITY_ID_FIELDS = ("agent_id", "to_agent_id", "queue_id", "to_queue_id")
_DOT_SEGMENTS = (".", "..")


def validate_event(event: Any) -> None:
    typ = event.get("type") if isinstance(event, dict) else None
    decide = _deciders().get(typ) if isinstance(typ, str) else None
    if decide is None or not decide.is_valid(event):
        _refuse(event, decide)
    for name in ENTITY_ID_FIELDS:
        value = event.get(name)
        if (
            isinstance(value, str)
            and "." in value
            and any(seg in _DOT_SEGMENTS for seg in value.split("/"))
        ):
            raise EventError(
                f"{event['type']}: {name} {value!r} has a path segment '.' or '..', which no "
                f"URL can carry (ids are read back as /v1/kpis/<kind>/<id>)"
            )


def normalize(
    event: Any, hash_key: bytes, rules: DoorRules = DEFAULT_RULES, now_us: int | None = None
) -> Event:
    """Validate one event and return the form the worker consumes.

    Adds ``ts`` (µs since epoch, UTC) and replaces ``customer_id`` by its keyed hash,
    or drops it when it is a withheld or unknown number (`rules.withheld`): such a
    call is no customer's. With `now_us` (the receiving clock), an event stamped more
    than `rules.max_future_us` ahead of it is refused. Unknown extra fields are kept.
    """
    if not isinstance(event, dict):
        raise EventError(f"event must be a JSON object, got {_json_type(event)}")
    validate_event(event)
    out = dict(event)
    ts = parse_timestamp_us(event["occurred_at"])
    if ts < 0:
        raise EventError(
            f"{event['type']}: occurred_at {event['occurred_at']!r} is before 1970-01-01T00:00:00Z"
        )
    if now_us is not None and ts - now_us > rules.max_future_us:
        raise EventError(
            f"{event['type']}: occurred_at {event['occurred_at']!r} is "
            f"{(ts - now_us) / 3_600_000_000:,.1f} h ahead of ingest's clock (at most "
            f"max_future_seconds={rules.max_future_us // 1_000_000} ahead; a wrong PBX clock?)"
        )
    out["ts"] = ts
    customer = out.get("customer_id")
    if customer is not None:
        if rules.is_withheld(customer):
            del out["customer_id"]
        else:
            out["customer_id"] = hash_customer(customer, hash_key)
    return out


def recheck(event: Any, rules: DoorRules, now_us: int) -> None:
    """The door's checks on an event that is already normalised (an envelope's
    item not checked by this door version). Raises EventError naming the field."""
    if not isinstance(event, dict):
        raise EventError(f"event must be a JSON object, got {_json_type(event)}")
    validate_event(event)
    ts = event.get("ts")
    if type(ts) is not int or ts < 0 or ts - now_us > rules.max_future_us:
        raise EventError(
            f"{event['type']}: ts {ts!r} is not an instant between 1970 and "
            f"max_future_seconds={rules.max_future_us // 1_000_000} past the worker's clock"
        )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


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

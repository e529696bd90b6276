"""`POST /v1/events`: validate, hash caller ids, pack per partition, produce.

Valid events of a request are packed into one Kafka record per partition (at
most `envelope_max_events` each): the worker pays Faust's per-record cost once
per few hundred events instead of once per event. Invalid events are reported
by index and never produced; the valid ones around them are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import Counter as PromCounter

from services.core.envelope import encode_item, pack
from services.core.events import (
    DOOR_VERSION,
    EventError,
    normalize,
    partition_for,
    routing_key,
)
from services.core.faults import reason
from services.core.kafka import TopicGuard, ensure_topics
from services.core.settings import Settings

log = logging.getLogger("callkpi.ingest")

EVENTS_INGESTED = PromCounter(
    "callkpi_events_ingested_total", "Events accepted by ingest and produced to Kafka", ["type"]
)
EVENTS_REJECTED = PromCounter(
    "callkpi_events_rejected_total", "Events rejected by ingest, by reason", ["reason"]
)
PRODUCE_TIMEOUT_S = 15.0


class EventProducer:
    """Owns the aiokafka producer and the topic guard; started and stopped by the
    app's lifespan. A producer that failed for a reason other than a timeout is
    replaced before the next request: after the broker lost and regained its
    topics, an old client's metadata no longer matches them."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None
        self._renew = False
        self.guard = TopicGuard(settings, bootstrap, on_lost=self._lost)

    async def start(self) -> None:
        await ensure_topics(self.settings, self.bootstrap)
        self._producer = await self._new_producer()
        self.guard.start()

    async def _new_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=2,
            max_request_size=self.settings.kafka_max_request_bytes,
            compression_type=None,
            request_timeout_ms=10_000,
        )
        await producer.start()
        return producer

    async def _lost(self, _topics: list[str]) -> None:
        self._renew = True

    async def _renewed(self) -> AIOKafkaProducer:
        if self._renew or self._producer is None:
            old, self._producer = self._producer, None
            if old is not None:
                with contextlib.suppress(Exception):
                    await old.stop()
            self._producer = await self._new_producer()
            self._renew = False
            log.info("ingest: new broker client for %s", self.bootstrap)
        return self._producer

    async def stop(self) -> None:
        await self.guard.stop()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, by_part: dict[int, list[bytes]]) -> None:
        """Produce the encoded events of each partition in envelopes that fit a
        record, and wait for every record to be acknowledged."""
        if not self.guard.up:
            raise KafkaError(f"broker unreachable ({self.guard.error})")
        producer = await self._renewed()
        s = self.settings
        at = time.time_ns() // 1000
        futures = []
        try:
            for part, encoded in by_part.items():
                for value in pack("events", encoded, at, s.kafka_max_request_bytes,
                                  s.envelope_max_events, door=DOOR_VERSION):  # fmt: skip
                    futures.append(await producer.send(s.events_topic, value=value, partition=part))
            async with asyncio.timeout(PRODUCE_TIMEOUT_S):
                await asyncio.gather(*futures)
        except KafkaError:
            self._renew = True
            raise


class _Malformed:
    """An NDJSON line that is not JSON (reported by line, not as a missing event)."""


MALFORMED = _Malformed()


def _parse_body(
    body: bytes, content_type: str, max_events: int
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Returns (items, rejected); malformed NDJSON lines are MALFORMED items.
    Raises BodyError past `max_events` items, as soon as the count is passed."""
    if "ndjson" in content_type or "jsonl" in content_type:
        return _parse_ndjson(body, max_events)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(422, f"body is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        return [data], []
    if not isinstance(data, list):
        raise BodyError(422, "body must be a JSON array of events, an event object, or NDJSON")
    if len(data) > max_events:
        raise BodyError(413, _too_many(len(data), max_events))
    return data, []


def _parse_ndjson(body: bytes, max_events: int) -> tuple[list[Any], list[dict[str, Any]]]:
    items: list[Any] = []
    rejected: list[dict[str, Any]] = []
    # Blank lines are allowed, but not without end: a body of nothing but newlines
    # is refused as soon as it has more lines than a full batch could need.
    max_lines = 2 * max_events + 1000
    pos, lineno, size = 0, 0, len(body)
    while pos < size:
        end = body.find(b"\n", pos)
        if end < 0:
            end = size
        line = body[pos:end]
        pos = end + 1
        lineno += 1
        if lineno > max_lines:
            raise BodyError(413, f"body has more than {max_lines:,} lines")
        if not line.strip():
            continue
        if len(items) == max_events:
            raise BodyError(413, _too_many(len(items) + 1, max_events, f" (at line {lineno})"))
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            rejected.append(
                {"index": len(items), "line": lineno, "error": f"malformed JSON: {exc}"}
            )
            items.append(MALFORMED)
    return items, rejected


def _too_many(n: int, limit: int, where: str = "") -> str:
    return f"batch of {n:,}{'+' if where else ''} events exceeds max_batch_events={limit}{where}"


class Admitted:
    """The events of one request that passed the door, encoded per partition."""

    def __init__(self) -> None:
        self.by_part: dict[int, list[bytes]] = {}
        self.types: dict[str, int] = {}
        self.count = 0


def admit(
    items: list[Any],
    rejected: list[dict[str, Any]],
    settings: Settings,
    hash_key: bytes,
    now_us: int,
) -> Admitted:
    """Each item through the door: the JSON Schema, the limits of what the pipeline
    can store (docs/metrics.md#what-ingest-refuses), and its encoded size. What
    fails is added to `rejected` by index; nothing that passes can fail later."""
    rules = settings.door_rules
    out = Admitted()
    # names looked up once: this loop runs for every event ingest takes
    by_part, types = out.by_part, out.types
    partitions, max_bytes = settings.partitions, rules.max_event_bytes
    for index, item in enumerate(items):
        if item is MALFORMED:
            continue
        try:
            ev = normalize(item, hash_key, rules, now_us)
            encoded = encode_item(ev)
        except EventError as exc:
            rejected.append({"index": index, "error": str(exc)})
            continue
        except orjson.JSONEncodeError as exc:  # nested past orjson's 254 levels
            rejected.append({"index": index, "error": f"{ev['type']}: cannot be encoded: {exc}"})
            continue
        if len(encoded) > max_bytes:
            rejected.append(
                {
                    "index": index,
                    "error": f"{ev['type']}: event is {len(encoded):,} bytes encoded, more "
                    f"than max_event_bytes={max_bytes}",
                }
            )
            continue
        part = partition_for(routing_key(ev), partitions)
        mine = by_part.get(part)
        if mine is None:
            mine = by_part[part] = []
        mine.append(encoded)
        typ = ev["type"]
        types[typ] = types.get(typ, 0) + 1
    out.count = sum(types.values())
    rejected.sort(key=lambda r: r["index"])
    return out


class BodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def get_producer(request: Request) -> EventProducer:
    producer: EventProducer = request.app.state.producer
    return producer


def json_response(data: Any, status_code: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data), status_code=status_code, media_type="application/json", headers=headers
    )


def create_ingest_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["ingest"])
    hash_key = settings.hash_key.get_secret_value().encode("utf-8")

    def door(body: bytes, content_type: str, now_us: int) -> tuple[Admitted, list[dict[str, Any]]]:
        items, rejected = _parse_body(body, content_type, settings.max_batch_events)
        return admit(items, rejected, settings, hash_key, now_us), rejected

    @router.post(
        "/v1/events",
        status_code=202,
        responses={
            202: {"description": "At least one event accepted; the others are listed in "
                  "`rejected` by index, with the reason"},
            413: {"description": "Body or batch too large; nothing accepted"},
            422: {"description": "No event accepted; each is listed in `rejected`"},
            503: {"description": "Kafka unavailable; nothing is confirmed (some events may "
                  "have been produced): retry the same events, their ids make it harmless"},
        },
    )  # fmt: skip
    async def post_events(
        request: Request, producer: Annotated[EventProducer, Depends(get_producer)]
    ) -> Response:
        """Accept a JSON array of events or NDJSON (`Content-Type: application/x-ndjson`)."""
        try:
            body = await read_body(request, settings.max_body_bytes)
        except BodyTooLarge as exc:
            return _too_large(str(exc))
        try:
            # Parsing and checking 20,000 events takes a few hundred ms of CPU: in a
            # thread, so health checks and other requests are answered meanwhile.
            admitted, rejected = await asyncio.to_thread(
                door, body, request.headers.get("content-type", ""), time.time_ns() // 1000
            )
        except BodyError as exc:
            if exc.status == 413:
                return _too_large(exc.message, "batch_too_large")
            EVENTS_REJECTED.labels("malformed_json").inc()
            return json_response(
                {"accepted": 0, "rejected": [{"index": None, "error": exc.message}]},
                exc.status,
            )
        if rejected:
            EVENTS_REJECTED.labels("invalid").inc(len(rejected))
        if not admitted.count:
            return json_response({"accepted": 0, "rejected": rejected}, 422)
        try:
            await producer.send(admitted.by_part)
        except (KafkaError, TimeoutError, OSError) as exc:
            why = reason(exc, default="broker", waited_s=PRODUCE_TIMEOUT_S)
            log.warning("produce failed: %s", why)
            EVENTS_REJECTED.labels("unavailable").inc(admitted.count)
            return json_response(
                {
                    "accepted": 0,
                    "rejected": rejected,
                    "error": f"event broker unavailable ({why}); retry the same "
                    "events later (their event ids make retries harmless)",
                },
                503,
                headers={"Retry-After": "1"},
            )
        for typ, n in admitted.types.items():
            EVENTS_INGESTED.labels(typ).inc(n)
        return json_response({"accepted": admitted.count, "rejected": rejected}, 202)

    return router


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused past `limit` bytes without reading the rest: a
    declared Content-Length is checked first, then the bytes as they arrive."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {declared} bytes exceeds max_body_bytes={limit}")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise BodyTooLarge(f"body exceeds max_body_bytes={limit}")
    return bytes(body)


def _too_large(message: str, reason: str = "too_large", count: int = 1) -> Response:
    # nothing of the request was accepted
    EVENTS_REJECTED.labels(reason).inc(count)
    return json_response({"accepted": 0, "rejected": [{"index": None, "error": message}]}, 413)


@asynccontextmanager
async def producer_lifespan(
    app: FastAPI, settings: Settings, bootstrap: str
) -> AsyncIterator[None]:
    producer = EventProducer(settings, bootstrap)
    await producer.start()
    app.state.producer = producer
    try:
        yield
    finally:
        await producer.stop()

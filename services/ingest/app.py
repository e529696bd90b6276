"""`POST /v1/events`: validate, hash caller ids, pack per partition, produce.

Valid events of a request are packed into one Kafka record per partition (at
most `envelope_max_events` each): the worker pays Faust's per-record cost once
per few hundred events instead of once per event. Invalid events are reported
by index and never produced; the valid ones around them are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import Counter as PromCounter

from services.core.events import EventError, normalize, partition_for, routing_key
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
    """Owns the aiokafka producer; started and stopped by the app's lifespan."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        from services.core.kafka import ensure_topics

        await ensure_topics(self.settings, self.bootstrap)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=2,
            max_request_size=16 * 1024 * 1024,
            compression_type=None,
            request_timeout_ms=10_000,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, events: list[dict[str, Any]]) -> None:
        """Produce and wait for every record to be acknowledged."""
        if self._producer is None:
            raise KafkaError("producer not started")
        s = self.settings
        by_part: dict[int, list[dict[str, Any]]] = {}
        for ev in events:
            by_part.setdefault(partition_for(routing_key(ev), s.partitions), []).append(ev)
        at = time.time_ns() // 1000
        futures = []
        for part, evs in by_part.items():
            for i in range(0, len(evs), s.envelope_max_events):
                chunk = evs[i : i + s.envelope_max_events]
                value = orjson.dumps({"v": 1, "at": at, "events": chunk})
                futures.append(
                    await self._producer.send(s.events_topic, value=value, partition=part)
                )
        async with asyncio.timeout(PRODUCE_TIMEOUT_S):
            await asyncio.gather(*futures)


def _parse_body(body: bytes, content_type: str) -> tuple[list[Any], list[dict[str, Any]]]:
    """Returns (items, rejected). Items that could not be parsed are None."""
    rejected: list[dict[str, Any]] = []
    if "ndjson" in content_type or "jsonl" in content_type:
        items: list[Any] = []
        for lineno, line in enumerate(body.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                rejected.append(
                    {"index": len(items), "line": lineno, "error": f"malformed JSON: {exc}"}
                )
                items.append(None)
        return items, rejected
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(422, f"body is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        return [data], rejected
    if not isinstance(data, list):
        raise BodyError(422, "body must be a JSON array of events, an event object, or NDJSON")
    return data, rejected


class BodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def get_producer(request: Request) -> EventProducer:
    producer: EventProducer = request.app.state.producer
    return producer


def json_response(data: Any, status_code: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data), status_code=status_code, media_type="application/json", headers=headers
    )


def create_ingest_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["ingest"])
    hash_key = settings.hash_key.get_secret_value().encode("utf-8")

    @router.post(
        "/v1/events",
        status_code=202,
        responses={
            202: {"description": "At least one event accepted"},
            413: {"description": "Body or batch too large"},
            422: {"description": "No event accepted"},
            503: {"description": "Kafka unavailable; safe to retry (event ids dedupe)"},
        },
    )
    async def post_events(
        request: Request, producer: Annotated[EventProducer, Depends(get_producer)]
    ) -> Response:
        """Accept a JSON array of events or NDJSON (`Content-Type: application/x-ndjson`)."""
        try:
            body = await read_body(request, settings.max_body_bytes)
        except BodyTooLarge as exc:
            return _too_large(str(exc))
        try:
            items, rejected = _parse_body(body, request.headers.get("content-type", ""))
        except BodyError as exc:
            EVENTS_REJECTED.labels("malformed_json").inc()
            return json_response(
                {"accepted": 0, "rejected": [{"index": None, "error": exc.message}]},
                exc.status,
            )
        if len(items) > settings.max_batch_events:
            return _too_large(
                f"batch of {len(items)} events exceeds "
                f"max_batch_events={settings.max_batch_events}",
                "batch_too_large",
                len(items),
            )
        if rejected:
            EVENTS_REJECTED.labels("malformed_json").inc(len(rejected))
        valid: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            if item is None:
                continue
            try:
                valid.append(normalize(item, hash_key))
            except EventError as exc:
                rejected.append({"index": index, "error": str(exc)})
                EVENTS_REJECTED.labels("invalid").inc()
        rejected.sort(key=lambda r: r["index"])
        if not valid:
            return json_response({"accepted": 0, "rejected": rejected}, 422)
        try:
            await producer.send(valid)
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("produce failed: %s", exc)
            EVENTS_REJECTED.labels("unavailable").inc(len(valid))
            return json_response(
                {
                    "accepted": 0,
                    "rejected": rejected,
                    "error": "event broker unavailable; retry the same events later "
                    "(their event ids make retries harmless)",
                },
                503,
                headers={"Retry-After": "1"},
            )
        for typ, n in Counter(ev["type"] for ev in valid).items():
            EVENTS_INGESTED.labels(typ).inc(n)
        return json_response({"accepted": len(valid), "rejected": rejected}, 202)

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

"""Where transitions go: the Kafka topic and the rules' webhooks.

Both read the outbox the evaluator writes in its transaction (alert_transitions,
webhook_deliveries), so they run on their own schedule: a broker that is down or
a webhook that hangs delays only its own sink, never evaluation, and nothing is
lost across a crash. Delivery is at least once; every message carries a `key`
(the transition's UUID) that consumers and webhook receivers deduplicate on,
sent to webhooks as the `Idempotency-Key` header.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core.db import alert_transitions, webhook_deliveries
from services.core.settings import Settings

log = logging.getLogger("callkpi.alerts")

SIGNATURE_HEADER = "X-Callkpi-Signature"
TIMESTAMP_HEADER = "X-Callkpi-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Transitions are few (a handful per rule and entity per day); this only bounds
# one transaction after a long broker outage.
PUBLISH_BATCH = 200
# Webhook deliveries in flight at once, so one slow receiver cannot hold up others.
MAX_IN_FLIGHT = 16


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` + hex HMAC-SHA256 of `timestamp.body`. The timestamp is signed
    so a receiver can refuse replays of an old, validly signed request."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def partition_key(body: dict[str, Any]) -> bytes:
    """One alert's transitions share a key, so they stay in order on the topic."""
    a = body["alert"]
    return f"{a['rule']['id']}/{a['kind']}/{a['entity_id']}".encode()


class Publisher:
    """Sends unpublished transitions to the alerts topic, oldest first."""

    def __init__(self, settings: Settings, engine: AsyncEngine, bootstrap: str) -> None:
        self.settings = settings
        self.engine = engine
        self.bootstrap = bootstrap
        # at least once: a re-send after a crash carries the same `key`
        # one transition per record: a few hundred bytes, far below the limit
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            request_timeout_ms=10_000,
            max_request_size=settings.kafka_max_request_bytes,
        )

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def publish_pending(self) -> int:
        t = alert_transitions
        async with self.engine.begin() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.c.id, t.c.body)
                    .where(t.c.published_at.is_(None))
                    .order_by(t.c.id)
                    .limit(PUBLISH_BATCH)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            sent = [
                await self.producer.send(
                    self.settings.alerts_topic,
                    value=orjson.dumps(r.body),
                    key=partition_key(r.body),
                )
                for r in rows
            ]
            await asyncio.gather(*sent)
            await conn.execute(
                t.update()
                .where(t.c.id.in_([r.id for r in rows]))
                .values(published_at=sa.func.now())
            )
        return len(rows)


class WebhookDeliverer:
    """POSTs each due delivery; failures are retried with doubling backoff until
    `webhook_give_up_after`, after which the delivery is dead (see /metrics)."""

    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.engine = engine
        cfg = settings.alerts
        secret = cfg.webhook_secret
        self.secret = secret.get_secret_value() if secret is not None else ""
        self.client = httpx.AsyncClient(timeout=cfg.webhook_timeout.total_seconds())
        self.in_flight: dict[tuple[int, str], asyncio.Task[None]] = {}

    async def stop(self) -> None:
        for task in self.in_flight.values():
            task.cancel()
        await asyncio.gather(*self.in_flight.values(), return_exceptions=True)
        await self.client.aclose()

    async def start_due(self) -> int:
        """Start a task for each due delivery not already in flight."""
        d = webhook_deliveries
        async with self.engine.connect() as conn:
            due = (
                await conn.execute(
                    sa.select(d.c.transition_id, d.c.url)
                    .where(
                        d.c.delivered_at.is_(None),
                        d.c.dead.is_(False),
                        d.c.next_attempt_at <= sa.func.now(),
                    )
                    .order_by(d.c.next_attempt_at)
                    .limit(MAX_IN_FLIGHT * 4)
                )
            ).all()
        started = 0
        for tid, url in due:
            key = (tid, url)
            if key in self.in_flight or len(self.in_flight) >= MAX_IN_FLIGHT:
                continue
            task = asyncio.create_task(self._deliver(tid, url))
            self.in_flight[key] = task
            task.add_done_callback(partial(self._done, key))
            started += 1
        return started

    def _done(self, key: tuple[int, str], _: asyncio.Task[None]) -> None:
        self.in_flight.pop(key, None)

    async def _deliver(self, tid: int, url: str) -> None:
        d, t = webhook_deliveries, alert_transitions
        try:
            async with self.engine.begin() as conn:
                # the row lock keeps another API process from sending it meanwhile
                row = (
                    await conn.execute(
                        sa.select(d.c.attempts, d.c.created_at, t.c.key, t.c.body)
                        .join(t, t.c.id == d.c.transition_id)
                        .where(
                            d.c.transition_id == tid,
                            d.c.url == url,
                            d.c.delivered_at.is_(None),
                            d.c.dead.is_(False),
                            d.c.next_attempt_at <= sa.func.now(),
                        )
                        .with_for_update(of=d, skip_locked=True)
                    )
                ).first()
                if row is None:
                    return
                status, error = await self._post(url, row.key, row.body)
                attempts = row.attempts + 1
                where = (d.c.transition_id == tid) & (d.c.url == url)
                values: dict[str, Any] = {
                    "attempts": attempts,
                    "last_attempt_at": sa.func.now(),
                    "last_status": status,
                    "last_error": error,
                }
                if error is None:
                    values["delivered_at"] = sa.func.now()
                else:
                    cfg = self.settings.alerts
                    backoff = min(timedelta(seconds=2 ** (attempts - 1)), cfg.webhook_max_backoff)
                    dead = datetime.now(UTC) - row.created_at >= cfg.webhook_give_up_after
                    values["next_attempt_at"] = sa.func.now() + backoff
                    values["dead"] = dead
                    log.warning(
                        "webhook %s for %s: attempt %d failed (%s); %s",
                        url_label(url),
                        row.key,
                        attempts,
                        error,
                        "giving up" if dead else f"retrying in {backoff.total_seconds():.0f}s",
                    )
                await conn.execute(d.update().where(where).values(**values))
        except Exception:
            log.exception("webhook delivery %s to %s failed to run", tid, url_label(url))

    async def _post(
        self, url: str, key: str, body: dict[str, Any]
    ) -> tuple[int | None, str | None]:
        raw = orjson.dumps(body)
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "callkpi-alerts/1",
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign(self.secret, ts, raw),
            IDEMPOTENCY_HEADER: key,
        }
        try:
            r = await self.client.post(url, content=raw, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= r.status_code < 300:
            return r.status_code, None
        return r.status_code, f"HTTP {r.status_code}: {r.text[:200]}"


def url_label(url: str) -> str:
    """A webhook as a metric label or in a log: no credentials, no query string."""
    parts = httpx.URL(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.host}{port}{parts.path}"

"""The Faust application: two agents and a timer.

Built by a factory and started from the worker's lifespan (services/kpi_stream/
worker.py), never at import time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any, ClassVar, TypeVar

import asyncpg
import faust
from prometheus_client import Counter, Gauge

from services.core.envelope import (
    BadRecord,
    Envelope,
    decode_envelope,
    decode_events_record,
    encode_item,
    pack,
)
from services.core.faults import reason
from services.core.settings import Settings
from services.kpi_stream.fcr_stage import SWEEP_CHUNK
from services.kpi_stream.processor import PreparedEvents, Processor
from services.kpi_stream.quarantine import is_permanent

log = logging.getLogger("callkpi.worker")

T = TypeVar("T")

BAD_RECORDS = Counter(
    "callkpi_worker_bad_records_total",
    "Records on the events topic that are no envelope and no valid event, set aside whole",
)

# Consumer-group timings. Faust's defaults (session 60 s, rebalance 60 s) make a
# restarted worker wait minutes for its partitions; with these a worker joined in
# ~5 s and was back ~18 s after a SIGKILL, on Tansu and on Kafka alike.
SESSION_TIMEOUT_S = 6.0
HEARTBEAT_S = 1.0
REBALANCE_TIMEOUT_S = 10.0

# A failed batch is retried after 0.5 s, then 1, 2, at most 4 s apart: quick enough
# that counting resumes within seconds of an outage ending (it once waited up to
# 30 s), and a retry every 4 s is nothing to a Postgres that is restarting.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 4.0

# Facts are ~250 bytes: a record of 2,000 is ~0.5 MB, and the FCR stage pays
# Faust's per-record cost once per 2,000 facts. Size still bounds it (pack).
FACTS_PER_RECORD = 2000

# On shutdown, how long the last batch may take to commit before it is abandoned
# (it is then replayed: its records were never acknowledged).
STOP_GRACE_S = 10.0

BATCH_RETRIES = Counter(
    "callkpi_worker_batch_retries_total",
    "Worker batch transactions that failed and were retried",
    ["stage"],
)
FAILING_TOTAL = Counter(
    "callkpi_worker_retry_wait_seconds_total",
    "Seconds the worker spent waiting to retry failed batches",
    ["stage"],
)
FAILING_NOW = Gauge(
    "callkpi_worker_failing_seconds",
    "Seconds the stage's current batch has been failing (0: not failing)",
    ["stage"],
)


class Failing:
    """Which stages are retrying a failed batch now, since when and why: the
    worker's /readyz answers 503 while one is (services/kpi_stream/worker.py)."""

    since: ClassVar[dict[str, float]] = {}  # stage -> monotonic time of its first failure
    why: ClassVar[dict[str, str]] = {}

    @classmethod
    def failed(cls, stage: str, exc: BaseException) -> bool:
        """Record a failure; True if it is the first of a run."""
        first = stage not in cls.since
        cls.since.setdefault(stage, time.monotonic())
        cls.why[stage] = reason(exc)
        return first

    @classmethod
    def recovered(cls, stage: str) -> None:
        if cls.since.pop(stage, None) is not None:
            log.info("%s batches commit again", stage)
        cls.why.pop(stage, None)
        FAILING_NOW.labels(stage).set(0)

    @classmethod
    def failing_for(cls, stage: str) -> float:
        since = cls.since.get(stage)
        return time.monotonic() - since if since is not None else 0.0


async def retrying(
    stage: str,
    attempt: Callable[[], Awaitable[T]],
    settle: Callable[[BaseException], Awaitable[T]],
) -> T:
    """Run `attempt` until it succeeds. A batch that fails for a reason that may
    pass (Postgres restarting, a dropped connection) is retried, never skipped: its
    records are not acknowledged, and skipping would lose them or stall offset
    commits behind them. One that fails for a reason no retry cures (the data) is
    handed to `settle`, which counts what it can and quarantines the rest
    (services/kpi_stream/quarantine.py); a transient error there is retried too."""
    delay = RETRY_FIRST_S
    settling = False
    while True:
        try:
            result = await attempt()
        except Exception as exc:
            if is_permanent(exc) and not settling:
                # settled once; should settling itself fail so, it is a bug: retry
                # it with backoff, loudly, rather than spin
                attempt, settling = partial(settle, exc), True
                continue
            BATCH_RETRIES.labels(stage).inc()
            if Failing.failed(stage, exc):
                log.exception("%s batch failed (%s); retrying every <= %.0f s",
                              stage, reason(exc), RETRY_MAX_S)  # fmt: skip
            else:
                log.warning("%s batch still failing after %.0f s: %s; retrying in %.1f s",
                            stage, Failing.failing_for(stage), reason(exc), delay)  # fmt: skip
            await asyncio.sleep(delay)
            FAILING_TOTAL.labels(stage).inc(delay)
            FAILING_NOW.labels(stage).set(Failing.failing_for(stage))
            delay = min(delay * 2, RETRY_MAX_S)
        else:
            Failing.recovered(stage)
            return result


def fact_records(
    by_partition: dict[int, list[dict[str, Any]]], max_request_bytes: int
) -> Iterator[tuple[int, bytes]]:
    """(partition, record) for the FCR topic: each partition's facts in envelopes
    of at most FACTS_PER_RECORD that fit a Kafka request (the worker's stage 1 and
    `callkpi reconcile` send them alike)."""
    now_us = time.time_ns() // 1000
    for part, facts in by_partition.items():
        encoded = [encode_item(f) for f in facts]
        for record in pack("facts", encoded, now_us, max_request_bytes, FACTS_PER_RECORD):
            yield part, record


def assigned(app: faust.App) -> set[Any]:
    """Topic-partitions currently assigned to this worker."""
    try:
        return set(app.consumer.assignment())
    except Exception:  # consumer not started yet
        return set()


def create_faust_app(settings: Settings, bootstrap: str) -> faust.App:
    # Faust makes its data directory even with in-memory tables, with a plain
    # mkdir (no parents); its default, "<id>-data" in the working directory,
    # littered checkouts.
    datadir = settings.data_dir / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.worker_group,
        broker=[f"kafka://{host}" for host in bootstrap.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=HEARTBEAT_S,
        broker_rebalance_timeout=REBALANCE_TIMEOUT_S,
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        producer_linger_ms=0,
        producer_max_request_size=settings.kafka_max_request_bytes,
    )


def wire(app: faust.App, settings: Settings, pool: asyncpg.Pool, worker_id: str) -> Processor:
    """Attach the agents and timers to `app` and return the processor they drive."""
    events_topic = app.topic(settings.events_topic, partitions=settings.partitions)
    fcr_topic = app.topic(settings.fcr_topic, partitions=settings.partitions)
    key = settings.hash_key.get_secret_value().encode("utf-8")
    lock = asyncio.Lock()  # the sweep and the FCR agent must not interleave in-process

    async def send_facts(by_partition: dict[int, list[dict[str, Any]]]) -> None:
        await asyncio.gather(
            *(
                app.producer.send_and_wait(
                    settings.fcr_topic, None, record, partition=part, timestamp=None, headers=None
                )
                for part, record in fact_records(by_partition, settings.kafka_max_request_bytes)
            )
        )

    processor = Processor(settings, pool, send_facts, worker_id)

    async def set_aside_record(part: int, offset: int, raw: bytes | None, why: str) -> None:
        store = partial(processor.set_aside_record, part, offset, raw, why)

        async def again(_exc: BaseException) -> None:
            await store()  # storing it fails only for reasons that pass: retried

        await retrying("events", store, again)

    async def decode(batch: Sequence[Any]) -> list[Envelope]:
        envelopes = []
        now_us = time.time_ns() // 1000
        for ev in batch:
            msg = ev.message
            try:
                envelopes.append(
                    decode_events_record(
                        msg.partition, ev.value, key, settings.door_rules, now_us, msg.offset
                    )
                )
            except BadRecord as exc:
                # Set aside whole (the good records around it still count).
                BAD_RECORDS.inc()
                await set_aside_record(msg.partition, msg.offset, ev.value, str(exc))
        return envelopes

    async def commit_then_ack(stream: Any, prepared: PreparedEvents | None, batch: Any) -> None:
        if prepared is not None:
            await retrying(
                "events",
                partial(processor.commit_events, prepared),
                lambda exc: processor.set_aside_events(prepared.envelopes, exc, prepared),
            )
        for ev in batch:
            await stream.ack(ev)

    async def settle_then_ack(stream: Any, envelopes: list[Envelope], failure: BaseException,
                              batch: Any) -> None:  # fmt: skip
        await retrying(
            "events",
            partial(processor.set_aside_events, envelopes, failure),
            lambda exc: processor.set_aside_events(envelopes, exc),
        )
        for ev in batch:
            await stream.ack(ev)

    async def prepare(envelopes: list[Envelope]) -> PreparedEvents | BaseException:
        """The batch computed ahead, or the permanent error computing it raised (it
        is then settled once the previous batch has committed)."""

        async def failed(exc: BaseException) -> BaseException:
            return exc

        return await retrying("events", partial(processor.prepare_events, envelopes), failed)

    # Records are acknowledged only once their batch has committed (take_events
    # would ack them even when the batch raised, losing it). Batch N+1 is computed
    # while batch N is written: the worker spends about as long waiting on
    # Postgres as computing.
    @app.agent(events_topic, name="assemble_calls")
    async def assemble_calls(stream: Any) -> None:
        writing: asyncio.Task[None] | None = None
        try:
            async for batch in stream.noack_take(
                settings.worker_take_max, within=settings.worker_take_within_seconds
            ):
                envelopes = await decode(batch)
                prepared = await prepare(envelopes) if envelopes else None
                if writing is not None:
                    await writing
                if isinstance(prepared, BaseException):
                    step = settle_then_ack(stream, envelopes, prepared, batch)
                else:
                    step = commit_then_ack(stream, prepared, batch)
                writing = asyncio.create_task(step)
        finally:
            if writing is not None and not writing.done():
                # Let the last batch commit; if it cannot, its records stay
                # unacknowledged and are replayed by whoever reads them next.
                done, _ = await asyncio.wait([writing], timeout=STOP_GRACE_S)
                if not done:
                    writing.cancel()

    async def store_facts(envelopes: list[Envelope]) -> None:
        async with lock:
            await processor.process_facts(envelopes)

    async def settle_facts(envelopes: list[Envelope], exc: BaseException) -> None:
        async with lock:
            await processor.set_aside_facts(envelopes, exc)

    @app.agent(fcr_topic, name="track_fcr")
    async def track_fcr(stream: Any) -> None:
        async for batch in stream.noack_take(
            settings.worker_take_max, within=settings.worker_take_within_seconds
        ):
            envelopes: list[Envelope] = [
                decode_envelope(ev.message.partition, ev.value, "facts", ev.message.offset)
                for ev in batch
            ]
            if envelopes:
                await retrying(
                    "facts", partial(store_facts, envelopes), partial(settle_facts, envelopes)
                )
            for ev in batch:
                await stream.ack(ev)

    async def sweep_fcr() -> None:
        parts = [tp.partition for tp in assigned(app) if tp.topic == settings.fcr_topic]
        try:
            while True:
                async with lock:
                    done = await processor.sweep(parts)
                if done < SWEEP_CHUNK:
                    break
                await asyncio.sleep(0)  # let the agents run between chunks
        except Exception:
            # A failed sweep is retried at the next tick; letting it escape would
            # crash the whole Faust app.
            log.exception("FCR sweep failed; retrying next tick")

    async def retention() -> None:
        try:
            await processor.enforce_retention()
        except Exception:
            log.exception("retention clean-up failed; retrying in an hour")

    app.timer(settings.fcr_sweep_seconds)(sweep_fcr)
    app.timer(3600.0)(retention)

    def forget(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        processor.forget()

    app.on_partitions_revoked.connect(forget)
    app.on_partitions_assigned.connect(forget)

    return processor

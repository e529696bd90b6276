"""The alerting loops of a `callkpi api` process: evaluate, publish, deliver.

Started and stopped by the API's lifespan. Evaluation runs every
`alerts.evaluate_every` and as soon as a worker commits new figures (it sends a
Postgres NOTIFY on `callkpi_figures`), at most once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerting.evaluator import Evaluator
from services.alerting.sinks import PUBLISH_BATCH, Publisher, WebhookDeliverer
from services.core.faults import is_unreachable, reason
from services.core.settings import Settings
from services.readmodel.notifications import FiguresListener

log = logging.getLogger("callkpi.alerts")

# A busy worker commits several batches a second; evaluating after each would
# re-read the same windows for nothing. Once a second is within the one-minute
# promise with room to spare.
MIN_GAP_S = 1.0
# The outbox is also polled, in case a wake-up was missed (another process
# evaluated, or the broker was down).
PUBLISH_POLL_S = 5.0
DELIVERY_POLL_S = 1.0
# A sink that failed is tried again 0.5 s later, then 1, 2, at most 4 s apart:
# alerts go out within seconds of Postgres or the broker coming back.
SINK_BACKOFF_MAX_S = 4.0

EVALUATIONS = Counter("callkpi_alert_evaluations", "Alert evaluations by this process", ["outcome"])
SINK_ERRORS = Counter(
    "callkpi_alert_sink_errors", "Failed attempts to drain the alert outbox", ["sink"]
)


class AlertService:
    def __init__(self, settings: Settings, engine: AsyncEngine, bootstrap: str | None) -> None:
        self.settings = settings
        self.engine = engine
        self.evaluator = Evaluator(settings, engine)
        # Without a broker (a read-only API run on its own) alerts are still
        # evaluated, stored and sent to webhooks; the topic's outbox waits, and
        # callkpi_alert_transitions_unpublished says so.
        self.publisher = Publisher(settings, engine, bootstrap) if bootstrap else None
        self.deliverer = WebhookDeliverer(settings, engine)
        self._figures = FiguresListener(settings, "alert evaluation")
        self._wake = {"kafka": asyncio.Event(), "webhook": asyncio.Event()}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self.publisher is not None:
            from services.core.kafka import ensure_topics

            await ensure_topics(self.settings, self.publisher.bootstrap)
            await self.publisher.start()
            self._tasks.append(asyncio.create_task(self._publish_loop(), name="alerts-publish"))
        else:
            log.warning(
                "kafka_bootstrap not set: alerts are evaluated and stored, not published to %s",
                self.settings.alerts_topic,
            )
        if self.settings.alerts.evaluate and self.settings.alerts.rules:
            self._tasks.append(asyncio.create_task(self._evaluate_loop(), name="alerts-evaluate"))
        if any(rule.webhooks for rule in self.settings.alerts.rules):
            self._tasks.append(asyncio.create_task(self._deliver_loop(), name="alerts-webhooks"))
        log.info(
            "alerting: %d rule(s), evaluating %s, publishing to %s",
            len(self.settings.alerts.rules),
            "here" if self.settings.alerts.evaluate else "elsewhere",
            self.settings.alerts_topic,
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.deliverer.stop()
        if self.publisher is not None:
            await self.publisher.stop()
        await self._figures.close()

    async def _evaluate_loop(self) -> None:
        loop = asyncio.get_running_loop()
        every = self.settings.alerts.evaluate_every.total_seconds()
        while True:
            started = loop.time()
            # cleared before reading, so figures committed while we evaluate
            # trigger the next evaluation instead of being missed
            self._figures.changed.clear()
            await self._figures.listen()
            try:
                done = await self.evaluator.evaluate()
            except Exception as exc:
                EVALUATIONS.labels("error").inc()
                if is_unreachable(exc):  # said once per try, without a traceback
                    log.warning("alert evaluation: %s; trying again in %.0fs",
                                reason(exc, default="postgres"), every)  # fmt: skip
                else:
                    log.exception("alert evaluation failed; trying again in %.0fs", every)
            else:
                EVALUATIONS.labels("done" if done is not None else "skipped_locked").inc()
                if done is not None and done.transitions:
                    for event in self._wake.values():
                        event.set()
            await self._figures.wait(every - (loop.time() - started))
            await asyncio.sleep(max(0.0, MIN_GAP_S - (loop.time() - started)))

    async def _publish_loop(self) -> None:
        publisher = self.publisher
        assert publisher is not None

        async def step() -> bool:
            # a full batch: more may be waiting behind it
            return await publisher.publish_pending() == PUBLISH_BATCH

        await self._drain("kafka", step, PUBLISH_POLL_S)

    async def _deliver_loop(self) -> None:
        async def step() -> bool:
            await self.deliverer.start_due()
            return False  # started deliveries run on their own tasks

        await self._drain("webhook", step, DELIVERY_POLL_S)

    async def _drain(self, sink: str, step: Callable[[], Awaitable[bool]], poll_s: float) -> None:
        """Run `step` whenever woken or every `poll_s`, at once again while it says
        more is waiting, backing off while it fails."""
        wake = self._wake[sink]
        backoff = 0.5
        while True:
            wake.clear()
            try:
                more = await step()
            except Exception as exc:
                SINK_ERRORS.labels(sink).inc()
                log.warning("alert %s sink: %s; retrying in %.1fs", sink, reason(exc), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, SINK_BACKOFF_MAX_S)
                continue
            backoff = 0.5
            if not more:
                await _wait(wake, poll_s)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()

"""What the API knows of the pipeline behind its figures: is the broker there, how
far behind are the workers, is a partition stalled. Read from the broker by this
process (services/core/progress.py), so it is true even when every worker is
dead. Served in /readyz, /metrics, every figures response (`pipeline`) and the
wallboard feed."""

from __future__ import annotations

from typing import Any

from prometheus_client.core import GaugeMetricFamily

from services.core.progress import PipelineMonitor
from services.core.settings import Settings

# Figures this far behind, or older, are flagged `behind` (the wallboard shows a
# banner): a healthy pipeline commits within a second or two of ingest (the
# bench's freshness p99 is under 2 s), so 10 s is a real delay, not noise.
BEHIND_FLAG_S = 10.0


class PipelineStatus:
    """Owns the API's pipeline monitor (started from the lifespan)."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.monitor = PipelineMonitor(settings, bootstrap)

    def start(self) -> None:
        self.monitor.start()

    async def stop(self) -> None:
        await self.monitor.stop()

    def summary(self) -> dict[str, Any]:
        """`pipeline` in responses: how far the figures are behind what was ingested."""
        m = self.monitor
        stalled = m.stalled(self.settings.worker_stall_seconds)
        behind = round(m.behind_s(), 1)
        out: dict[str, Any] = {
            "behind_seconds": behind,
            "backlog": sum(p.backlog for p in m.partitions),
            "behind": behind >= BEHIND_FLAG_S or bool(stalled) or m.error is not None,
            "stalled": [
                {
                    "stage": p.stage,
                    "partition": p.partition,
                    "backlog": p.backlog,
                    "seconds": round(p.still_s, 1),
                }
                for p in stalled
            ],
        }
        if m.error is not None:
            out["broker"] = m.error
        return out

    def families(self) -> list[GaugeMetricFamily]:
        """Per stage and partition: backlog, age of the oldest waiting record,
        seconds without committed progress; and the overall lag."""
        backlog = GaugeMetricFamily(
            "callkpi_pipeline_backlog_records",
            "Records on the broker that the workers have not committed yet",
            labels=["stage", "partition"],
        )
        age = GaugeMetricFamily(
            "callkpi_pipeline_behind_seconds",
            "How long the oldest record not yet committed has waited (0: none waits)",
            labels=["stage", "partition"],
        )
        still = GaugeMetricFamily(
            "callkpi_pipeline_stalled_seconds",
            "Seconds the committed offset has not moved while records wait (0: none wait)",
            labels=["stage", "partition"],
        )
        for p in self.monitor.partitions:
            labels = [p.stage, str(p.partition)]
            backlog.add_metric(labels, float(p.backlog))
            age.add_metric(labels, p.behind_s)
            still.add_metric(labels, p.still_s)
        lag = GaugeMetricFamily(
            "callkpi_processing_lag_seconds",
            "How long the oldest ingested record not yet in the figures has waited, over "
            "all partitions and both stages (0: the figures hold everything ingested)",
        )
        lag.add_metric([], self.monitor.behind_s())
        return [backlog, age, still, lag]

"""The agent figures the listening sample and the deviation alerts judge, each
as a sum over a volume and the direction that is abnormal (docs/metrics.md,
"Abnormal figures"). Pure data and pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from services.core.deviation import Direction, Sample
from services.core.kpi import metrics_for, zero_counters


@dataclass(frozen=True, slots=True)
class Figure:
    """An agent figure of the catalogue as a sum over a volume, and which way
    is abnormal. The figure is the catalogue's own (`core.kpi.metrics_for`, one
    definition and one code path); `count` names a catalogue count instead, for
    the rates the catalogue keeps as counts only (RONA, transfers)."""

    name: str
    volume: str  # the catalogue's count the figure is a rate or mean over
    direction: Direction
    count: str | None = None


# The agent figures the seeds' scorecards weigh (docs/metrics.md, "Agent
# figures"): shorter talk is the rushed-call sign; more hold, wrap-up,
# ring-no-answer, transfers or complaints, and fewer sales, satisfied callers
# or first-call resolutions, are the others. Rates whose volume is small in a
# month (surveys, FCR's final calls) are often not assessed: the minimum volumes
# apply to them as to calls.
FIGURES: tuple[Figure, ...] = (
    Figure("avg_talk_seconds", "handled", Direction.DOWN),
    Figure("aht_seconds", "handled", Direction.BOTH),
    Figure("avg_hold_seconds", "handled", Direction.UP),
    Figure("avg_acw_seconds", "handled", Direction.UP),
    Figure("rona_rate", "presented", Direction.UP, count="rona"),
    Figure("transfer_rate", "handled", Direction.UP, count="transfers"),
    Figure("conversion_rate", "answered", Direction.DOWN),
    Figure("complaint_rate", "answered", Direction.UP),
    Figure("csat", "surveys", Direction.DOWN),
    Figure("fcr_rate", "fcr_final", Direction.DOWN),
)


def agent_metrics(counters: Mapping[str, int] | None) -> dict[str, Any]:
    """The catalogue's agent figures over `counters` (missing counters are 0)."""
    return metrics_for("agent", {**zero_counters(), **(counters or {})})


def sample_of(figure: Figure, metrics: Mapping[str, Any], day: date) -> Sample:
    """The figure as Σ total over Σ volume: the catalogue's mean or rate times
    its volume (so samples of several days sum before dividing), or its count."""
    volume = int(metrics[figure.volume] or 0)
    if figure.count is not None:
        return Sample(day, float(metrics[figure.count] or 0), volume)
    value = metrics[figure.name]
    return Sample(day, float(value) * volume if value is not None else 0.0, volume)


def sample(figure: Figure, counters: Mapping[str, int] | None, day: date) -> Sample:
    return sample_of(figure, agent_metrics(counters), day)


# A deviation alert watches a figure's change from the agent's baseline: the
# field `<figure>_change` (services/core/alert_rules.py)
CHANGE_SUFFIX = "_change"
CHANGE_FIELDS: dict[str, Figure] = {f.name + CHANGE_SUFFIX: f for f in FIGURES}

"""The agent figures the listening sample and the deviation alerts judge, each
as a sum over a volume and the direction that is abnormal (docs/metrics.md,
"Abnormal figures"). Pure data and one pure function."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from services.core.deviation import Direction, Sample


@dataclass(frozen=True, slots=True)
class Figure:
    """A figure as a sum over a volume, and which way is abnormal."""

    name: str
    total: tuple[str, ...]  # counters summed into the figure's numerator
    volume: str
    direction: Direction
    scale: float = 1.0  # numerator unit → the figure's (µs → seconds)
    less: tuple[str, ...] = ()  # counters taken off the numerator


US = 1e-6
# The agent figures the seeds' scorecards weigh, as the catalogue defines them
# (docs/metrics.md, "Agent figures"): shorter talk is the rushed-call sign; more
# hold, wrap-up, ring-no-answer, transfers or complaints, and fewer sales,
# satisfied callers or first-call resolutions, are the others. Rates whose volume
# is small in a month (surveys, FCR's final calls) are often not assessed: the
# minimum volumes apply to them as to calls.
FIGURES: tuple[Figure, ...] = (
    Figure("avg_talk_seconds", ("talk_us",), "handled", Direction.DOWN, US),
    Figure("aht_seconds", ("talk_us", "hold_us", "acw_us"), "handled", Direction.BOTH, US),
    Figure("avg_hold_seconds", ("hold_us",), "handled", Direction.UP, US),
    Figure("avg_acw_seconds", ("acw_us",), "handled", Direction.UP, US),
    Figure("rona_rate", ("presented",), "presented", Direction.UP, less=("answered",)),
    Figure("transfer_rate", ("transfers",), "handled", Direction.UP),
    Figure("conversion_rate", ("sales",), "answered", Direction.DOWN),
    Figure("complaint_rate", ("complaints",), "answered", Direction.UP),
    Figure("csat", ("satisfied",), "surveys", Direction.DOWN),
    Figure("fcr_rate", ("fcr_resolved",), "fcr_final", Direction.DOWN),
)


def sample(figure: Figure, counters: Mapping[str, int] | None, day: date) -> Sample:
    c = counters or {}
    total = sum(c.get(n, 0) for n in figure.total) - sum(c.get(n, 0) for n in figure.less)
    return Sample(day, total * figure.scale, c.get(figure.volume, 0))


# A deviation alert watches a figure's change from the agent's baseline: the
# field `<figure>_change` (services/core/alert_rules.py)
CHANGE_SUFFIX = "_change"
CHANGE_FIELDS: dict[str, Figure] = {f.name + CHANGE_SUFFIX: f for f in FIGURES}

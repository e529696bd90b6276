"""Abnormal figures: an agent's figure against the agent's own baseline and
against the team's distribution for the same period. Pure functions.

A quality team listens to the agents whose data look abnormal (docs/qa.md). A
figure is abnormal here only when it is both far from the agent's own history
(talk time 20% shorter than the agent's usual, say) and unusual within the team
in the same period (a robust score: the team's median and median absolute
deviation, so one extreme colleague does not move the yardstick), and only with
enough calls on both sides, so a quiet day or a new agent is never flagged.
Either comparison alone misleads: a whole team's talk time falls on a day of
easy calls (own history says abnormal, the team says normal), and a slow agent
is always slower than the team (the team says abnormal, own history says
normal). Definitions: docs/metrics.md, "Abnormal figures".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from statistics import median

# Iglewicz and Hoaglin's modified z-score: 0.6745 × (x − median) / MAD, where
# 0.6745 is the 0.75 quantile of the standard normal, so the score reads as a
# z-score for normal data; they suggest |score| > 3.5 as an outlier.
MAD_SCALE = 0.6745
# When more than half the team has the same value (MAD = 0), the mean absolute
# deviation stands in, scaled so it too estimates a standard deviation
# (sqrt(pi / 2)): the same authors' fallback.
MEAN_AD_SCALE = 1.253314


class Direction(StrEnum):
    DOWN = "down"  # shorter talk time, fewer conversions: only a fall is abnormal
    UP = "up"  # more hold, more RONA, more short calls: only a rise is abnormal
    BOTH = "both"


@dataclass(frozen=True, slots=True)
class Sample:
    """One period of one agent's figure as its sums: `total` over `volume` (talk
    seconds over calls answered, conversions over calls). The figure is
    total / volume; summing samples before dividing weighs each call alike."""

    day: date
    total: float
    volume: int


@dataclass(frozen=True, slots=True)
class Rule:
    """When a figure counts as abnormal (the thresholds are settings)."""

    direction: Direction = Direction.BOTH
    min_change: float = 0.2  # |current / baseline − 1| at least this
    min_score: float = 3.5  # |robust score within the team| at least this
    min_volume: int = 20  # the agent's calls in the period
    min_baseline_volume: int = 60  # the agent's calls in the baseline's days
    min_team: int = 3  # agents of the team with min_volume, the agent included


@dataclass(frozen=True, slots=True)
class Assessment:
    current: float | None  # the agent's figure in the period
    baseline: float | None  # the agent's own, over the baseline's days
    change: float | None  # current / baseline − 1
    team_median: float | None
    score: float | None  # the robust score within the team
    abnormal: bool
    # why it is not assessed when it is not: too few calls, no history, a team
    # too small to compare with (None when both comparisons were made)
    not_assessed: str | None


def ratio(total: float, volume: int) -> float | None:
    return total / volume if volume > 0 else None


def baseline(history: Iterable[Sample], holidays: frozenset[date] = frozenset()) -> Sample | None:
    """The agent's own figure over its history (the trailing weeks' same hours,
    chosen by the caller), holidays left out: their calls are not the usual
    ones. None without any volume. Its `day` is the latest day it covers."""
    kept = [s for s in history if s.day not in holidays and s.volume > 0]
    if not kept:
        return None
    return Sample(max(s.day for s in kept), sum(s.total for s in kept),
                  sum(s.volume for s in kept))  # fmt: skip


def robust_score(value: float, team: Sequence[float]) -> float | None:
    """How unusual `value` is among `team` (which includes it): the modified
    z-score over the median and the median absolute deviation; over the mean
    absolute deviation when the MAD is 0; 0.0 when every value is the same
    (nothing is unusual). None for an empty team."""
    if not team:
        return None
    mid = median(team)
    deviations = [abs(v - mid) for v in team]
    mad = median(deviations)
    if mad > 0:
        return MAD_SCALE * (value - mid) / mad
    mean_ad = sum(deviations) / len(deviations)
    if mean_ad > 0:
        return (value - mid) / (MEAN_AD_SCALE * mean_ad)
    return 0.0


def _beyond(x: float, threshold: float, direction: Direction) -> bool:
    if direction is Direction.DOWN:
        return x <= -threshold
    if direction is Direction.UP:
        return x >= threshold
    return abs(x) >= threshold


def assess(
    current: Sample,
    history: Iterable[Sample],
    team: Sequence[Sample],
    rule: Rule,
    holidays: frozenset[date] = frozenset(),
) -> Assessment:
    """The agent's `current` period against its own `history` and against
    `team`: the same period's samples of every agent of the team, this one
    included. Abnormal only when both comparisons pass their thresholds in the
    rule's direction, with the minimum volumes met."""
    now = ratio(current.total, current.volume)
    base = baseline(history, holidays)
    base_value = ratio(base.total, base.volume) if base is not None else None
    peers = [v for s in team if s.volume >= rule.min_volume
             and (v := ratio(s.total, s.volume)) is not None]  # fmt: skip
    team_median = median(peers) if peers else None
    change = now / base_value - 1 if now is not None and base_value else None
    reason: str | None = None
    if current.volume < rule.min_volume:
        reason = f"{current.volume} calls in the period, fewer than {rule.min_volume}"
    elif base is None or base.volume < rule.min_baseline_volume:
        got = 0 if base is None else base.volume
        reason = f"{got} calls in the baseline, fewer than {rule.min_baseline_volume}"
    elif len(peers) < rule.min_team:
        reason = (f"{len(peers)} agents of the team with {rule.min_volume} calls, "
                  f"fewer than {rule.min_team}")  # fmt: skip
    score = robust_score(now, peers) if now is not None and reason is None else None
    abnormal = (
        reason is None
        and change is not None
        and score is not None
        and _beyond(change, rule.min_change, rule.direction)
        and _beyond(score, rule.min_score, rule.direction)
    )
    return Assessment(now, base_value, change, team_median, score, abnormal, reason)


def change_value(found: Assessment, rule: Rule) -> float | None:
    """What a deviation alert observes: the change from the agent's baseline
    (−0.4: 40% below) when the agent is also unusual in its team (its robust
    score beyond `min_score` in the rule's direction); 0.0 when it is not (a
    change the whole team shares is no deviation of this agent's); None when it
    was not assessed (too few calls, no baseline, a team too small)."""
    if found.not_assessed is not None or found.change is None or found.score is None:
        return None
    return found.change if _beyond(found.score, rule.min_score, rule.direction) else 0.0

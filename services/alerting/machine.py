"""The alert state machine, as a pure function.

Per rule and entity: ok → pending → firing → resolved, or pending → cancelled
when the condition goes away before `for` has passed. Nothing here reads a clock
or a database: the evaluator passes in what it observed and when, so the rules of
when an alert fires and clears can be tested exhaustively.

When the guards apply (docs/alerting.md):
- an alert opens (pending) only on a breach backed by at least `min_calls` calls
  in the window and a threshold in force (`closed` has none);
- it fires once the breach has held for `for`; any evaluation in between that is
  not a breach (recovered, too few calls, closed) cancels it;
- a firing alert resolves only when the figure is back past the threshold by
  `clear_margin` (hysteresis), when no threshold is in force any more (the
  schedule turned `closed`), or when the window holds no call at all (nothing to
  judge; otherwise an alert raised at 17:55 would stay firing all night).
  Fewer than `min_calls` calls keep it firing: thin evidence does not clear it,
  which also stops a rule flapping around the volume guard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.core.alert_rules import AlertRule, ScheduleClass

AlertState = Literal["pending", "firing", "resolved", "cancelled"]
OpenState = Literal["pending", "firing"]


@dataclass(frozen=True)
class Observation:
    """One rule's figure for one entity at one evaluation."""

    at: datetime
    schedule_class: ScheduleClass
    threshold: float | None  # in force at `at`; None = the rule does not alert now
    value: float | None  # None: the figure is undefined (no calls in the window)
    calls: int  # calls in the window (the answer-rate base)


@dataclass(frozen=True)
class Open:
    state: OpenState
    pending_since: datetime


@dataclass(frozen=True)
class Step:
    to: AlertState
    reason: str


def _describe(rule: AlertRule, obs: Observation) -> str:
    return (
        f"{rule.field} {obs.value:.4f} {rule.direction} {obs.threshold} "
        f"({obs.schedule_class}) over {obs.calls} calls"
    )


def breach(rule: AlertRule, obs: Observation) -> bool:
    """The condition that opens and keeps a pending alert."""
    return (
        obs.threshold is not None
        and obs.value is not None
        and obs.calls >= rule.min_calls
        and rule.breached(obs.value, obs.threshold)
    )


def _why_not(rule: AlertRule, obs: Observation) -> str:
    if obs.threshold is None:
        return f"no threshold in force ({obs.schedule_class})"
    if obs.value is None or obs.calls < rule.min_calls:
        return f"{obs.calls} calls in the window, fewer than min_calls {rule.min_calls}"
    return f"{rule.field} back to {obs.value:.4f} (threshold {obs.threshold})"


def steps(rule: AlertRule, current: Open | None, obs: Observation) -> list[Step]:
    """The transitions one evaluation makes (none, one, or pending and firing at
    once when `for` is 0)."""
    out: list[Step] = []
    if current is None:
        if not breach(rule, obs):
            return out
        out.append(Step("pending", _describe(rule, obs)))
        current = Open("pending", obs.at)
    if current.state == "pending":
        if not breach(rule, obs):
            out.append(Step("cancelled", _why_not(rule, obs)))
        elif obs.at - current.pending_since >= rule.hold:
            out.append(Step("firing", _describe(rule, obs)))
        return out
    # firing
    if obs.threshold is None:
        out.append(Step("resolved", f"no threshold in force ({obs.schedule_class})"))
    elif obs.value is None:
        out.append(Step("resolved", "no calls in the window"))
    elif rule.cleared(obs.value, obs.threshold):
        margin = rule.clear_margin if rule.direction == "below" else -rule.clear_margin
        out.append(
            Step(
                "resolved",
                f"{rule.field} back to {obs.value:.4f}, past threshold {obs.threshold} "
                f"{'+' if margin >= 0 else '-'} margin {abs(margin)}",
            )
        )
    return out

"""What staffing reads from the configuration (`staffing:`): the service-level
goals the required agents are computed for, the queueing model, the schedule's
activities and how an agent's states adhere to each, and the attendance rules.
docs/staffing.md explains each; the arithmetic is in services/core/staffing.py
and services/core/erlang.py."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.core.kpi import AGENT_STATES

ACTIVITY_NAME = r"^[a-z][a-z0-9_]*$"
PRODUCTIVE_STATES = ("available", "on_call", "wrap_up")
# A schedule row with this activity says the agent is not scheduled that day: it
# replaces an earlier upload's shift (docs/staffing.md#schedules).
DAY_OFF = "off"


class Goal(BaseModel):
    """A service-level goal: `target` of the calls answered within `seconds`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: float = Field(0.8, gt=0, lt=1)
    seconds: int = Field(20, ge=0, le=3600)


class Activity(BaseModel):
    """A scheduled activity: the agent states that adhere to it, and whether it
    is time on the phones (counted in scheduled agents against required ones)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    states: tuple[str, ...] = Field(min_length=1)
    # not-ready reasons that adhere (empty: any); e.g. a lunch break adheres only
    # when the agent's pause says "lunch"
    reasons: tuple[str, ...] = ()
    productive: bool = False

    @field_validator("states")
    @classmethod
    def _known_states(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for i, state in enumerate(value):
            if state not in AGENT_STATES:
                raise ValueError(
                    f"[{i}] {state!r} is not an agent state; one of {', '.join(AGENT_STATES)}"
                )
        return value


def _default_activities() -> dict[str, Activity]:
    on_phones = Activity(states=PRODUCTIVE_STATES, productive=True)
    away = Activity(states=("not_ready",))
    return {
        "work": on_phones,
        "break": away,
        "lunch": away,
        "meeting": away,
        "training": away,
        "coaching": away,
        "offline": away,  # off the phones but working: email, back office
    }


class StaffingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The goal required agents are computed for, and per team or queue where it
    # differs (a team's goal also applies to its queues unless they have their own).
    goal: Goal = Goal()
    team_goals: dict[str, Goal] = Field(default_factory=dict)
    queue_goals: dict[str, Goal] = Field(default_factory=dict)
    # erlang_a: callers abandon after a patience estimated from the measured
    # abandons (Erlang C where none were measured); erlang_c: nobody abandons,
    # which overstates the agents needed wherever callers hang up.
    model: Literal["erlang_a", "erlang_c"] = "erlang_a"
    # Required agents also keep the predicted occupancy at or under this (None:
    # the goal alone decides); WFM tools commonly cap it near 0.85-0.90.
    max_occupancy: float | None = Field(None, gt=0, le=1)
    # The days of history before a range's end that patience and a missing AHT are
    # estimated from: long enough for hundreds of abandons in a small queue.
    history_days: int = Field(28, ge=1, le=400)
    activities: dict[str, Activity] = Field(default_factory=_default_activities)
    # Attendance: a shift counts as attended when the agent logs in between
    # `early_login_minutes` before its start and its end; later than
    # `grace_minutes` after the start is late.
    grace_minutes: int = Field(5, ge=0, le=240)
    early_login_minutes: int = Field(120, ge=0, le=24 * 60)
    # Forecast: the same weekday and interval of the last `forecast_weeks` weeks,
    # weighted newest first by `forecast_weights` (normalised over the weeks with
    # data); docs/staffing.md#forecast.
    forecast_weeks: int = Field(4, ge=1, le=52)
    forecast_weights: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)

    @field_validator("activities")
    @classmethod
    def _activity_names(cls, value: dict[str, Activity]) -> dict[str, Activity]:
        import re

        for name in value:
            if not re.fullmatch(ACTIVITY_NAME, name) or name == DAY_OFF:
                raise ValueError(
                    f"{name!r}: an activity name is lower case letters, digits and _ "
                    f"('{DAY_OFF}' is reserved for a day off)"
                )
        if not any(a.productive for a in value.values()):
            raise ValueError("no activity is productive: scheduled agents would always be 0")
        return value

    @model_validator(mode="after")
    def _weights(self) -> StaffingSettings:
        w = self.forecast_weights
        if len(w) < self.forecast_weeks:
            raise ValueError(
                f"forecast_weights: {len(w)} weight(s) for forecast_weeks={self.forecast_weeks}"
            )
        if any(x < 0 for x in w) or not any(x > 0 for x in w[: self.forecast_weeks]):
            raise ValueError("forecast_weights: none negative, and at least one above 0")
        return self

    def goal_for(self, kind: str, entity_id: str, team: str | None = None) -> Goal:
        """A queue's own goal, else its team's (`team`: the queue's), else the default."""
        if kind == "queue" and entity_id in self.queue_goals:
            return self.queue_goals[entity_id]
        if kind == "team":
            team = entity_id
        if kind in ("queue", "team") and team is not None and team in self.team_goals:
            return self.team_goals[team]
        return self.goal

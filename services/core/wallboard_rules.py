"""What the wallboard judges agents and queues by, as written in the config
file's `wallboard` block (docs/wallboard.md#time-in-state): how long an agent
may stay in a state, or in not-ready for a reason, before the leaderboard shows
it in red, and how many waiting calls a tile lists."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.core.alert_rules import Duration
from services.core.kpi import AGENT_STATES


class WallboardSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Time in a state past which an agent is shown over its limit. The defaults
    # follow what supervisors watch for: a call past 15 minutes (a customer
    # stuck or a forgotten line), wrap-up past 2 (the agent is not taking
    # calls), not ready past 15 (a break run long). Available is not limited:
    # waiting for a call is the agent's job.
    state_limits: dict[str, Duration] = Field(
        default_factory=lambda: {
            "on_call": timedelta(minutes=15),
            "wrap_up": timedelta(minutes=2),
            "not_ready": timedelta(minutes=15),
        }
    )
    # Not ready for a reason, e.g. {lunch: 60m, break: 15m}: replaces the
    # not_ready limit for that reason (reasons as the PBX or CTI names them).
    reason_limits: dict[str, Duration] = Field(default_factory=dict)
    # Waiting calls a team or queue tile lists, oldest first (0: none).
    oldest_waiting: int = Field(5, ge=0, le=50)

    @field_validator("state_limits")
    @classmethod
    def _states(cls, value: dict[str, timedelta]) -> dict[str, timedelta]:
        bad = sorted(set(value) - set(AGENT_STATES))
        if bad:
            raise ValueError(f"unknown state(s) {bad}: use {', '.join(AGENT_STATES)}")
        return value

    def seconds(self) -> dict[str, dict[str, float]]:
        """The limits as the page reads them."""
        return {
            "states": {k: v.total_seconds() for k, v in self.state_limits.items()},
            "reasons": {k: v.total_seconds() for k, v in self.reason_limits.items()},
        }

"""Settings of the listening sample's abnormal figures (docs/qa.md): the
thresholds of services/core/deviation.py and how far back the baseline looks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.core.deviation import Direction, Rule


class QaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # the same weekday and hours of this many weeks before make an agent's baseline
    baseline_weeks: int = Field(4, ge=1, le=26)
    # abnormal: at least this far from the agent's own baseline (0.2: 20%, the
    # seeds' "talk time 20% shorter" sign) ...
    min_change: float = Field(0.2, gt=0, le=10)
    # ... and at least this robust score within the team (3.5: Iglewicz and
    # Hoaglin's outlier line for the modified z-score)
    min_score: float = Field(3.5, gt=0, le=100)
    # fewer calls than these and the figure is not assessed (a quiet hour, a new
    # agent), nor compared with (a colleague with a handful of calls)
    min_volume: int = Field(20, ge=1)
    min_baseline_volume: int = Field(60, ge=1)
    # agents with min_volume in the team, the agent included: fewer, no comparison
    min_team: int = Field(3, ge=2)
    # the listening sample covers at least this share of a team's agents in a
    # period (one of the seeds' centers listens to 30% of its staff a month)
    coverage: float = Field(0.3, ge=0, le=1)
    # calls listed per sampled agent: the ones that show its reasons, then drawn
    calls_per_agent: int = Field(10, ge=1, le=1000)
    # a call answered and over in less than this is `short` (a known way to game
    # the answered count: pick up, hang up) ...
    short_call_seconds: float = Field(10.0, gt=0, le=600)
    # ... and an agent is abnormal on short calls with at least this many in the
    # period and this share of its answered calls (a fixed line, not a
    # deviation: a few short calls happen to anyone, a tenth does not)
    short_calls_min: int = Field(5, ge=1)
    short_call_share: float = Field(0.1, gt=0, le=1)

    def rule(self, direction: Direction) -> Rule:
        return Rule(direction, self.min_change, self.min_score, self.min_volume,
                    self.min_baseline_volume, self.min_team)  # fmt: skip

"""What payroll reads from the configuration: the pay-period calendar and the
scorecard file's schema and loader, beside the alert rules (core/alert_rules.py)
so that `Settings` depends on nothing above core. The arithmetic over them (period
bounds, scores, commission) stays in services/payroll/. docs/payroll.md."""

from __future__ import annotations

import itertools
import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.core.configfile import digest, error_lines, read_yaml, repeated

Calendar = Literal["monthly", "semi_monthly", "weekly", "explicit"]


class ExplicitRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")
    first: date = Field(alias="from")  # first day, included
    last: date = Field(alias="to")  # last day, included

    @model_validator(mode="after")
    def _ordered(self) -> ExplicitRange:
        if self.last < self.first:
            raise ValueError(f"{self.id}: to {self.last} is before from {self.first}")
        return self


class PeriodSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    calendar: Calendar = "monthly"
    ranges: list[ExplicitRange] = Field(default_factory=list)  # calendar: explicit
    # Hours after the FCR windows of a period's last calls end before it may be
    # closed without force: late events (a wrap-up, a survey) still trickle in.
    close_grace_hours: int = Field(6, ge=0, le=24 * 31)

    @model_validator(mode="after")
    def _ranges(self) -> PeriodSettings:
        if self.calendar == "explicit" and not self.ranges:
            raise ValueError("ranges: the explicit calendar needs at least one range")
        if self.calendar != "explicit" and self.ranges:
            raise ValueError("ranges: only for calendar: explicit")
        ordered = sorted(self.ranges, key=lambda r: r.first)
        for a, b in itertools.pairwise(ordered):
            if b.first <= a.last:
                raise ValueError(f"ranges: {a.id} and {b.id} overlap")
        if len({r.id for r in self.ranges}) != len(self.ranges):
            raise ValueError("ranges: ids must be unique")
        return self


# Manual items (figures the telephony cannot know: exam scores, absences, complaint
# escalations by level) are referred to as `manual.<name>` and uploaded per period.
MANUAL_PREFIX = "manual."
CENT = Decimal("0.01")
ITEM_NAME = r"^[a-z][a-z0-9_]*$"


class ScorecardError(ValueError):
    """A scorecard file that cannot be used, with the file and key named."""


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ITEM_NAME, max_length=60)
    # an agent figure of the period (docs/payroll.md#columns) or manual.<name>
    metric: str = Field(min_length=1, max_length=80)
    weight: Decimal = Field(Decimal(1), ge=0)
    # relative: N × 100 / the best N among the role's agents (接听量 scored against
    # the month's best agent); the target fields below are then not used
    relative: bool = False
    target: Decimal | None = None
    step: Decimal = Field(Decimal(1), gt=0)
    lower_is_better: bool = False
    points_worse: Decimal = Field(Decimal(1), ge=0)  # lost per step worse than target
    points_better: Decimal = Field(Decimal(0), ge=0)  # gained per step better
    max_deduction: Decimal | None = Field(None, ge=0)  # at most this many points lost
    max_bonus: Decimal | None = Field(None, ge=0)  # at most this many points gained
    # whole_steps: only completed steps count (93.5% against 95% in 1% steps is one
    # step); otherwise deviation is proportional (1.5 steps)
    whole_steps: bool = False
    base: Decimal = Decimal(100)
    # when the figure has no value (no surveys, no manual entry): skip leaves the
    # item out of the weighted mean; zero scores 0; base scores `base`
    missing: Literal["skip", "zero", "base"] = "skip"
    # the part of the assessment the item belongs to, when the card shares the
    # total between parts (`parts`: 85% system data, 15% listening)
    part: str | None = Field(None, pattern=ITEM_NAME, max_length=60)

    @model_validator(mode="after")
    def _target(self) -> Item:
        if not self.relative and self.target is None:
            raise ValueError(f"item {self.id}: a target (or relative: true) is required")
        return self


class Penalty(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ITEM_NAME, max_length=60)
    # points deducted per count of each figure, e.g. complaints by level
    points: dict[str, Decimal] = Field(min_length=1)
    max: Decimal | None = Field(None, ge=0)  # at most this many points in all


class Bands(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    standard: Decimal = Decimal(80)  # each point below loses units
    bonus_from: Decimal = Decimal(90)  # each point above earns units
    units_per_point: Decimal = Field(Decimal(50), ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        if self.bonus_from < self.standard:
            raise ValueError("bands: bonus_from must be at least standard")
        return self


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    up_to: Decimal | None = Field(None, gt=0)  # inclusive; the last tier has none
    rate: Decimal = Field(ge=0, le=1)


class Commission(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = "sales_amount"
    mode: Literal["progressive", "whole_amount"] = "progressive"
    tiers: list[Tier] = Field(min_length=1)

    @model_validator(mode="after")
    def _tiers(self) -> Commission:
        bounds = [t.up_to for t in self.tiers[:-1]]
        if any(b is None for b in bounds) or self.tiers[-1].up_to is not None:
            raise ValueError("commission.tiers: every tier but the last needs up_to; the last none")
        if any(b <= a for a, b in itertools.pairwise(bounds) if a is not None and b is not None):
            raise ValueError("commission.tiers: up_to must increase")
        return self


class Scorecard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: str = Field(pattern=ITEM_NAME, max_length=60)
    # who the card applies to; neither = every agent no earlier card took
    teams: list[str] = Field(default_factory=list)
    agents: list[str] = Field(default_factory=list)
    items: list[Item] = Field(default_factory=list)
    penalties: list[Penalty] = Field(default_factory=list)
    bands: Bands | None = None
    commission: Commission | None = None
    # The total's share from each part, e.g. {data: 0.85, listening: 0.15}: the
    # total is each part's weighted mean of its items times its share (weights
    # count within a part only). None: one weighted mean over every item.
    parts: dict[str, Decimal] | None = None

    @model_validator(mode="after")
    def _unique(self) -> Scorecard:
        dup = repeated([i.id for i in self.items] + [p.id for p in self.penalties])
        if dup:
            raise ValueError(f"role {self.role}: item ids used twice: {dup}")
        if self.items and not any(i.weight for i in self.items):
            raise ValueError(f"role {self.role}: every item has weight 0")
        self._check_parts()
        return self

    def _check_parts(self) -> None:
        named = {i.id: i.part for i in self.items}
        if self.parts is None:
            stray = sorted(i for i, part in named.items() if part is not None)
            if stray:
                example = "{data: 0.85, listening: 0.15}"
                raise ValueError(f"role {self.role}: items {stray} name a part; "
                                 f"set the card's parts (e.g. {example})")  # fmt: skip
            return
        if any(share <= 0 for share in self.parts.values()) or sum(self.parts.values()) != 1:
            raise ValueError(f"role {self.role}: parts {dict(self.parts)} must be shares above 0 "
                             "that add up to 1")  # fmt: skip
        unknown = sorted(i for i, part in named.items() if part not in self.parts)
        if unknown:
            raise ValueError(f"role {self.role}: items {unknown} need a part of "
                             f"{sorted(self.parts)}")  # fmt: skip
        empty = sorted(p for p in self.parts if p not in named.values())
        if empty:
            raise ValueError(f"role {self.role}: parts {empty} have no item")

    def metrics(self) -> list[str]:
        out = [i.metric for i in self.items]
        out += [m for p in self.penalties for m in p.points]
        if self.commission:
            out.append(self.commission.metric)
        return out


class Scorecards(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scorecards: list[Scorecard] = Field(min_length=1)

    @model_validator(mode="after")
    def _roles(self) -> Scorecards:
        dup = repeated(c.role for c in self.scorecards)
        if dup:
            raise ValueError(f"roles used twice: {dup}")
        return self

    def manual_items(self) -> list[str]:
        """Names of the manual items the cards use, in file order."""
        return list(
            dict.fromkeys(
                m.removeprefix(MANUAL_PREFIX)
                for c in self.scorecards
                for m in c.metrics()
                if m.startswith(MANUAL_PREFIX)
            )
        )

    def item_ids(self) -> list[str]:
        """Every item id across the cards, in file order (the CSV's score columns)."""
        return list(dict.fromkeys(i.id for c in self.scorecards for i in c.items))

    def part_names(self) -> list[str]:
        """The parts the cards share their totals between, in file order."""
        return list(dict.fromkeys(p for c in self.scorecards for p in (c.parts or {})))

    def penalty_ids(self) -> list[str]:
        return list(dict.fromkeys(p.id for c in self.scorecards for p in c.penalties))

    def role_of(self, agent: str, team: str) -> Scorecard | None:
        for card in self.scorecards:
            if agent in card.agents or team in card.teams:
                return card
            if not card.agents and not card.teams:
                return card
        return None

    def stamp(self) -> dict[str, Any]:
        """The cards as stored in a closed version, with a short hash."""
        data: dict[str, Any] = self.model_dump(mode="json")
        return {"hash": digest(data)[:12], **data}


def load(path: Path, known_metrics: set[str]) -> Scorecards:
    """Read and check a scorecard file: every metric must be an agent figure of the
    catalogue (`known_metrics`) or a manual item."""
    data = read_yaml(path, "scorecard file", ScorecardError)
    try:
        cards = Scorecards.model_validate(data)
    except ValidationError as exc:
        lines = error_lines(exc, "docs/payroll.md#scorecards")
        raise ScorecardError(f"scorecard file {path}:\n" + "\n".join(lines)) from None
    for ci, card in enumerate(cards.scorecards):
        for metric in card.metrics():
            if metric.startswith(MANUAL_PREFIX):
                if not re.match(ITEM_NAME, metric.removeprefix(MANUAL_PREFIX)):
                    raise ScorecardError(
                        f"scorecard file {path}: scorecards[{ci}]: bad manual item name {metric!r}"
                    )
            elif metric not in known_metrics:
                raise ScorecardError(
                    f"scorecard file {path}: scorecards[{ci}] ({card.role}): unknown metric "
                    f"{metric!r}; use an agent figure (docs/payroll.md#columns) or manual.<name>"
                )
    return cards

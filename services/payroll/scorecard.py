"""Scorecards (量化考核) and tiered commission: pure functions over a period's
closed figures. Definitions and a worked example: docs/payroll.md#scorecards.

A scorecard belongs to a role (a set of teams or agents). Each item scores one
figure: a target item scores `base` (100) at its target and gains or loses
points per `step` of deviation, capped; a relative item scores N × 100 / the
best N among the role's agents. The total is the weighted mean of the scored
items minus penalties (points per counted complaint, absence, …, capped); bands
turn the total into bonus or deduction units. Commission on `sales_amount` is
tiered, progressive (each slice at its rate) or whole-amount (the whole at the
rate of the tier it reaches).

Arithmetic is decimal: a figure enters as the decimal of its shortest repr, each
item score is rounded half-up to 2 places and the total is computed from the
rounded item scores, so a payroll clerk can redo any row by hand from the CSV.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.core.configfile import digest, error_lines, read_yaml, repeated

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

    @model_validator(mode="after")
    def _unique(self) -> Scorecard:
        dup = repeated([i.id for i in self.items] + [p.id for p in self.penalties])
        if dup:
            raise ValueError(f"role {self.role}: item ids used twice: {dup}")
        if self.items and not any(i.weight for i in self.items):
            raise ValueError(f"role {self.role}: every item has weight 0")
        return self

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


# --- arithmetic ------------------------------------------------------------------


def dec(value: Any) -> Decimal | None:
    """A figure as a decimal (None stays None); floats go through their shortest
    repr, so 0.95 is 0.95 and not 0.9499999999999999555910790149937."""
    if value is None:
        return None
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def _round(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


def target_score(item: Item, value: Decimal) -> Decimal:
    """base ± points per step of deviation from the target, capped; unrounded."""
    assert item.target is not None
    deviation = (item.target - value) if item.lower_is_better else (value - item.target)
    steps = deviation / item.step
    if item.whole_steps:
        steps = steps.to_integral_value(rounding=ROUND_DOWN)  # toward zero
    points = steps * (item.points_better if steps > 0 else item.points_worse)
    if item.max_bonus is not None:
        points = min(points, item.max_bonus)
    if item.max_deduction is not None:
        points = max(points, -item.max_deduction)
    return item.base + points


def relative_score(value: Decimal, best: Decimal | None) -> Decimal | None:
    """N × 100 / N_best; None when nobody has any (an empty denominator)."""
    if not best:
        return None
    return value * 100 / best


def penalty_points(penalty: Penalty, figures: Mapping[str, Any]) -> Decimal:
    """Points per count, summed over the penalty's figures, capped. A count with no
    value (no manual entry) is zero: nothing recorded, nothing deducted."""
    total = sum(
        (
            (dec(figures.get(metric)) or Decimal(0)) * points
            for metric, points in penalty.points.items()
        ),
        Decimal(0),
    )
    return total if penalty.max is None else min(total, penalty.max)


def band_units(bands: Bands, total: Decimal) -> Decimal:
    """(total − bonus_from) × units when at or above bonus_from; −(standard − total)
    × units when below standard; 0 in between."""
    if total >= bands.bonus_from:
        return (total - bands.bonus_from) * bands.units_per_point
    if total < bands.standard:
        return -(bands.standard - total) * bands.units_per_point
    return Decimal(0)


def commission(rule: Commission, amount: Decimal) -> Decimal:
    """Tiered commission, rounded half-up to cents. Tier bounds are inclusive: at
    exactly 100,000 the 100,000 tier's rate applies."""
    if amount <= 0:
        return Decimal(0).quantize(CENT)
    if rule.mode == "whole_amount":
        tier = next(t for t in rule.tiers if t.up_to is None or amount <= t.up_to)
        return _round(amount * tier.rate)
    total, floor = Decimal(0), Decimal(0)
    for tier in rule.tiers:
        top = amount if tier.up_to is None else min(amount, tier.up_to)
        if top > floor:
            total += (top - floor) * tier.rate
        if tier.up_to is None or amount <= tier.up_to:
            break
        floor = tier.up_to
    return _round(total)


def score_agents(
    cards: Scorecards, agents: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Score columns per agent, from agent rows that already hold the manual items
    as `manual.<name>` fields. Keys: scorecard, score.<item> (None when missing and
    skipped), penalty.<id>, score_total, score_units, commission."""
    role = {a: cards.role_of(a, str(row.get("team", ""))) for a, row in agents.items()}
    best: dict[tuple[str, str], Decimal | None] = {}
    for card in cards.scorecards:
        members = [agents[a] for a, c in role.items() if c is card]
        for item in card.items:
            if item.relative:
                values = [v for r in members if (v := dec(r.get(item.metric))) is not None]
                best[card.role, item.id] = max(values, default=None)
    out: dict[str, dict[str, Any]] = {}
    for agent, row in agents.items():
        own = role[agent]
        out[agent] = _score_one(own, row, best) if own else {"scorecard": None}
    return out


def _score_one(
    card: Scorecard, row: Mapping[str, Any], best: Mapping[tuple[str, str], Decimal | None]
) -> dict[str, Any]:
    result: dict[str, Any] = {"scorecard": card.role}
    weighted, weights = Decimal(0), Decimal(0)
    for item in card.items:
        value = dec(row.get(item.metric))
        score: Decimal | None = None
        if value is not None:
            score = (
                relative_score(value, best[card.role, item.id])
                if item.relative
                else target_score(item, value)
            )
        if score is None:
            score = {"skip": None, "zero": Decimal(0), "base": item.base}[item.missing]
        if score is not None:
            score = _round(score)
            weighted += score * item.weight
            weights += item.weight
        result[f"score.{item.id}"] = _num(score)
    penalties = Decimal(0)
    for penalty in card.penalties:
        points = penalty_points(penalty, row)
        penalties += points
        result[f"penalty.{penalty.id}"] = _num(_round(points))
    total: Decimal | None = None
    if weights:
        total = _round(weighted / weights - penalties)
    result["score_total"] = _num(total)
    result["score_units"] = (
        _num(_round(band_units(card.bands, total))) if card.bands and total is not None else None
    )
    if card.commission:
        amount = dec(row.get(card.commission.metric)) or Decimal(0)
        result["commission"] = _num(commission(card.commission, amount))
    return result


def _num(x: Decimal | None) -> float | None:
    """Stored as JSON numbers: 2-place decimals survive the float round trip."""
    return None if x is None else float(x)


def columns(stamp: Mapping[str, Any]) -> list[str]:
    """The scorecard columns of a version's rows, after the figures: its manual
    items, the role, each item's score, each penalty, then the results."""
    cards = Scorecards.model_validate({k: v for k, v in stamp.items() if k != "hash"})
    return [
        *(MANUAL_PREFIX + n for n in cards.manual_items()),
        "scorecard",
        *(f"score.{i}" for i in cards.item_ids()),
        *(f"penalty.{p}" for p in cards.penalty_ids()),
        "score_total",
        "score_units",
        "commission",
    ]

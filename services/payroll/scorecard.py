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

from collections.abc import Mapping
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from services.core.payroll_rules import (  # the schema and loader; re-exported
    CENT,
    ITEM_NAME,
    MANUAL_PREFIX,
    Bands,
    Commission,
    Item,
    Penalty,
    Scorecard,
    ScorecardError,
    Scorecards,
    Tier,
    load,
)

__all__ = [
    "CENT", "ITEM_NAME", "MANUAL_PREFIX", "Bands", "Commission", "Item", "Penalty",
    "Scorecard", "ScorecardError", "Scorecards", "Tier", "load",
]  # fmt: skip

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
    # per part (one part, None, without `parts`): weighted sum and weights
    sums: dict[str | None, tuple[Decimal, Decimal]] = {}
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
            weighted, weights = sums.get(item.part, (Decimal(0), Decimal(0)))
            sums[item.part] = (weighted + score * item.weight, weights + item.weight)
        result[f"score.{item.id}"] = _num(score)
    penalties = Decimal(0)
    for penalty in card.penalties:
        points = penalty_points(penalty, row)
        penalties += points
        result[f"penalty.{penalty.id}"] = _num(_round(points))
    total: Decimal | None = None
    means = {part: w / n for part, (w, n) in sums.items() if n}
    if card.parts is None:
        if None in means:
            total = _round(means[None] - penalties)
    else:
        # each part's mean rounded as an item score is, and the total from those,
        # so the part columns redo the total by hand
        rounded = {part: _round(means[part]) for part in card.parts if part in means}
        for part in card.parts:
            result[f"part.{part}"] = _num(rounded.get(part))
        # a part with every item skipped drops out; the others keep their ratio
        shares = {part: card.parts[part] for part in rounded}
        if shares:
            mixed = sum((rounded[p] * shares[p] for p in shares), Decimal(0)) / sum(shares.values())
            total = _round(mixed - penalties)
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
        *(f"part.{p}" for p in cards.part_names()),
        "score_total",
        "score_units",
        "commission",
    ]

"""Alert rules and business-hour schedules, as written in the config file.

The first part of alerting (issue 4): what a rule says and which threshold is in
force at a given instant. Evaluation, state and sinks build on this.

A schedule is a set of weekly time ranges, in the center's time zone, that are
`peak`; every other instant is `off_peak`; listed holiday dates take their own
class for the whole day (`closed` means: do not alert). A rule names a field of
the read API that is a rate or an average, the entities it watches, a threshold
per schedule class, and the guards that keep it quiet on thin volume and brief
dips (`min_calls`, `for`) and stop it flapping at the line (`clear_margin`).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from services.core.deviation import Direction
from services.core.kpi import metrics_for, zero_counters
from services.core.qa_figures import CHANGE_FIELDS

ScheduleClass = Literal["peak", "off_peak", "closed"]
Kind = Literal["center", "team", "queue", "agent"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Rates and averages are the fields that are undefined (None) without data; counts
# are 0. Deriving the list this way keeps it in step with the read API.
# staffing_ratio: staffed agents / the agents the window's load requires
# (docs/staffing.md#alerting); below 1 is understaffed.
STAFFING_FIELDS = frozenset({"staffing_ratio"})
ALERTABLE_FIELDS: frozenset[str] = (
    frozenset(
        name
        for kind in ("center", "team", "queue")
        for name, value in metrics_for(kind, zero_counters()).items()
        if value is None
    )
    | STAFFING_FIELDS
)
# An agent's figure against its own baseline (docs/qa.md#the-deviation-alert):
# `avg_talk_seconds_change` is −0.4 when the agent's talk time over the window is
# 40% below its usual for those hours and unusual in its team; 0 when the team
# shares the change. The only fields of kind `agent`.
DEVIATION_FIELDS: frozenset[str] = frozenset(CHANGE_FIELDS)
# A deviation needs calls enough to tell an agent from its team (about 35 calls
# for a rush to 60% of a lognormal talk time to stand 3.5 robust scores out):
# days of them for an agent's few calls an hour, at most a week, whose baseline
# is still the same weekday and hours of the weeks before.
DEVIATION_WINDOW_MAX = timedelta(days=7)

_DURATION = re.compile(r"^(\d+)(s|m|h)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> timedelta:
    """'90s', '2m', '1h' (one number, one unit)."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a duration like 90s, 2m or 1h")
    return timedelta(seconds=int(m.group(1)) * _UNIT_SECONDS[m.group(2)])


def _duration(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


def _clock(value: object) -> time:
    # quoted in YAML on purpose: unquoted 09:00 is the base-60 integer 540 there
    if not isinstance(value, str):
        raise ValueError(f'{value!r}: write a time of day in quotes, like "09:00"')
    if value == "24:00":
        return time.max
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a time of day like 09:00") from None


# Written as 90s / 2m / 1h in the config, held as a timedelta.
Duration = Annotated[timedelta, BeforeValidator(_duration)]
ClockTime = Annotated[time, BeforeValidator(_clock)]


class WeeklyRange(BaseModel):
    """Days of the week and a time range on each, e.g. mon-fri 09:00-12:00."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    days: list[str] = Field(min_length=1)
    start: ClockTime = Field(alias="from")
    end: ClockTime = Field(alias="to")

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        out = [d.lower()[:3] for d in value]
        bad = [d for d, o in zip(value, out, strict=True) if o not in DAYS]
        if bad:
            raise ValueError(f"unknown day(s) {bad}: use mon, tue, wed, thu, fri, sat, sun")
        return out

    @model_validator(mode="after")
    def _ordered(self) -> WeeklyRange:
        if self.end <= self.start:
            raise ValueError(
                f"from {self.start:%H:%M} must be before to {self.end:%H:%M} "
                "(a range past midnight is two ranges)"
            )
        return self

    def contains(self, local: datetime) -> bool:
        if DAYS[local.weekday()] not in self.days:
            return False
        return self.start <= local.time() < self.end


class Holiday(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    day: date = Field(alias="date")
    schedule_class: ScheduleClass = Field("closed", alias="class")


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    peak: list[WeeklyRange] = Field(default_factory=list)
    holidays: list[Holiday] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_holidays(self) -> Schedule:
        seen: set[date] = set()
        for i, h in enumerate(self.holidays):
            if h.day in seen:
                raise ValueError(f"holidays[{i}]: {h.day} is listed twice")
            seen.add(h.day)
        return self

    def class_at(self, instant: datetime, tz: ZoneInfo) -> ScheduleClass:
        """The schedule class in force at `instant` (aware), judged on the wall
        clock of the center's zone (so a DST change moves nothing)."""
        local = instant.astimezone(tz)
        for h in self.holidays:
            if h.day == local.date():
                return h.schedule_class
        return "peak" if any(r.contains(local) for r in self.peak) else "off_peak"

    def classes_between(self, start: datetime, end: datetime, tz: ZoneInfo) -> set[ScheduleClass]:
        """Every schedule class in force at some instant of [start, end): the
        class changes only where a peak range begins or ends or a day begins, so
        those instants (each fold of a repeated wall-clock hour) and `start`
        are the only ones to look at."""
        bounds = {time(0)} | {r.start for r in self.peak} | {r.end for r in self.peak}
        bounds.discard(time.max)  # 24:00 is the next day's midnight
        seen = {self.class_at(start, tz)}
        day = start.astimezone(tz).date()
        while datetime.combine(day, time(0), tzinfo=tz) < end:
            for b in bounds:
                for fold in (0, 1):
                    # through UTC: a wall-clock time the spring-forward night
                    # skips is no instant; it lands on a real one either side
                    t = datetime.combine(day, b, tzinfo=tz).replace(fold=fold).astimezone(UTC)
                    if start < t < end:
                        seen.add(self.class_at(t, tz))
            day += timedelta(days=1)
        return seen


class Thresholds(BaseModel):
    """The line per schedule class. A class left out does not alert."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    peak: float | None = None
    off_peak: float | None = None
    closed: None = None  # `closed` never alerts: nothing to set

    def in_force(self, cls: ScheduleClass) -> float | None:
        return None if cls == "closed" else getattr(self, cls)


class AlertRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    field: str = "answer_rate"
    kind: Kind
    # entity ids to watch; empty = every entity of the kind (center: "all")
    ids: list[str] = Field(default_factory=list)
    direction: Literal["below", "above"] = "below"
    thresholds: Thresholds
    window: Duration = timedelta(minutes=15)
    min_calls: int = Field(20, ge=0)
    hold: Duration = Field(timedelta(minutes=2), alias="for")
    clear_margin: float = Field(0.0, ge=0)
    webhooks: list[str] = Field(default_factory=list)

    @field_validator("window")
    @classmethod
    def _whole_minutes(cls, value: timedelta) -> timedelta:
        # the counters are minute buckets: a window is a whole number of them
        if value < timedelta(minutes=1) or value % timedelta(minutes=1):
            raise ValueError("must be a whole number of minutes (counters are per minute)")
        return value

    @field_validator("field")
    @classmethod
    def _alertable(cls, value: str) -> str:
        if value not in ALERTABLE_FIELDS | DEVIATION_FIELDS:
            raise ValueError(
                f"{value!r} is not a rate or average of the read API; "
                f"one of: {', '.join(sorted(ALERTABLE_FIELDS))}; or, for kind agent, "
                f"a change from the agent's baseline: {', '.join(sorted(DEVIATION_FIELDS))}"
            )
        return value

    @field_validator("webhooks")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r}: a webhook is an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _has_a_line(self) -> AlertRule:
        if self.thresholds.peak is None and self.thresholds.off_peak is None:
            raise ValueError("thresholds: set peak, off_peak or both")
        if self.kind == "center" and self.ids not in ([], ["all"]):
            raise ValueError("ids: the center's only id is 'all'")
        if (self.kind == "agent") != (self.field in DEVIATION_FIELDS):
            raise ValueError(
                f"field {self.field!r} with kind {self.kind!r}: an agent's rule watches a "
                f"change from its baseline ({', '.join(sorted(DEVIATION_FIELDS))}), and those "
                "are watched per agent only"
            )
        longest = DEVIATION_WINDOW_MAX if self.field in DEVIATION_FIELDS else timedelta(days=1)
        if self.window > longest:
            raise ValueError(f"window: at most {int(longest.total_seconds() // 3600)}h for "
                             f"{self.field}")  # fmt: skip
        figure = CHANGE_FIELDS.get(self.field)
        wrong = {Direction.DOWN: "above", Direction.UP: "below"}
        if figure is not None and wrong.get(figure.direction) == self.direction:
            raise ValueError(
                f"direction {self.direction!r}: {figure.name} is abnormal only when it "
                f"{'falls' if figure.direction is Direction.DOWN else 'rises'} "
                '(docs/metrics.md, "Abnormal figures")'
            )
        # a change the team shares is observed as 0: with a line on the wrong
        # side of 0 (below +0.2) every agent would breach it
        lines = [t for t in (self.thresholds.peak, self.thresholds.off_peak) if t is not None]
        if figure is not None and any(t >= 0 if self.direction == "below" else t <= 0
                                      for t in lines):  # fmt: skip
            sign = "below 0 (−0.2: 20% under its usual)" if self.direction == "below" else (
                "above 0 (0.2: 20% over its usual)")  # fmt: skip
            raise ValueError(f"thresholds: a change {self.direction} its baseline needs a line "
                             f"{sign}")  # fmt: skip
        return self

    def breached(self, value: float, threshold: float) -> bool:
        return value < threshold if self.direction == "below" else value > threshold

    def cleared(self, value: float, threshold: float) -> bool:
        """Back past the line by at least the margin (hysteresis)."""
        if self.direction == "below":
            return value >= threshold + self.clear_margin
        return value <= threshold - self.clear_margin


class AlertSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schedule: Schedule = Schedule()
    rules: list[AlertRule] = Field(default_factory=list)
    # a webhook's body is signed with this key (HMAC-SHA256); required with webhooks
    webhook_secret: SecretStr | None = None
    # Run the evaluator in this `callkpi api` process. Several may run: an advisory
    # lock lets one evaluate at a time, so this is only a way to keep it off some.
    evaluate: bool = True
    # Supervisors must hear within a minute; 10 s keeps a rule with `for: 2m` at
    # most 10 s late, and new figures (a worker commit) wake it sooner.
    evaluate_every: Duration = timedelta(seconds=10)
    # A webhook that takes longer than this is counted as failed and retried.
    webhook_timeout: Duration = timedelta(seconds=5)
    # Retries back off from 1 s, doubling, to at most this long between attempts...
    webhook_max_backoff: Duration = timedelta(minutes=5)
    # ...and a delivery still failing this long after its transition is given up
    # (counted as dead in /metrics; the alert itself is in the API and the topic).
    webhook_give_up_after: Duration = timedelta(hours=24)

    def rule_for(self, kind: str, entity_id: str, field: str) -> AlertRule | None:
        """The first rule that watches this entity's field: its line is the one
        reports draw (an entity has one line per field; a second rule on the
        same field is another window or guard, not another line)."""
        for rule in self.rules:
            if (
                rule.field == field
                and rule.kind == kind
                and (not rule.ids or entity_id in rule.ids)
            ):
                return rule
        return None

    @model_validator(mode="after")
    def _unique_and_signed(self) -> AlertSettings:
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.id in seen:
                raise ValueError(f"rules[{i}].id: duplicate rule id {rule.id!r}")
            seen.add(rule.id)
            if rule.webhooks and not self.webhook_secret:
                raise ValueError(f"rules[{i}].webhooks: set alerts.webhook_secret to sign them")
        return self

"""Alert rules and schedules as configured: which threshold is in force when, and
bad rules failing at start with the key named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.core.alert_rules import AlertRule, Schedule, Thresholds, parse_duration
from services.core.settings import ConfigError, load_settings
from tests.support.databases import EXAMPLE_CONFIG

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")


def at(
    tz: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=tz).astimezone(UTC)


def test_example_config_encodes_the_seeds_85_peak_and_90_off_peak() -> None:
    s = load_settings(EXAMPLE_CONFIG).alerts
    rule = s.rules[0]
    # Monday 2026-11-23 10:00 in Shanghai is peak, 20:00 off-peak, Sunday off-peak
    assert (
        rule.thresholds.in_force(s.schedule.class_at(at(SHANGHAI, 2026, 11, 23, 10), SHANGHAI))
        == 0.85
    )
    assert (
        rule.thresholds.in_force(s.schedule.class_at(at(SHANGHAI, 2026, 11, 23, 20), SHANGHAI))
        == 0.90
    )
    assert s.schedule.class_at(at(SHANGHAI, 2026, 11, 22, 10), SHANGHAI) == "off_peak"
    # 国庆节 is closed all day: no threshold at all
    closed = s.schedule.class_at(at(SHANGHAI, 2026, 10, 1, 10), SHANGHAI)
    assert closed == "closed" and rule.thresholds.in_force(closed) is None
    assert (rule.min_calls, rule.hold.total_seconds(), rule.window.total_seconds()) == (
        20,
        120,
        900,
    )


def test_a_peak_range_includes_its_start_and_excludes_its_end() -> None:
    sched = Schedule.model_validate({"peak": [{"days": ["mon"], "from": "09:00", "to": "12:00"}]})
    assert sched.class_at(at(SHANGHAI, 2026, 11, 23, 8, 59, 59), SHANGHAI) == "off_peak"
    assert sched.class_at(at(SHANGHAI, 2026, 11, 23, 9, 0, 0), SHANGHAI) == "peak"
    assert sched.class_at(at(SHANGHAI, 2026, 11, 23, 11, 59, 59), SHANGHAI) == "peak"
    assert sched.class_at(at(SHANGHAI, 2026, 11, 23, 12, 0, 0), SHANGHAI) == "off_peak"


def test_peak_follows_the_wall_clock_across_a_daylight_saving_change() -> None:
    # Berlin moved from UTC+1 to UTC+2 on Sunday 2026-03-29; 09:00 local is peak on
    # the Monday before and after, although those are different UTC hours.
    sched = Schedule.model_validate({"peak": [{"days": ["mon"], "from": "09:00", "to": "10:00"}]})
    before, after = at(BERLIN, 2026, 3, 23, 9, 30), at(BERLIN, 2026, 3, 30, 9, 30)
    assert (before.hour, after.hour) == (8, 7)
    assert sched.class_at(before, BERLIN) == sched.class_at(after, BERLIN) == "peak"
    assert sched.class_at(at(BERLIN, 2026, 3, 30, 10, 30), BERLIN) == "off_peak"


# A Berlin schedule with a holiday, peak ranges at odd minutes and one inside the
# hour that the spring-forward night skips (02:00-03:00 on 2026-03-29).
BUSY = Schedule.model_validate({
    "peak": [
        {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:30", "to": "12:15"},
        {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "13:07", "to": "18:00"},
        {"days": ["sun"], "from": "02:20", "to": "02:40"},
        {"days": ["sat"], "from": "22:00", "to": "24:00"},
    ],
    "holidays": [{"date": "2026-03-31", "class": "closed"}],
})  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    start_min=st.integers(0, 8 * 24 * 60),
    length=st.integers(1, 3 * 24 * 60),
)
@example(start_min=4260, length=81)  # the spring-forward night: 02:20 is no instant
def test_the_classes_of_an_interval_are_those_of_its_minutes(start_min: int, length: int) -> None:
    # the week of 2026-03-26 holds a spring-forward night and a closed holiday
    start = datetime(2026, 3, 26, tzinfo=UTC) + timedelta(minutes=start_min)
    end = start + timedelta(minutes=length)
    every_minute = {BUSY.class_at(start + timedelta(minutes=m), BERLIN) for m in range(length)}
    assert BUSY.classes_between(start, end, BERLIN) == every_minute


def test_the_rule_for_an_entity_is_the_first_watching_its_field() -> None:
    s = load_settings(EXAMPLE_CONFIG).alerts
    rule = s.rule_for("team", "billing", "answer_rate")
    assert rule is not None and rule.id == "answer-rate-team"
    staffing = s.rule_for("team", "tech", "staffing_ratio")
    assert staffing is not None and staffing.id == "understaffed-team"
    assert s.rule_for("team", "billing", "service_level") is None
    assert s.rule_for("queue", "internet", "answer_rate") is None


def test_hysteresis_resolves_only_past_threshold_plus_margin() -> None:
    rule = AlertRule.model_validate(
        {"id": "r", "kind": "center", "thresholds": {"peak": 0.85}, "clear_margin": 0.02}
    )
    assert rule.breached(0.84, 0.85) and not rule.breached(0.85, 0.85)
    assert not rule.cleared(0.86, 0.85) and rule.cleared(0.87, 0.85)
    above = rule.model_copy(update={"direction": "above"})
    assert above.breached(0.86, 0.85) and above.cleared(0.83, 0.85)


def test_durations_parse_and_bad_ones_are_refused() -> None:
    assert parse_duration("90s").total_seconds() == 90
    assert parse_duration("1h").total_seconds() == 3600
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("2 minutes")
    assert Thresholds(peak=0.85).in_force("off_peak") is None


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


RULE = "alerts: {rules: [{id: r, kind: team, thresholds: {peak: 0.85}, %s}]}\n"
TALK = "alerts: {rules: [{id: r, field: avg_talk_seconds_change, thresholds: {peak: -0.2}, %s}]}\n"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (RULE % "field: answered", "alerts.rules.0.field"),
        (RULE % "window: 15 minutes", "alerts.rules.0.window"),
        (RULE % "for: soon", "alerts.rules.0.for"),
        (RULE % "min_calls: -1", "alerts.rules.0.min_calls"),
        (RULE % "direction: sideways", "alerts.rules.0.direction"),
        (RULE % "ids: [nosuchteam]", "alerts.rules[0].ids"),
        (RULE % "webhooks: ['http://x']", "rules[0].webhooks: set alerts.webhook_secret"),
        (RULE % "treshold: 1", "alerts.rules.0.treshold"),
        (TALK % "kind: team", "an agent's rule watches a change from its baseline"),
        (RULE % "kind: agent", "an agent's rule watches a change from its baseline"),
        (TALK % "kind: agent, direction: above", "avg_talk_seconds is abnormal only when it falls"),
        (TALK % "kind: agent, window: 200h", "window: at most 168h for avg_talk_seconds_change"),
        (TALK.replace("peak: -0.2", "peak: 0.2") % "kind: agent", "needs a line below 0"),
        (
            TALK % "kind: agent, ids: [nobody]",
            "alerts.rules[0].ids: agent(s) ['nobody'] not in any",
        ),
        (RULE % "window: 48h", "window: at most 24h for answer_rate"),
        ("alerts: {rules: [{id: r, kind: team, thresholds: {}}]}\n", "thresholds"),
        (
            "alerts: {schedule: {peak: [{days: [mon], from: '12:00', to: '09:00'}]}}\n",
            "alerts.schedule.peak.0",
        ),
        ("alerts: {schedule: {peak: [{days: [funday], from: '09:00', to: '10:00'}]}}\n", "days"),
        ("alerts: {schedule: {holidays: [{date: '2026-02-30'}]}}\n", "alerts.schedule.holidays.0"),
    ],
)
def test_bad_alert_config_fails_at_start_naming_the_key(
    tmp_path: Path, text: str, key: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    assert key in str(err.value)


def test_an_impossible_unquoted_date_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"month must be in 1\.\.12"):
        load_settings(write(tmp_path, "alerts: {schedule: {holidays: [{date: 2026-13-01}]}}\n"))

"""Staffing arithmetic worked by hand: adherence, conformance and attendance
across midnight and a daylight-saving night, schedule fit, forecast and its
error, patience."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.schedules import Segment, parse_csv
from services.core.staffing import (
    agent_schedule,
    patience_seconds,
    requirement,
    schedule_fit,
    scheduled_agents,
    wape,
    weighted_forecast,
)
from services.core.staffing_rules import Activity, Goal, StaffingSettings

BERLIN = ZoneInfo("Europe/Berlin")
CFG = StaffingSettings()
MIN = 60_000_000
GRACE, EARLY = 5 * MIN, 120 * MIN


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp()) * 1_000_000


def schedule(body: str) -> list[Segment]:
    p = parse_csv("agent_id,date,start,end,activity\n" + body, set(CFG.activities), None, BERLIN)
    assert p.problems == []
    return p.segments


def test_a_night_shift_across_the_autumn_change_worked_by_hand() -> None:
    """Shift 2026-10-24 22:00 → 25 06:00 Berlin: 9 hours (the clock goes back at
    03:00), a break 02:00-02:30 (the first 02:00). The agent logs in at 22:07
    (late: grace 5 min), works to 02:00, takes the break not ready 02:00-02:40
    (10 minutes into work time), works to 06:00 and stays 30 minutes after."""
    segs = schedule("a1,2026-10-24,22:00,06:00,work\na1,2026-10-24,02:00,02:30,break\n")
    states = [
        (at("2026-10-24T22:07:00+02:00"), at("2026-10-25T02:00:00+02:00"), "available", None),
        (at("2026-10-25T02:00:00+02:00"), at("2026-10-25T02:40:00+02:00"), "not_ready", "break"),
        (at("2026-10-25T02:40:00+02:00"), at("2026-10-25T06:30:00+01:00"), "on_call", None),
    ]
    start, end = at("2026-10-24T00:00:00+02:00"), at("2026-10-26T00:00:00+01:00")
    got = agent_schedule(segs, states, CFG.activities, start, end, end, GRACE, EARLY)
    # scheduled 9 h; out of adherence: 22:00-22:07 (not logged in) and 02:30-02:40
    # (not ready during work) = 17 min
    assert got.scheduled_seconds == 9 * 3600
    assert got.adhered_seconds == 9 * 3600 - 17 * 60
    # worked: 22:07 → 06:30 = 9 h 23 min of wall time on a 25-hour day
    assert got.worked_seconds == 9 * 3600 + 23 * 60
    assert (got.scheduled_shifts, got.attended_shifts, got.late_shifts) == (1, 1, 1)
    assert got.lateness_seconds == 7 * 60
    f = got.fields()
    assert f["adherence_rate"] == pytest.approx((9 * 60 - 17) / (9 * 60))
    assert f["attendance_rate"] == 1.0 and f["absent_shifts"] == 0


def test_an_absent_day_and_a_punctual_one_make_half_attendance() -> None:
    segs = schedule("a1,2027-03-26,09:00,17:00,work\na1,2027-03-27,09:00,17:00,work\n")
    # 26th: logged in 08:58 (before the start: on time); 27th: never
    states = [(at("2027-03-26T08:58:00+01:00"), at("2027-03-26T17:00:00+01:00"), "available", None)]
    start, end = at("2027-03-26T00:00:00+01:00"), at("2027-03-28T00:00:00+01:00")
    got = agent_schedule(segs, states, CFG.activities, start, end, end, GRACE, EARLY)
    assert (got.scheduled_shifts, got.attended_shifts, got.late_shifts) == (2, 1, 0)
    assert got.fields()["attendance_rate"] == 0.5
    assert got.fields()["absent_shifts"] == 1
    assert got.adhered_seconds == 8 * 3600 and got.scheduled_seconds == 16 * 3600
    # conformance counts the 2 minutes before the shift too: worked / scheduled
    assert got.fields()["conformance_rate"] == pytest.approx((8 * 60 + 2) / (16 * 60))


def test_a_shift_not_yet_begun_is_not_counted_absent() -> None:
    segs = schedule("a1,2027-03-26,09:00,17:00,work\n")
    start, end = at("2027-03-26T00:00:00+01:00"), at("2027-03-27T00:00:00+01:00")
    before = agent_schedule(segs, [], CFG.activities, start, end, at("2027-03-26T09:04:00+01:00"),
                            GRACE, EARLY)  # fmt: skip
    after = agent_schedule(segs, [], CFG.activities, start, end, at("2027-03-26T09:05:00+01:00"),
                           GRACE, EARLY)  # fmt: skip
    assert (before.scheduled_shifts, after.scheduled_shifts) == (0, 1)
    assert after.attended_shifts == 0


def test_a_login_long_before_the_shift_does_not_count_as_arriving() -> None:
    segs = schedule("a1,2027-03-26,14:00,22:00,work\n")
    # in the morning, then gone: more than early_login_minutes before the start
    states = [(at("2027-03-26T08:00:00+01:00"), at("2027-03-26T10:00:00+01:00"), "available", None)]
    start, end = at("2027-03-26T00:00:00+01:00"), at("2027-03-27T00:00:00+01:00")
    got = agent_schedule(segs, states, CFG.activities, start, end, end, GRACE, EARLY)
    assert (got.scheduled_shifts, got.attended_shifts) == (1, 0)


def test_an_activity_with_reasons_adheres_only_to_a_pause_with_one_of_them() -> None:
    acts = {
        "work": CFG.activities["work"],
        "lunch": Activity(states=("not_ready",), reasons=("lunch",)),
    }
    seg = [Segment("a1", date(2027, 3, 26), at("2027-03-26T12:00:00+01:00"),
                   at("2027-03-26T13:00:00+01:00"), "lunch")]  # fmt: skip
    half = at("2027-03-26T12:30:00+01:00")
    states = [
        (seg[0].start_us, half, "not_ready", "lunch"),
        (half, seg[0].end_us, "not_ready", "toilet"),
    ]
    got = agent_schedule(seg, states, acts, seg[0].start_us, seg[0].end_us, seg[0].end_us,
                         GRACE, EARLY)  # fmt: skip
    assert got.adhered_seconds == 1800


def test_scheduled_agents_are_averages_over_the_interval() -> None:
    segs = schedule("a1,2027-03-26,09:00,09:45,work\na2,2027-03-26,09:15,11:00,work\n"
                    "a2,2027-03-26,10:00,10:30,lunch\n")  # fmt: skip
    edges = [
        at(f"2027-03-26T{h}+01:00")
        for h in ("09:00:00", "09:30:00", "10:00:00", "10:30:00", "11:00:00")
    ]
    assert scheduled_agents(segs, edges, {"work"}) == [1 + 0.5, 0.5 + 1, 0.0, 1.0]


def test_schedule_fit_weighs_under_and_over_staffing_alike_against_the_need() -> None:
    # needs 10, 20, 10; scheduled 8, 20, 14: misses 2 + 0 + 4 = 6 of 40
    assert schedule_fit([(8, 10), (20, 20), (14, 10)]) == pytest.approx(1 - 6 / 40)
    assert schedule_fit([(3.0, 0)]) is None  # nothing required: no denominator
    assert schedule_fit([(None, 5), (2, None)]) is None
    assert schedule_fit([(30, 10)]) == -1.0  # scheduled three times the need


def test_the_forecast_is_the_weighted_mean_of_the_weeks_with_data() -> None:
    w = (0.4, 0.3, 0.2, 0.1)
    assert weighted_forecast([(100, 1), (80, 1), (60, 1), (40, 1)], w) == pytest.approx(
        (40 + 24 + 12 + 4) / 1.0
    )
    # two weeks of history only: the weights of those two, normalised
    assert weighted_forecast([(100, 1), (80, 1), None, None], w) == pytest.approx((40 + 24) / 0.7)
    assert weighted_forecast([None, None, None, None], w) is None
    # AHT pooled: Σ w·handle seconds / Σ w·handled
    assert weighted_forecast([(1800, 10), (0, 0)], (0.5, 0.5)) == 180


def test_wape_is_the_miss_in_calls_over_the_calls_that_came() -> None:
    assert wape([(100, 90.0), (50, 60.0), (0, 5.0), (30, None)]) == pytest.approx(25 / 150)
    assert wape([(0, 3.0)]) is None


def test_patience_is_the_total_wait_over_the_abandons() -> None:
    # 4 abandons among calls that waited 600 s in all: a mean patience of 150 s
    assert patience_seconds(4, 600_000_000) == 150
    assert patience_seconds(0, 600_000_000) is None
    assert patience_seconds(3, 0) is None


def test_an_interval_with_calls_but_no_handle_time_has_no_requirement() -> None:
    goal = Goal(target=0.8, seconds=20)
    assert requirement(10, 1800, None, goal, None, "erlang_a", None) is None
    none = requirement(0, 1800, None, goal, None, "erlang_a", None)
    assert none is not None and none.chosen is not None and none.chosen.agents == 0
    r = requirement(100, 1800, 180, goal, 120, "erlang_a", None)
    assert r is not None and r.erlang_c is not None and r.erlang_a is not None
    assert r.chosen is r.erlang_a and r.erlang_c.agents == 14
    c = requirement(100, 1800, 180, goal, 120, "erlang_c", None)
    assert c is not None and c.chosen is c.erlang_c


# --- against a brute-force reference: every instant looked at one by one ------

STATES4 = ("available", "on_call", "wrap_up", "not_ready")


@st.composite
def day_of_an_agent(
    draw: st.DrawFn,
) -> tuple[list[Segment], list[tuple[int, int, str, str | None]]]:
    """One agent-day on a grid of whole units (a unit stands for a µs here): a
    shift, maybe a break inside it, and state segments that do not overlap."""
    a = draw(st.integers(20, 80))
    b = draw(st.integers(a + 5, 160))
    segs = [Segment("a1", date(2027, 3, 26), a, b, "work")]
    if b - a > 10 and draw(st.booleans()):
        c = draw(st.integers(a + 1, b - 4))
        d = draw(st.integers(c + 1, b - 1))
        segs = [Segment("a1", segs[0].day, a, c, "work"), Segment("a1", segs[0].day, c, d, "lunch"),
                Segment("a1", segs[0].day, d, b, "work")]  # fmt: skip
    cuts = sorted(set(draw(st.lists(st.integers(0, 200), min_size=2, max_size=14))))
    states = []
    for s0, s1 in itertools.pairwise(cuts):
        state = draw(st.sampled_from((*STATES4, "logged_out")))
        if state != "logged_out":  # logged-out time is never a segment
            reason = (
                draw(st.sampled_from((None, "lunch", "toilet"))) if state == "not_ready" else None
            )
            states.append((s0, s1, state, reason))
    return segs, states


def brute_force(segs: list[Segment], states: list[Any], acts: dict[str, Activity], lo: int, hi: int,
                now: int, grace: int, early: int) -> tuple[int, int, int, int, int, int, int]:  # fmt: skip
    def state_at(t: int) -> tuple[str, str | None] | None:
        return next(((s, r) for s0, s1, s, r in states if s0 <= t < s1), None)

    scheduled = adhered = worked = 0
    for t in range(lo, hi):
        seg = next((g for g in segs if g.start_us <= t < g.end_us), None)
        st_ = state_at(t)
        worked += st_ is not None
        if seg is None:
            continue
        scheduled += 1
        act = acts[seg.activity]
        if (
            st_ is not None
            and st_[0] in act.states
            and (st_[0] != "not_ready" or not act.reasons or (st_[1] or "") in act.reasons)
        ):
            adhered += 1
    first, last = min(g.start_us for g in segs), max(g.end_us for g in segs)
    counted = attended = late = lateness = 0
    if lo <= first < hi and first + grace <= now:
        counted = 1
        arrived = next((t for t in range(first - early, last) if state_at(t) is not None), None)
        if arrived is not None:
            attended = 1
            if arrived > first + grace:
                late, lateness = 1, arrived - first
    return scheduled, adhered, worked, counted, attended, late, lateness


@settings(max_examples=300, deadline=None)
@given(day=day_of_an_agent(), lo=st.integers(0, 60), length=st.integers(1, 200),
       grace=st.integers(0, 10), early=st.integers(0, 30), reasons=st.booleans())  # fmt: skip
def test_adherence_and_attendance_equal_an_instant_by_instant_count(
    day: tuple[list[Segment], list[Any]], lo: int, length: int, grace: int, early: int,
    reasons: bool,
) -> None:  # fmt: skip
    segs, states = day
    acts = {"work": CFG.activities["work"],
            "lunch": Activity(states=("not_ready",), reasons=("lunch",) if reasons else ())}  # fmt: skip
    hi = lo + length
    got = agent_schedule(segs, states, acts, lo, hi, hi, grace, early)
    want = brute_force(segs, states, acts, lo, hi, hi, grace, early)
    assert (round(got.scheduled_seconds * 1e6), round(got.adhered_seconds * 1e6),
            round(got.worked_seconds * 1e6), got.scheduled_shifts, got.attended_shifts,
            got.late_shifts, round(got.lateness_seconds * 1e6)) == want  # fmt: skip

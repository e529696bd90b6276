from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.core.events import normalize
from services.core.schedules import Segment, parse_csv
from services.core.staffing_rules import StaffingSettings
from services.simulator import SimConfig, Simulation, default_roster, plan_schedule

START = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai: peak


def run(seed: int, **overrides: Any) -> list[dict[str, Any]]:
    given: dict[str, Any] = {"start": START, "duration": timedelta(hours=1),
                             "timezone": "Asia/Shanghai", **overrides}  # fmt: skip
    return list(Simulation(SimConfig(seed=seed, **given), default_roster()).events())


def test_same_seed_gives_the_same_events_and_another_seed_does_not() -> None:
    assert run(3) == run(3)
    assert run(3) != run(4)


def test_events_are_valid_ordered_and_cover_every_type_a_center_produces() -> None:
    events = run(5)
    for ev in events:
        normalize(ev, b"k")  # raises on any contract violation
    times = [datetime.fromisoformat(e["occurred_at"]) for e in events]
    assert times == sorted(times)
    kinds = Counter(e["type"] for e in events)
    assert set(kinds) >= {"call.offered", "call.ringing", "call.answered", "call.hold", "call.resumed",
                          "call.transferred", "call.ended", "call.wrapup_ended", "call.disposition",
                          "survey.completed", "agent.state"}  # fmt: skip
    assert 300 < kinds["call.offered"] < 700  # 500 calls/h at peak
    ended_by = Counter(e["ended_by"] for e in events if e["type"] == "call.ended")
    assert ended_by["customer"] > ended_by["agent"] > 0
    customers = Counter(e.get("customer_id") for e in events if e["type"] == "call.offered")
    assert customers.most_common(1)[0][1] > 1  # repeat callers exist, for FCR


def test_an_overloaded_center_abandons_and_times_out_calls() -> None:
    events = run(6, calls_per_hour=2000, max_wait_s=60)
    ended_by = Counter(e["ended_by"] for e in events if e["type"] == "call.ended")
    offered = sum(1 for e in events if e["type"] == "call.offered")
    answered = sum(1 for e in events if e["type"] == "call.answered")
    assert ended_by["system"] > 0
    assert answered < 0.8 * offered


def answered_share(events: list[dict[str, Any]], start: datetime, end: datetime) -> float:
    offered = {e["call_id"] for e in events if e["type"] == "call.offered"
               and start <= datetime.fromisoformat(e["occurred_at"]) < end}  # fmt: skip
    answered = {e["call_id"] for e in events if e["type"] == "call.answered"} & offered
    return len(answered) / len(offered)


def test_understaffing_takes_agents_off_the_phones_for_its_span_only() -> None:
    span = (timedelta(minutes=20), timedelta(minutes=20))
    normal = run(6, calls_per_hour=400)
    short = run(6, calls_per_hour=400, understaff=span)
    dip = (START + span[0], START + span[0] + span[1])
    assert answered_share(short, *dip) < answered_share(normal, *dip) - 0.2
    # before the dip nothing changes
    assert answered_share(short, START, dip[0] - timedelta(minutes=3)) == answered_share(
        normal, START, dip[0] - timedelta(minutes=3)
    )
    away = [e for e in short if e.get("reason") == "understaffed"]
    # at 09:20, 400 calls/h, half the Erlangs: billing keeps 4 of 12, tech 5 of
    # 14, sales 2 of 6; each of the others is parked once
    assert len({e["agent_id"] for e in away}) == 32 - (4 + 5 + 2)
    for ev in short:
        normalize(ev, b"k")


def rostered(seed: int = 9) -> tuple[list[Segment], list[dict[str, Any]]]:
    """A day of the example-sized roster on the shifts plan_schedule gives it."""
    tz = ZoneInfo("Asia/Shanghai")
    cfg = SimConfig(seed=seed, calls_per_hour=200, timezone="Asia/Shanghai")
    text = plan_schedule(cfg, default_roster(), date(2026, 11, 19), 3, tz)
    parsed = parse_csv(text, set(StaffingSettings().activities), None, tz)
    assert parsed.problems == []
    cfg.start = datetime(2026, 11, 20, tzinfo=tz)
    cfg.duration = timedelta(days=1)
    cfg.schedule = parsed.segments
    return parsed.segments, list(Simulation(cfg, default_roster()).events())


def test_the_planned_roster_covers_every_hour_of_every_team_with_the_agents_it_has() -> None:
    segs, _ = rostered()
    day = date(2026, 11, 20)
    mine = [s for s in segs if s.day == day]
    for team in default_roster():
        shifts = {s.agent_id for s in mine if s.agent_id in team.agents}
        assert len(shifts) <= len(team.agents)
        for hour in range(24):
            h0 = int(
                datetime(2026, 11, 20, hour, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1e6
            )
            on = {s.agent_id for s in segs if s.agent_id in team.agents and s.activity == "work"
                  and s.start_us < h0 + 3_600_000_000 and s.end_us > h0}  # fmt: skip
            assert on, f"{team.id}: nobody on the phones in hour {hour}"
    assert {s.activity for s in mine} == {"work", "break", "lunch"}


def test_rostered_agents_log_in_for_their_shifts_take_their_breaks_and_log_out() -> None:
    segs, events = rostered()
    states = [e for e in events if e["type"] == "agent.state"]
    for ev in events:
        normalize(ev, b"k")
    # nobody takes a call outside a shift of theirs (night shifts of the 19th included)
    shifts: dict[str, list[tuple[float, float]]] = {}
    for s in segs:
        shifts.setdefault(s.agent_id, []).append((s.start_us / 1e6, s.end_us / 1e6))
    for e in events:
        if e["type"] == "call.answered":
            t = datetime.fromisoformat(e["occurred_at"]).timestamp()
            # a shift's end waits for the call in hand: an hour's slack is plenty
            assert any(a - 1500 <= t <= b + 3600 for a, b in shifts[e["agent_id"]]), e
    reasons = Counter(e.get("reason") for e in states if e["state"] == "not_ready")
    assert reasons["lunch"] > 20 and reasons["break"] > 40
    first_login: dict[str, datetime] = {}
    for e in states:
        if e["state"] == "available":
            first_login.setdefault(e["agent_id"], datetime.fromisoformat(e["occurred_at"]))
    # most come on time, some late: attendance and lateness are not trivial
    assert len(first_login) >= 25
    assert Counter(e["state"] for e in states)["logged_out"] >= 32


def mean_talk_by_agent(events: list[dict[str, Any]]) -> dict[str, float]:
    """Answer → end (or the agent's transfer) per answered call, holds included:
    enough to compare agents of one run."""
    answered = {e["call_id"]: (e["agent_id"], datetime.fromisoformat(e["occurred_at"]))
                for e in events if e["type"] == "call.answered"}  # fmt: skip
    spans: dict[str, list[float]] = {}
    for e in events:
        if e["type"] == "call.ended" and e["call_id"] in answered:
            agent, at = answered[e["call_id"]]
            spans.setdefault(agent, []).append(
                (datetime.fromisoformat(e["occurred_at"]) - at).total_seconds()
            )
    return {a: sum(v) / len(v) for a, v in spans.items() if len(v) >= 5}


def test_a_rushing_agent_talks_far_shorter_than_the_others_and_only_when_asked() -> None:
    steady = mean_talk_by_agent(run(8, duration=timedelta(hours=4)))
    rushed = mean_talk_by_agent(run(8, duration=timedelta(hours=4), rush=frozenset({"b00"})))
    others = [v for a, v in rushed.items() if a != "b00"]
    assert rushed["b00"] < 0.75 * (sum(others) / len(others))
    steady_others = [v for a, v in steady.items() if a != "b00"]
    assert steady["b00"] > 0.75 * (sum(steady_others) / len(steady_others))


def test_a_rush_from_an_instant_leaves_the_calls_before_it_at_their_usual_length() -> None:
    halfway = START + timedelta(hours=2)
    rushed = run(8, duration=timedelta(hours=4), rush=frozenset({"b00"}), rush_from=halfway)
    steady = run(8, duration=timedelta(hours=4))
    before = [e for e in rushed if datetime.fromisoformat(e["occurred_at"]) < halfway]
    assert before == [e for e in steady if datetime.fromisoformat(e["occurred_at"]) < halfway]
    after = mean_talk_by_agent(
        [e for e in rushed if datetime.fromisoformat(e["occurred_at"]) >= halfway]
    )
    others = [v for a, v in after.items() if a != "b00"]
    assert after["b00"] < 0.75 * (sum(others) / len(others))


def test_a_rate_change_makes_the_calls_after_it_arrive_at_the_new_rate() -> None:
    change = START + timedelta(hours=2)
    events = run(9, duration=timedelta(hours=4), calls_per_hour=50, rate_change=(change, 200))
    offered = [datetime.fromisoformat(e["occurred_at"]) for e in events
               if e["type"] == "call.offered"]  # fmt: skip
    before = sum(1 for t in offered if t < change)
    after = len(offered) - before
    # 09:00-11:00 Shanghai at 50 (profile 1.0, 1.0): ~100; 11:00-13:00 at 200 (0.9, 0.7): ~320
    assert 60 < before < 140 and 250 < after < 400, (before, after)

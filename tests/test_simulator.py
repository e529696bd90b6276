from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from services.core.events import normalize
from services.simulator import SimConfig, Simulation, default_roster

START = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai: peak


def run(seed: int, **overrides: float) -> list[dict[str, Any]]:
    cfg = SimConfig(seed=seed, start=START, duration=timedelta(hours=1), timezone="Asia/Shanghai",
                    **overrides)  # type: ignore[arg-type]  # fmt: skip
    return list(Simulation(cfg, default_roster()).events())


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
    short = run(6, calls_per_hour=400, understaff=span)  # type: ignore[arg-type]
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

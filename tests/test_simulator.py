from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from services.core.events import normalize
from services.simulator import SimConfig, Simulation, default_roster

START = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai: peak


def run(seed: int, **overrides: float) -> list[dict]:
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

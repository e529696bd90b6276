"""Suspicious calls and the calls to hear (services/core/qa_calls.py), on
call-detail records built by hand."""

from __future__ import annotations

import hashlib
from typing import Any

from services.core.qa_calls import calls_to_hear, count_suspicious, suspicious


def record(
    call_id: str,
    agent: str,
    talk: float,
    *,
    ended_by: str = "customer",
    legs: int = 1,
    answered: bool = True,
    hold: float = 0.0,
) -> dict[str, Any]:
    leg = {"agent_id": agent, "answered": answered, "talk_seconds": talk if answered else None,
           "hold_seconds": hold if answered else None, "acw_seconds": 0.0 if answered else None}  # fmt: skip
    return {"call_id": call_id, "agents": [leg], "ended_by": ended_by, "answered_legs": legs,
            "last_agent": agent if answered else None}  # fmt: skip


def test_a_call_over_within_seconds_is_short_and_released_when_the_agent_hung_up() -> None:
    assert suspicious(record("c1", "b00", 3, ended_by="agent"), "b00", 10) == ("short", "released")
    assert suspicious(record("c2", "b00", 3), "b00", 10) == ("short",)
    assert suspicious(record("c3", "b00", 10), "b00", 10) == ()  # the line itself is not short
    assert suspicious(record("c4", "b00", 200, legs=3), "b00", 10) == ("transfers",)
    assert suspicious(record("c5", "b00", 3, answered=False), "b00", 10) == ()  # a RONA
    assert suspicious(record("c6", "b01", 3), "b00", 10) == ()  # somebody else's call


def test_counts_are_over_the_agents_answered_calls() -> None:
    rows = [record("c1", "b00", 3, ended_by="agent"), record("c2", "b00", 120),
            record("c3", "b00", 2, answered=False), record("c4", "b01", 1)]  # fmt: skip
    got = count_suspicious(rows, "b00", 10)
    assert (got.answered, dict(got.counts)) == (2, {"short": 1, "released": 1, "transfers": 0})
    assert got.share("short") == 0.5
    assert count_suspicious([], "b00", 10).share("short") is None


def test_each_reason_lists_an_equal_share_of_the_calls_that_show_it_most() -> None:
    rows = [record(f"c{i}", "b00", 30 + i, hold=60 - i) for i in range(20)]
    heard = calls_to_hear(rows, "b00", ["avg_talk_seconds", "avg_hold_seconds"], 4, "p", "t", 10)
    assert [(r["call_id"], why) for r, why in heard] == [
        ("c0", "avg_talk_seconds"), ("c1", "avg_talk_seconds"),  # the shortest talk
        ("c2", "avg_hold_seconds"), ("c3", "avg_hold_seconds"),  # the longest hold not yet listed
    ]  # fmt: skip


def test_ring_no_answer_lists_the_calls_the_agent_let_ring() -> None:
    rows = [record("c1", "b00", 90), record("c2", "b00", 0, answered=False)]
    heard = calls_to_hear(rows, "b00", ["rona_rate"], 2, "p", "t", 10)
    assert [(r["call_id"], why) for r, why in heard] == [("c2", "rona_rate"), ("c1", "drawn")]


def test_a_drawn_agents_calls_are_re_derivable_by_sha256_of_period_team_agent_and_call() -> None:
    rows = [record(f"c{i}", "b00", 100) for i in range(30)]
    heard = calls_to_hear(rows, "b00", [], 5, "2026-11", "billing", 10)
    by_hand = sorted((f"c{i}" for i in range(30)), key=lambda c: hashlib.sha256(
        f"callkpi-qa:2026-11:billing:b00:{c}".encode()).hexdigest())[:5]  # fmt: skip
    assert [r["call_id"] for r, _ in heard] == by_hand
    assert {why for _, why in heard} == {"drawn"}
    assert calls_to_hear(rows[::-1], "b00", [], 5, "2026-11", "billing", 10) == heard


def test_a_complaint_reason_lists_only_the_calls_complained_about_then_drawn_ones() -> None:
    rows = [record(f"c{i}", "b00", 100) for i in range(6)]
    rows[4] = {**rows[4], "complaint": True}
    heard = calls_to_hear(rows, "b00", ["complaint_rate"], 3, "p", "t", 10)
    assert [why for _, why in heard] == ["complaint_rate", "drawn", "drawn"]
    assert heard[0][0]["call_id"] == "c4"
